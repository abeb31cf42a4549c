using Herald.Handlers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Core.Tests;

/// <summary>
/// A handler is asked only for the hooks it implements: the transports skip a hook (its context, its timeout) when no
/// handler overrides <see cref="HeraldHandler"/>'s pass-through for it, and the answer is the same as asking.
/// </summary>
public sealed class HandlerHookTests
{
    private sealed class PublishOnly : HeraldHandler
    {
        public int Publishes { get; private set; }

        public override ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken)
        {
            Publishes++;
            return base.OnPublishAsync(context, cancellationToken);
        }
    }

    private sealed class ConnectOnly : HeraldHandler
    {
        public override ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken) =>
            ValueTask.FromResult<HeraldResult<AuthenticationResult>>(new HeraldError(ErrorCodes.PermissionDenied, "no"));
    }

    /// <summary>Derives from the base class but implements the interface's connect again, explicitly.</summary>
    private sealed class ReimplementsConnect : HeraldHandler, IHeraldHandler
    {
        ValueTask<HeraldResult<AuthenticationResult>> IHeraldHandler.OnConnectAsync(ConnectContext context, CancellationToken cancellationToken) =>
            ValueTask.FromResult<HeraldResult<AuthenticationResult>>(new HeraldError(ErrorCodes.PermissionDenied, "no"));
    }

    /// <summary>Implements the interface itself: nothing tells which hooks it means, so it is asked for all of them.</summary>
    private sealed class Raw : IHeraldHandler
    {
        public ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken) => new(context.Authentication);

        public ValueTask<HeraldResult<SubscribeAccepted>> OnSubscribeAsync(SubscribeContext context, CancellationToken cancellationToken) => new(SubscribeAccepted.Allow);

        public ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken) => new(PublishAccepted.Unchanged);

        public ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken) =>
            new(new HeraldError(ErrorCodes.NotAvailable, "none"));

        public ValueTask OnDisconnectAsync(DisconnectContext context, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }

    [Fact]
    public void HeraldHandler_OverridingOnlyPublish_IsAskedOnlyOnPublish()
    {
        var pipeline = new HandlerPipeline([new PublishOnly()], TimeSpan.FromSeconds(5));
        Assert.False(pipeline.IsEmpty);
        Assert.False(pipeline.HandlesConnect);
        Assert.False(pipeline.HandlesSubscribe);
        Assert.False(pipeline.HandlesDisconnect);
        Assert.True(pipeline.HandlesPublish);
    }

    [Fact]
    public void HandlerImplementingTheInterface_IsAskedOnEveryHook()
    {
        var pipeline = new HandlerPipeline([new PublishOnly(), new Raw()], TimeSpan.FromSeconds(5));
        Assert.True(pipeline.HandlesConnect);
        Assert.True(pipeline.HandlesSubscribe);
        Assert.True(pipeline.HandlesPublish);
        Assert.True(pipeline.HandlesDisconnect);
    }

    [Fact]
    public void HeraldHandler_ReimplementingTheInterfacesConnect_IsAskedOnConnect()
    {
        var pipeline = new HandlerPipeline([new ReimplementsConnect()], TimeSpan.FromSeconds(5));
        Assert.True(pipeline.HandlesConnect);
        Assert.False(pipeline.HandlesSubscribe);
    }

    [Fact]
    public async Task ConnectAsync_AsksOnlyTheHandlersThatImplementIt_AndTheirRefusalStands()
    {
        var pipeline = new HandlerPipeline([new PublishOnly(), new ConnectOnly()], TimeSpan.FromSeconds(5));
        Assert.True(pipeline.HandlesConnect);
        Assert.False(pipeline.HandlesSubscribe);
        var context = new ConnectContext("c1", "poll", null, AuthenticationResult.Anonymous, new Dictionary<string, string>(), null);
        var decided = await pipeline.ConnectAsync(context, CancellationToken.None);
        Assert.Equal(ErrorCodes.PermissionDenied, decided.Error?.Code);
    }
}
