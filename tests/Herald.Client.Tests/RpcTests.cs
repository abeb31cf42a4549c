using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Client.Tests.Infrastructure;
using Herald.Handlers;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Client.Tests;

public sealed record MoveRequest(int X, int Y);

public sealed record MoveAnswer(int X, int Y, string Via);

[JsonSerializable(typeof(MoveRequest))]
[JsonSerializable(typeof(MoveAnswer))]
internal sealed partial class RpcJsonContext : JsonSerializerContext;

/// <summary>The .NET client's RPC against a real server with an application handler, on every transport.</summary>
public sealed class RpcTests
{
    /// <summary><c>move</c> doubles the position and names the transport; <c>limited</c> refuses with a code of its own.</summary>
    private sealed class GameHandler : HeraldHandler
    {
        public override ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken)
        {
            switch (context.Method)
            {
                case "move":
                    var request = context.Data!.Value.Deserialize(RpcJsonContext.Default.MoveRequest)!;
                    var answer = new MoveAnswer(request.X * 2, request.Y * 2, context.Transport);
                    return ValueTask.FromResult<HeraldResult<RpcReply>>(new RpcReply(JsonSerializer.SerializeToElement(answer, RpcJsonContext.Default.MoveAnswer)));
                case "limited":
                    throw new HeraldHandlerException("quota_exceeded", "no more moves today");
                default:
                    return base.OnRpcAsync(context, cancellationToken);
            }
        }
    }

    public static TheoryData<HeraldTransport, string> Transports => new()
    {
        { HeraldTransport.WebSocket, HeraldTransportNames.WebSocket },
        { HeraldTransport.LongPoll, HeraldTransportNames.Command },
        { HeraldTransport.ShortPoll, HeraldTransportNames.Command },
    };

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task RpcAsync_ReturnsTheHandlersData_TypedOrRaw_AndErrorsAsHeraldException(HeraldTransport transport, string seenAs)
    {
        await using var server = await TestServer.StartAsync(configureServices: s => s.AddHeraldHandler<GameHandler>());
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();

        var typed = await client.RpcAsync("move", new MoveRequest(3, 4), RpcJsonContext.Default.MoveRequest, RpcJsonContext.Default.MoveAnswer);
        Assert.Equal(new MoveAnswer(6, 8, seenAs), typed);

        var raw = await client.RpcAsync("move", Clients.Json("""{"X":1,"Y":-1}"""));
        Assert.Equal(2, raw.GetProperty("X").GetInt32());

        var refused = await Assert.ThrowsAsync<HeraldException>(async () => await client.RpcAsync("limited"));
        Assert.Equal(("quota_exceeded", "quota_exceeded: no more moves today"), (refused.Code, refused.Message));
        Assert.Equal(ErrorCodes.NotAvailable, (await Assert.ThrowsAsync<HeraldException>(async () => await client.RpcAsync("jump"))).Code);
        Assert.Equal(ErrorCodes.BadRequest, (await Assert.ThrowsAsync<HeraldException>(async () => await client.RpcAsync("no spaces"))).Code);
        Assert.Equal(HeraldConnectionState.Connected, client.State); // refusals are answers, not failures
    }
}
