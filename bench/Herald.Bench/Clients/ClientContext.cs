using System.Net;
using System.Net.Sockets;
using Herald.Bench.Measurement;

namespace Herald.Bench.Clients;

/// <summary>
/// What every client of one run shares: the server's address, the counters, the loopback source addresses to spread
/// connections over (one address has only ~28k ephemeral ports), and one HTTP connection pool for polling clients.
/// </summary>
internal sealed class ClientContext : IDisposable
{
    private readonly IPAddress[] _sources;
    private int _nextSource;

    public ClientContext(int port, Stats stats, IReadOnlyList<IPAddress> sources)
    {
        Port = port;
        Stats = stats;
        _sources = sources.Count > 0 ? [.. sources] : [IPAddress.Loopback];
        Http = new HttpClient(CreateHandler(int.MaxValue), disposeHandler: true)
        {
            BaseAddress = new Uri($"http://127.0.0.1:{port}/"),
            Timeout = TimeSpan.FromSeconds(60),
        };
    }

    public int Port { get; }

    public Stats Stats { get; }

    /// <summary>
    /// A fixed receive buffer (SO_RCVBUF) for this context's sockets, or 0 for the kernel's, which grows while a reader
    /// keeps up. Fixed, it makes the kernel's share of a stalled reader's backlog the same from run to run.
    /// </summary>
    public int ReceiveBufferBytes { get; init; }

    /// <summary>The pool polling clients share, as a browser would share one per origin (with no per-host cap).</summary>
    public HttpClient Http { get; }

    public IPAddress NextSource() => _sources[(uint)Interlocked.Increment(ref _nextSource) % (uint)_sources.Length];

    /// <summary>A handler whose sockets come from the source pool and count their bytes.</summary>
    public SocketsHttpHandler CreateHandler(int maxConnections) => new()
    {
        MaxConnectionsPerServer = maxConnections,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        UseProxy = false,
        UseCookies = false,
        AutomaticDecompression = DecompressionMethods.None,
        ConnectCallback = async (context, cancellationToken) =>
            new CountingStream(await ConnectAsync(context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false), Stats),
    };

    /// <summary>Opens a TCP connection to the server from the next source address.</summary>
    public async Task<NetworkStream> ConnectAsync(int port, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (ReceiveBufferBytes > 0)
            {
                // Before connecting: the window scale is agreed in the handshake.
                socket.ReceiveBufferSize = ReceiveBufferBytes;
            }
            socket.Bind(new IPEndPoint(NextSource(), 0));
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Dispose() => Http.Dispose();
}
