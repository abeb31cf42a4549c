// Herald inside an ASP.NET Core app, with a handler: clients may publish to chat:*, but not in capitals, and may call
// the `time` RPC method. Run: dotnet run --project samples/EmbeddedServer -- --urls http://localhost:5080
using System.Text.Json;
using Herald;
using Herald.Handlers;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddHerald(o =>
{
    o.AllowAnonymous = true;
    o.Namespaces["chat"] = new NamespaceOptions { HistorySize = 100, AllowClientPublish = true, Presence = true };
});
builder.Services.AddHeraldHandler<ChatRules>();

var app = builder.Build();
app.MapGet("/hello", () => "This app also serves Herald at /ws, /poll, /cmd and /api/*.");
app.MapHerald();
app.Run();

/// <summary>The application's say in what clients do: refuses shouting, answers <c>time</c>.</summary>
internal sealed class ChatRules : HeraldHandler
{
    public override ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Data is { ValueKind: JsonValueKind.Object } data
            && data.TryGetProperty("text", out var text) && text.GetString() is { Length: > 3 } value
            && value == value.ToUpperInvariant() && value.Any(char.IsLetter))
        {
            return ValueTask.FromResult<HeraldResult<PublishAccepted>>(new HeraldError("no_shouting", "please do not write in capitals"));
        }
        return base.OnPublishAsync(context, cancellationToken);
    }

    public override ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Method == "time"
            ? ValueTask.FromResult<HeraldResult<RpcReply>>(new RpcReply(JsonSerializer.SerializeToElement(DateTimeOffset.UtcNow.ToString("O"))))
            : base.OnRpcAsync(context, cancellationToken);
    }
}
