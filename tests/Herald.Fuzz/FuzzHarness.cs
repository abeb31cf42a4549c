using System.Text;
using System.Text.Json;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Fuzz;

/// <summary>
/// The one fuzzing oracle, shared by the AFL++ target (<c>tests/Herald.Fuzz</c>) and the regression replay in
/// <c>Herald.Core.Tests</c> (compiled into both): feeds bytes as one WebSocket message to a fresh
/// <see cref="ClientSession"/> behind a connect line and throws <see cref="FuzzViolationException"/> when a reply
/// breaks the protocol's promises. Any other exception escaping is a bug in the server code as well.
/// </summary>
internal static class FuzzHarness
{
    /// <summary>The line sent before the fuzzed bytes, so the fuzzer reaches the commands behind <c>connect</c>.</summary>
    public static readonly byte[] ConnectLine = Encoding.UTF8.GetBytes("{\"id\":0,\"op\":\"connect\"}\n");

    /// <summary>
    /// The codes a reply may carry. <c>internal</c> is documented but means a command handler threw: for the fuzzer
    /// that is a bug, so it is left out. <c>forbidden_origin</c> is HTTP only.
    /// </summary>
    public static readonly IReadOnlySet<string> AllowedCodes = new HashSet<string>(StringComparer.Ordinal)
    {
        ErrorCodes.BadRequest, ErrorCodes.UnknownOp, ErrorCodes.NotConnected, ErrorCodes.AlreadyConnected, ErrorCodes.Unauthorized,
        ErrorCodes.InvalidChannel, ErrorCodes.PermissionDenied, ErrorCodes.AlreadySubscribed, ErrorCodes.NotSubscribed,
        ErrorCodes.TooManySubscriptions, ErrorCodes.NotAvailable, ErrorCodes.InvalidPosition, ErrorCodes.EpochMismatch,
        ErrorCodes.PayloadTooLarge, ErrorCodes.RateLimited,
    };

    /// <summary>Options with namespaces that exercise publish, presence, history and refusals; limits high enough to not get in the way.</summary>
    public static HeraldOptions CreateOptions()
    {
        var options = new HeraldOptions
        {
            AllowAnonymous = true,
            MaxSubscriptionsPerConnection = 4,
            MaxCommandsPerSecond = 1_000_000,
            MaxPublishesPerSecond = 1_000_000,
            MaxQueuedMessages = 1_000_000,
            MaxQueuedBytes = 1L << 30,
        };
        options.Namespaces["chat"] = new NamespaceOptions { AllowClientPublish = true, Presence = true, HistorySize = 10 };
        options.Namespaces["locked"] = new NamespaceOptions();
        return options;
    }

    /// <summary>The connect command of a <c>herald.msgpack</c> session, the first value of its fuzzed frame.</summary>
    public static readonly byte[] MsgPackConnect = [0x82, 0xa2, (byte)'i', (byte)'d', 0x00, 0xa2, (byte)'o', (byte)'p', 0xa7, .. "connect"u8];

    /// <summary>
    /// Runs one input both ways, each through a fresh node and session: as the lines of a <c>herald.json</c> message, then
    /// as a <c>herald.msgpack</c> binary message. Throws on a violation.
    /// </summary>
    public static void Run(ReadOnlySpan<byte> input)
    {
        RunJson(input);
        RunMsgPack(input);
    }

    /// <summary>Runs one input as a <c>herald.json</c> message and checks every reply.</summary>
    public static void RunJson(ReadOnlySpan<byte> input)
    {
        var options = CreateOptions();
        // The WebSocket layer refuses a larger message (close 1009) before it reaches the session.
        var room = options.MaxMessageBytes - ConnectLine.Length;
        if (input.Length > room)
        {
            input = input[..room];
        }
        var frame = new byte[ConnectLine.Length + input.Length];
        ConnectLine.CopyTo(frame, 0);
        input.CopyTo(frame.AsSpan(ConnectLine.Length));

        var node = new HeraldNode(options, new MemoryBroker());
        try
        {
            node.StartAsync().AsTask().GetAwaiter().GetResult();
            var transport = new RecordingTransport();
            var session = new ClientSession(node, transport);
            session.HandleMessageAsync(frame).AsTask().GetAwaiter().GetResult();

            var messages = new List<ReadOnlyMemory<byte>>();
            while (session.Outbound.Reader.TryRead(out var message))
            {
                messages.Add(message.Bytes);
            }
            Verify(frame, messages, transport.Closes);
            session.TerminateAsync().AsTask().GetAwaiter().GetResult();
        }
        finally
        {
            node.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>
    /// Runs one input as a <c>herald.msgpack</c> message behind a MessagePack connect and checks every reply: each is one
    /// whole MessagePack map that reads as a well-formed reply or push (the JSON oracle's rules), every whole value of
    /// the frame got one reply, and a value that does not end got one <c>bad_request</c> for the rest of the frame.
    /// </summary>
    public static void RunMsgPack(ReadOnlySpan<byte> input)
    {
        var options = CreateOptions();
        var room = options.MaxMessageBytes - MsgPackConnect.Length;
        if (input.Length > room)
        {
            input = input[..room];
        }
        var frame = new byte[MsgPackConnect.Length + input.Length];
        MsgPackConnect.CopyTo(frame, 0);
        input.CopyTo(frame.AsSpan(MsgPackConnect.Length));

        var node = new HeraldNode(options, new MemoryBroker());
        try
        {
            node.StartAsync().AsTask().GetAwaiter().GetResult();
            var transport = new RecordingTransport { Encoding = WireEncoding.MsgPack };
            var session = new ClientSession(node, transport);
            session.HandleMessageAsync(frame).AsTask().GetAwaiter().GetResult();

            var replies = 0;
            while (session.Outbound.Reader.TryRead(out var message))
            {
                if (!MsgPackCodec.TrySplit(message.Bytes, out var length, out var error) || length != message.Bytes.Length)
                {
                    throw new FuzzViolationException($"a queued message is not one whole MessagePack value ({error ?? "trailing bytes"})");
                }
                if (!MsgPackCodec.TryToJsonServerMessage(message.Bytes, out var json, out error))
                {
                    throw new FuzzViolationException($"a queued message has no JSON twin: {error}");
                }
                if (CheckMessage(json))
                {
                    replies++;
                }
            }
            var expected = CountMsgPackCommands(frame);
            if (replies != expected)
            {
                throw new FuzzViolationException($"{expected} MessagePack command(s) got {replies} reply(ies); every command gets exactly one");
            }
            if (transport.Closes.Count > 0)
            {
                throw new FuzzViolationException($"the session closed the connection with {string.Join(",", transport.Closes)} on an anonymous connection");
            }
            session.TerminateAsync().AsTask().GetAwaiter().GetResult();
        }
        finally
        {
            node.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Whole values, plus one for a tail that is not one (it gets one refusal).</summary>
    private static int CountMsgPackCommands(ReadOnlyMemory<byte> frame)
    {
        var count = 0;
        while (!frame.IsEmpty)
        {
            count++;
            if (!MsgPackCodec.TrySplit(frame, out var length, out _))
            {
                break;
            }
            frame = frame[length..];
        }
        return count;
    }

    /// <summary>
    /// The oracle: every queued message is one JSON object without a raw newline, a result, a push or an error with an
    /// allowed code and a message; each command line of <paramref name="frame"/> got exactly one reply; nothing closed
    /// the (anonymous) connection. Throws <see cref="FuzzViolationException"/> otherwise.
    /// </summary>
    public static void Verify(ReadOnlySpan<byte> frame, IReadOnlyList<ReadOnlyMemory<byte>> messages, IReadOnlyList<int> closes)
    {
        var replies = 0;
        foreach (var message in messages)
        {
            if (CheckMessage(message.Span))
            {
                replies++;
            }
        }
        var commands = CountCommands(frame);
        if (replies != commands)
        {
            throw new FuzzViolationException($"{commands} command line(s) got {replies} reply(ies); every command gets exactly one");
        }
        if (closes.Count > 0)
        {
            throw new FuzzViolationException($"the session closed the connection with {string.Join(",", closes)} on an anonymous connection");
        }
    }

    /// <summary>Checks one queued message; returns whether it is a reply (as opposed to a push).</summary>
    private static bool CheckMessage(ReadOnlySpan<byte> message)
    {
        if (message.IndexOf((byte)'\n') >= 0)
        {
            throw new FuzzViolationException("a queued message contains a raw newline: " + Show(message));
        }
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(message);
            doc = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            throw new FuzzViolationException("a queued message is not valid JSON: " + Show(message), ex);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new FuzzViolationException("a queued message is not a JSON object: " + Show(message));
            }
            if (root.TryGetProperty("error", out var error))
            {
                var code = error.ValueKind == JsonValueKind.Object && error.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String
                    ? c.GetString()
                    : null;
                if (code is null || !AllowedCodes.Contains(code))
                {
                    throw new FuzzViolationException($"error reply with an undocumented or unexpected code '{code}': " + Show(message));
                }
                if (!error.TryGetProperty("message", out var text) || text.ValueKind != JsonValueKind.String)
                {
                    throw new FuzzViolationException("error reply without a message: " + Show(message));
                }
                return true;
            }
            if (root.TryGetProperty("result", out _))
            {
                return true;
            }
            if (root.TryGetProperty("push", out _))
            {
                return false;
            }
            throw new FuzzViolationException("a queued message is neither a result, an error nor a push: " + Show(message));
        }
    }

    /// <summary>Counts the command lines the way the session splits a message: on <c>\n</c>, one trailing <c>\r</c> dropped, blank lines skipped.</summary>
    private static int CountCommands(ReadOnlySpan<byte> message)
    {
        var count = 0;
        while (!message.IsEmpty)
        {
            var newline = message.IndexOf((byte)'\n');
            var line = newline < 0 ? message : message[..newline];
            message = newline < 0 ? [] : message[(newline + 1)..];
            if (!line.IsEmpty && line[^1] == (byte)'\r')
            {
                line = line[..^1];
            }
            if (!line.Trim(" \t"u8).IsEmpty)
            {
                count++;
            }
        }
        return count;
    }

    private static string Show(ReadOnlySpan<byte> message)
    {
        var text = Encoding.UTF8.GetString(message);
        return text.Length <= 300 ? text : text[..300] + "…";
    }

    private sealed class RecordingTransport : ISessionTransport
    {
        public string Name => "fuzz";

        public WireEncoding Encoding { get; init; } = WireEncoding.Json;

        public List<int> Closes { get; } = [];

        public void Close(int code, string reason) => Closes.Add(code);
    }
}

/// <summary>A reply broke the protocol's promises; AFL++ records the input as a crash.</summary>
internal sealed class FuzzViolationException : Exception
{
    public FuzzViolationException()
    {
    }

    public FuzzViolationException(string message)
        : base(message)
    {
    }

    public FuzzViolationException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
