using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>
/// One server per test class, with a small message limit so the limit cases stay cheap, and a close timeout longer
/// than the raw client's read timeout: a server that closes TCP in time did so because it saw the client's close
/// frame, not because it gave up waiting for it.
/// </summary>
public sealed class RfcServerFixture : IAsyncLifetime
{
    public const int MaxMessageBytes = 1024;

    private TestServer? _server;

    public TestServer Server => _server ?? throw new InvalidOperationException("not started");

    public int Port => Server.Port;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(o =>
    {
        o.MaxMessageBytes = MaxMessageBytes;
        o.CloseTimeout = TimeSpan.FromSeconds(30);
    });

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
