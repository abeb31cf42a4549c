using Microsoft.AspNetCore.SignalR;

namespace Herald.Bench.SignalR;

/// <summary>The one hub: a client joins a channel by invoking Subscribe (no invocationId needed).</summary>
internal sealed class BenchHub : Hub
{
    public Task Subscribe(string channel) => Groups.AddToGroupAsync(Context.ConnectionId, channel);
}
