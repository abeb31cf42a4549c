using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;
using MessagePack;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>
/// A <c>herald.msgpack</c> test client over the platform's <see cref="ClientWebSocket"/>, decoding with the MessagePack
/// library's reader on its own (not Herald's codec): maps become <see cref="Dictionary{TKey, TValue}"/>, arrays
/// <see cref="List{T}"/>, bin <see cref="byte"/>[], str <see cref="string"/>, integers <see cref="long"/> (or
/// <see cref="ulong"/>), floats <see cref="double"/>.
/// </summary>
public sealed class MsgPackWsClient : IAsyncDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    private readonly ClientWebSocket _socket;
    private readonly Channel<Dictionary<string, object?>> _replies = Channel.CreateUnbounded<Dictionary<string, object?>>();
    private readonly Channel<Dictionary<string, object?>> _pushes = Channel.CreateUnbounded<Dictionary<string, object?>>();
    private readonly Task _reader;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private long _nextId;

    private MsgPackWsClient(ClientWebSocket socket)
    {
        _socket = socket;
        _reader = Task.Run(ReadLoopAsync);
    }

    public ClientWebSocket Socket => _socket;

    /// <summary>Every message's frame type was binary.</summary>
    public bool OnlyBinaryFrames { get; private set; } = true;

    public int FramesReceived { get; private set; }

    public static async Task<MsgPackWsClient> OpenAsync(Uri uri, string subProtocol = "herald.msgpack")
    {
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol(subProtocol);
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await socket.ConnectAsync(uri, cts.Token);
        return new MsgPackWsClient(socket);
    }

    public static async Task<MsgPackWsClient> ConnectAsync(TestServer server)
    {
        var client = await OpenAsync(server.WebSocketUri);
        var reply = await client.CommandAsync(new() { ["op"] = "connect" });
        Assert.True(reply.ContainsKey("result"), $"connect failed: {Describe(reply)}");
        return client;
    }

    public async Task SendRawAsync(ReadOnlyMemory<byte> bytes, WebSocketMessageType type = WebSocketMessageType.Binary)
    {
        await _sendLock.WaitAsync();
        try
        {
            using var cts = new CancellationTokenSource(DefaultTimeout);
            await _socket.SendAsync(bytes, type, true, cts.Token);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Sends a command map (an id is added first) and awaits its reply.</summary>
    public async Task<Dictionary<string, object?>> CommandAsync(Dictionary<string, object?> command)
    {
        var id = Interlocked.Increment(ref _nextId) + 1_000_000;
        var withId = new Dictionary<string, object?> { ["id"] = id };
        foreach (var (key, value) in command)
        {
            withId[key] = value;
        }
        await SendRawAsync(Encode(withId));
        return await ReplyAsync(id);
    }

    public async Task<Dictionary<string, object?>> ReplyAsync(long id)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        while (true)
        {
            var reply = await _replies.Reader.ReadAsync(cts.Token);
            if (reply.TryGetValue("id", out var got) && Convert.ToInt64(got, System.Globalization.CultureInfo.InvariantCulture) == id)
            {
                return reply;
            }
        }
    }

    public async Task<Dictionary<string, object?>> NextReplyAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        return await _replies.Reader.ReadAsync(cts.Token);
    }

    /// <summary>The next push's map (the value of <c>push</c>).</summary>
    public async Task<Dictionary<string, object?>> NextPushAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        return Map((await _pushes.Reader.ReadAsync(cts.Token))["push"]);
    }

    /// <summary>The next push's <c>pub</c> map.</summary>
    public async Task<Dictionary<string, object?>> NextPubAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var push = await _pushes.Reader.ReadAsync(cts.Token);
        return Map(Map(push["push"])["pub"]);
    }

    public async Task<WebSocketCloseStatus?> WaitClosedAsync(TimeSpan? timeout = null)
    {
        await _reader.WaitAsync(timeout ?? DefaultTimeout);
        return _socket.CloseStatus;
    }

    public static Dictionary<string, object?> Map(object? value) =>
        value as Dictionary<string, object?> ?? throw new InvalidOperationException($"expected a map, got {Describe(value)}");

    public static string Describe(object? value) => value switch
    {
        null => "nil",
        byte[] bytes => $"bin[{bytes.Length}]",
        string text => $"\"{text}\"",
        Dictionary<string, object?> map => "{" + string.Join(",", map.Select(p => $"{p.Key}:{Describe(p.Value)}")) + "}",
        List<object?> list => "[" + string.Join(",", list.Select(Describe)) + "]",
        _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>Encodes a tree of maps, lists, strings, numbers, bools, nulls and byte arrays.</summary>
    public static byte[] Encode(object? value)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        Write(ref writer, value);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static void Write(ref MessagePackWriter writer, object? value)
    {
        switch (value)
        {
            case null:
                writer.WriteNil();
                break;
            case byte[] bytes:
                writer.Write(bytes);
                break;
            case string text:
                writer.Write(text);
                break;
            case bool flag:
                writer.Write(flag);
                break;
            case int number:
                writer.Write(number);
                break;
            case long number:
                writer.Write(number);
                break;
            case ulong number:
                writer.Write(number);
                break;
            case double number:
                writer.Write(number);
                break;
            case Dictionary<string, object?> map:
                writer.WriteMapHeader(map.Count);
                foreach (var (key, item) in map)
                {
                    writer.Write(key);
                    Write(ref writer, item);
                }
                break;
            case List<object?> list:
                writer.WriteArrayHeader(list.Count);
                foreach (var item in list)
                {
                    Write(ref writer, item);
                }
                break;
            default:
                throw new ArgumentException($"cannot encode {value.GetType()}");
        }
    }

    private static object? Read(ref MessagePackReader reader)
    {
        switch (reader.NextMessagePackType)
        {
            case MessagePackType.Nil:
                reader.ReadNil();
                return null;
            case MessagePackType.Boolean:
                return reader.ReadBoolean();
            case MessagePackType.Integer:
                return reader.NextCode == MessagePackCode.UInt64 ? reader.ReadUInt64() : reader.ReadInt64();
            case MessagePackType.Float:
                return reader.ReadDouble();
            case MessagePackType.String:
                return reader.ReadString();
            case MessagePackType.Binary:
                return reader.ReadBytes()!.Value.ToArray();
            case MessagePackType.Array:
                var length = reader.ReadArrayHeader();
                var list = new List<object?>(length);
                for (var i = 0; i < length; i++)
                {
                    list.Add(Read(ref reader));
                }
                return list;
            case MessagePackType.Map:
                var count = reader.ReadMapHeader();
                var map = new Dictionary<string, object?>(count);
                for (var i = 0; i < count; i++)
                {
                    var key = reader.ReadString()!;
                    map[key] = Read(ref reader);
                }
                return map;
            default:
                throw new InvalidOperationException($"unexpected MessagePack type {reader.NextMessagePackType}");
        }
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
                OnlyBinaryFrames &= result.MessageType == WebSocketMessageType.Binary;
                message.Write(buffer, 0, result.Count);
                if (!result.EndOfMessage)
                {
                    continue;
                }
                FramesReceived++;
                var reader = new MessagePackReader(new ReadOnlyMemory<byte>(message.GetBuffer(), 0, (int)message.Length));
                while (!reader.End)
                {
                    var element = Map(Read(ref reader));
                    (element.ContainsKey("push") ? _pushes : _replies).Writer.TryWrite(element);
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
