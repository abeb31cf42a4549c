using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>
/// A test client over the platform's <see cref="ClientWebSocket"/>: sends commands, splits every frame on
/// newlines, routes replies by id and collects pushes.
/// </summary>
public sealed class WsClient : IAsyncDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    private readonly ClientWebSocket _socket;
    private readonly Channel<JsonElement> _replies = Channel.CreateUnbounded<JsonElement>();
    private readonly Channel<JsonElement> _pushes = Channel.CreateUnbounded<JsonElement>();
    private readonly Task _reader;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private long _nextId;

    private WsClient(ClientWebSocket socket)
    {
        _socket = socket;
        _reader = Task.Run(ReadLoopAsync);
    }

    public ClientWebSocket Socket => _socket;

    /// <summary>Frames received (each may hold several messages).</summary>
    public int FramesReceived { get; private set; }

    public WebSocketCloseStatus? CloseStatus => _socket.CloseStatus;

    public Task Completion => _reader;

    public static async Task<WsClient> OpenAsync(Uri uri, string? subProtocol = "herald.json", IReadOnlyDictionary<string, string>? headers = null)
    {
        var socket = new ClientWebSocket();
        if (subProtocol is not null)
        {
            socket.Options.AddSubProtocol(subProtocol);
        }
        foreach (var (name, value) in headers ?? new Dictionary<string, string>())
        {
            socket.Options.SetRequestHeader(name, value);
        }
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await socket.ConnectAsync(uri, cts.Token);
        return new WsClient(socket);
    }

    public async Task SendRawAsync(string text)
    {
        await _sendLock.WaitAsync();
        try
        {
            using var cts = new CancellationTokenSource(DefaultTimeout);
            await _socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cts.Token);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Sends a command (an id is added) and awaits its reply.</summary>
    public async Task<JsonElement> CommandAsync(string json)
    {
        var id = Interlocked.Increment(ref _nextId);
        var withId = $"{{\"id\":{id},{json.TrimStart()[1..]}";
        await SendRawAsync(withId);
        return await ReplyAsync(id);
    }

    public async Task<JsonElement> ReplyAsync(long id)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        while (true)
        {
            var reply = await _replies.Reader.ReadAsync(cts.Token);
            if (reply.TryGetProperty("id", out var got) && got.GetInt64() == id)
            {
                return reply;
            }
        }
    }

    /// <summary>The next reply in arrival order, whatever its id.</summary>
    public async Task<JsonElement> NextReplyAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        return await _replies.Reader.ReadAsync(cts.Token);
    }

    public async Task<JsonElement> NextPushAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        return await _pushes.Reader.ReadAsync(cts.Token);
    }

    public bool TryReadPush(out JsonElement push) => _pushes.Reader.TryRead(out push);

    /// <summary>Waits until the server closes the connection; returns the close status.</summary>
    public async Task<WebSocketCloseStatus?> WaitClosedAsync(TimeSpan? timeout = null)
    {
        await _reader.WaitAsync(timeout ?? DefaultTimeout);
        return _socket.CloseStatus;
    }

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        try
        {
            while (true)
            {
                var result = await _socket.ReceiveAsync(buffer, CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    if (_socket.State == WebSocketState.CloseReceived)
                    {
                        await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
                    }
                    return;
                }
                message.Write(buffer, 0, result.Count);
                if (!result.EndOfMessage)
                {
                    continue;
                }
                FramesReceived++;
                foreach (var line in Encoding.UTF8.GetString(message.GetBuffer(), 0, (int)message.Length).Split('\n'))
                {
                    if (line.Length == 0)
                    {
                        continue;
                    }
                    var element = JsonDocument.Parse(line).RootElement.Clone();
                    if (element.TryGetProperty("push", out _))
                    {
                        _pushes.Writer.TryWrite(element);
                    }
                    else
                    {
                        _replies.Writer.TryWrite(element);
                    }
                }
                message.SetLength(0);
            }
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            _pushes.Writer.TryComplete();
            _replies.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
                await _reader.WaitAsync(TimeSpan.FromSeconds(2));
            }
        }
        catch (Exception)
        {
        }
        _socket.Abort();
        _socket.Dispose();
    }
}
