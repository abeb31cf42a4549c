using System.Text;
using System.Text.Json;
using CsCheck;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Core.Tests;

/// <summary>
/// Property-based fuzzing of the protocol parser and the command dispatcher: random bytes, random JSON and
/// mutations of valid commands. Whatever comes in, the session answers with well-formed JSON (a result or a
/// documented error), never throws, and keeps working. Bounded in iterations so CI stays fast.
/// </summary>
public sealed class ProtocolFuzzTests
{
    private sealed class RecordingTransport : ISessionTransport
    {
        public string Name => "fuzz";

        public List<int> Closes { get; } = [];

        public void Close(int code, string reason) => Closes.Add(code);
    }

    private static readonly string[] KnownCodes =
    [
        ErrorCodes.BadRequest, ErrorCodes.UnknownOp, ErrorCodes.NotConnected, ErrorCodes.AlreadyConnected, ErrorCodes.Unauthorized,
        ErrorCodes.InvalidChannel, ErrorCodes.PermissionDenied, ErrorCodes.AlreadySubscribed, ErrorCodes.NotSubscribed,
        ErrorCodes.TooManySubscriptions, ErrorCodes.NotAvailable, ErrorCodes.InvalidPosition, ErrorCodes.EpochMismatch,
        ErrorCodes.PayloadTooLarge, ErrorCodes.RateLimited,
    ];

    private static readonly string[] Ops = ["connect", "subscribe", "unsubscribe", "publish", "history", "presence", "ping", "refresh", "", "PING", "x"];
    private static readonly string[] Channels = ["chat:a", "chat:b", "news", "locked:x", "", ":", "chat:", "a b", "ü", new string('c', 300), "chat:\\u0000"];

    private static readonly Gen<string> JsonValue = Gen.OneOf(
        Gen.Const("null"), Gen.Const("true"), Gen.Int.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        Gen.Double.Select(d => double.IsFinite(d) ? d.ToString("R", System.Globalization.CultureInfo.InvariantCulture) : "0"),
        Gen.String.Select(s => JsonSerializer.Serialize(s)), Gen.Const("{}"), Gen.Const("[]"), Gen.Const("{\"a\":[1,{\"b\":null}]}"),
        Gen.Const("-1"), Gen.Const("18446744073709551616"), Gen.Const("1e400"));

    private static readonly Gen<string> StructuredCommand =
        Gen.Select(Gen.Int[0, Ops.Length - 1].Select(i => Ops[i]), Gen.Int[0, Channels.Length - 1].Select(i => Channels[i]), JsonValue, JsonValue, JsonValue, Gen.Int[0, 5])
            .Select((op, channel, data, offset, id, shape) => shape switch
            {
                0 => $$"""{"id":{{id}},"op":"{{op}}","channel":"{{channel}}","data":{{data}}}""",
                1 => $$$"""{"id":1,"op":"{{{op}}}","channel":"{{{channel}}}","since":{"offset":{{{offset}}},"epoch":{{{data}}}}}""",
                2 => $$"""{"op":"{{op}}","channel":{{data}},"limit":{{offset}}}""",
                3 => $$"""{"id":{{id}},"op":{{data}}}""",
                4 => $$"""{"op":"{{op}}","token":{{data}},"since":{{offset}}}""",
                _ => $$"""{"op":"{{op}}","channel":"{{channel}}","data":{{data}},"data":{{data}}}""",
            });

    private static readonly Gen<byte[]> Line = Gen.OneOf(
        Gen.Byte.Array[0, 64],
        Gen.String.Select(s => Encoding.UTF8.GetBytes(s)),
        StructuredCommand.Select(s => Encoding.UTF8.GetBytes(s)),
        Gen.Select(StructuredCommand, Gen.Int[0, 200], Gen.Byte).Select((s, at, b) =>
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            if (bytes.Length > 0)
            {
                bytes[at % bytes.Length] = b; // one corrupted byte
            }
            return bytes;
        }),
        Gen.Select(StructuredCommand, Gen.Int[0, 200]).Select((s, cut) => Encoding.UTF8.GetBytes(s[..Math.Min(cut, s.Length)])));

    [Fact]
    public void AnyInput_GetsWellFormedRepliesWithDocumentedCodes_AndTheSessionGoesOn()
    {
        var options = new HeraldOptions { AllowAnonymous = true, MaxSubscriptionsPerConnection = 4, MaxCommandsPerSecond = 1_000_000, MaxPublishesPerSecond = 1_000_000 };
        options.Namespaces["chat"] = new NamespaceOptions { AllowClientPublish = true, Presence = true, HistorySize = 10 };
        options.Namespaces["locked"] = new NamespaceOptions();
        var node = new HeraldNode(options, new MemoryBroker());
        node.StartAsync().AsTask().GetAwaiter().GetResult();

        Line.Array[1, 4].Sample(lines =>
        {
            var transport = new RecordingTransport();
            var session = new ClientSession(node, transport);
            var connect = Encoding.UTF8.GetBytes("{\"id\":0,\"op\":\"connect\"}\n");
            var frame = connect.Concat(lines.SelectMany(l => l.Append((byte)'\n'))).ToArray();
            session.HandleMessageAsync(frame).AsTask().GetAwaiter().GetResult();

            while (session.Outbound.Reader.TryRead(out var message))
            {
                using var doc = JsonDocument.Parse(message.Bytes); // every message is valid JSON
                var root = doc.RootElement;
                if (root.TryGetProperty("error", out var error))
                {
                    Assert.Contains(error.GetProperty("code").GetString(), KnownCodes);
                }
                else
                {
                    Assert.True(root.TryGetProperty("result", out _) || root.TryGetProperty("push", out _), root.GetRawText());
                }
            }
            Assert.DoesNotContain(transport.Closes, c => c != CloseCodes.Unauthorized);
            session.TerminateAsync().AsTask().GetAwaiter().GetResult();
        }, iter: 3000);

        // The node still serves a well-behaved client afterwards.
        var good = new ClientSession(node, new RecordingTransport());
        good.HandleMessageAsync("{\"id\":1,\"op\":\"connect\"}\n{\"id\":2,\"op\":\"publish\",\"channel\":\"chat:ok\",\"data\":1}"u8.ToArray()).AsTask().GetAwaiter().GetResult();
        Assert.True(good.Outbound.Reader.TryRead(out _));
        Assert.True(good.Outbound.Reader.TryRead(out var published));
        Assert.Contains("\"result\"", Encoding.UTF8.GetString(published.Bytes.Span));
    }

    private static readonly Gen<byte[]> MsgPackValue = Gen.OneOf(
        Gen.Byte.Array[0, 64],
        Gen.Select(Gen.Int[0, Ops.Length - 1], Gen.Int[0, Channels.Length - 1], Gen.Byte.Array[0, 32], Gen.Int[0, 3])
            .Select((op, channel, bytes, shape) => Fuzz.MsgPack.Command(Ops[op], Channels[channel], bytes, shape)));

    [Fact]
    public void AnyMsgPackInput_GetsOneWellFormedMsgPackReplyPerCommand_AndTheSessionGoesOn()
    {
        MsgPackValue.Array[1, 4].Sample(values =>
        {
            Herald.Fuzz.FuzzHarness.RunMsgPack(values.SelectMany(v => v).ToArray());
        }, iter: 1500);
    }
}
