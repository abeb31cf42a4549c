using System.Text;
using System.Text.Json;
using Herald.Client.Json;
using Herald.Protocol;

namespace Herald.Client.Tests;

/// <summary>
/// Pins the bytes the client writes and the shapes it reads, now that both come from Herald.Protocol's types. The
/// expected strings were recorded from the client's own DTOs before they were replaced, so the wire did not change.
/// </summary>
public sealed class WireShapeTests
{
    private static readonly JsonElement Info = JsonDocument.Parse("{\"name\":\"Ann\"}").RootElement;
    private static readonly JsonElement Data = JsonDocument.Parse("{\"text\":\"hi\"}").RootElement;

    private static string Encode(Command command) =>
        Encoding.UTF8.GetString(JsonSerializer.SerializeToUtf8Bytes(command, ClientJsonContext.Default.Command));

    private static string Encode(PollRequestBody body) =>
        Encoding.UTF8.GetString(JsonSerializer.SerializeToUtf8Bytes(body, ClientJsonContext.Default.PollRequestBody));

    [Fact]
    public void Commands_LeaveAbsentFieldsOut_NeverWriteNull()
    {
        Assert.Equal("{\"id\":1,\"op\":\"subscribe\",\"channel\":\"news\"}",
            Encode(new Command { Id = 1, Op = Ops.Subscribe, Channel = "news" }));
        Assert.Equal("{\"id\":2,\"op\":\"subscribe\",\"channel\":\"news\",\"since\":{\"offset\":7,\"epoch\":\"e1\"}}",
            Encode(new Command { Id = 2, Op = Ops.Subscribe, Channel = "news", Since = new SincePosition { Offset = 7, Epoch = "e1" } }));
        Assert.Equal("{\"id\":3,\"op\":\"connect\",\"token\":\"t\",\"info\":{\"name\":\"Ann\"},\"client\":\"c1\"}",
            Encode(new Command { Id = 3, Op = Ops.Connect, Token = "t", Info = Info, Client = "c1" }));
        Assert.Equal("{\"id\":4,\"op\":\"connect\",\"client\":\"c1\"}",
            Encode(new Command { Id = 4, Op = Ops.Connect, Token = null, Info = null, Client = "c1" }));
        Assert.Equal("{\"id\":5,\"op\":\"publish\",\"channel\":\"news\",\"data\":{\"text\":\"hi\"}}",
            Encode(new Command { Id = 5, Op = Ops.Publish, Channel = "news", Data = Data }));
        Assert.Equal("{\"id\":6,\"op\":\"history\",\"channel\":\"news\",\"since\":{\"offset\":0,\"epoch\":\"e1\"},\"limit\":10}",
            Encode(new Command { Id = 6, Op = Ops.History, Channel = "news", Since = new SincePosition { Offset = 0, Epoch = "e1" }, Limit = 10 }));
        Assert.Equal("{\"op\":\"ping\"}", Encode(new Command { Op = Ops.Ping }));
    }

    [Fact]
    public void EncodedCommands_PassTheServersParser()
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(
            new Command { Id = 1, Op = Ops.Subscribe, Channel = "news" }, ClientJsonContext.Default.Command);
        Assert.True(CommandParser.TryParse(bytes, out var command, out var error, out _), error);
        Assert.Null(command.Since);
        bytes = JsonSerializer.SerializeToUtf8Bytes(
            new Command { Id = 2, Op = Ops.Subscribe, Channel = "news", Since = new SincePosition { Offset = 7, Epoch = "e1" } }, ClientJsonContext.Default.Command);
        Assert.True(CommandParser.TryParse(bytes, out command, out error, out _), error);
        Assert.Equal(7UL, command.Since?.Offset);
        Assert.Equal("e1", command.Since?.Epoch);
    }

    [Fact]
    public void PollBody_WritesNullForANewChannel_AndLeavesAbsentFieldsOut()
    {
        var channels = new Dictionary<string, SincePosition?>(StringComparer.Ordinal)
        {
            ["a"] = null,
            ["b"] = new SincePosition { Offset = 3, Epoch = "e2" },
        };
        Assert.Equal("{\"channels\":{\"a\":null,\"b\":{\"offset\":3,\"epoch\":\"e2\"}},\"wait\":25,\"client\":\"c1\",\"info\":{\"name\":\"Ann\"}}",
            Encode(new PollRequestBody { Channels = channels, Wait = 25, Client = "c1", Info = Info }));
        // The server reads the same type back with the protocol's strict inbound metadata.
        var read = JsonSerializer.Deserialize(Encode(new PollRequestBody { Channels = channels, Wait = 25 }), ProtocolJsonContext.Default.PollRequestBody)!;
        Assert.Null(read.Channels!["a"]);
        Assert.Equal((3UL, "e2"), (read.Channels["b"]!.Offset, read.Channels["b"]!.Epoch));
        Assert.Equal(25, read.Wait);

        var single = new Dictionary<string, SincePosition?>(StringComparer.Ordinal) { ["a"] = new SincePosition { Offset = 0, Epoch = "" } };
        Assert.Equal("{\"channels\":{\"a\":{\"offset\":0,\"epoch\":\"\"}},\"client\":\"c1\"}",
            Encode(new PollRequestBody { Channels = single, Wait = null, Client = "c1" }));
    }

    [Fact]
    public void ServerMessages_FromTheProtocolDocs_AreRead()
    {
        var push = JsonSerializer.Deserialize(
            "{\"push\":{\"channel\":\"news\",\"pub\":{\"offset\":44,\"data\":{\"text\":\"hi\"},\"info\":{\"user\":\"u1\",\"client\":\"c9\"}}}}",
            ClientJsonContext.Default.ServerMessage)!;
        Assert.Null(push.Id);
        Assert.Equal("news", push.Push?.Channel);
        Assert.Equal(44UL, push.Push?.Pub?.Offset);
        Assert.Equal("hi", push.Push?.Pub?.Data.GetProperty("text").GetString());
        Assert.Equal("u1", push.Push?.Pub?.Info?.User);
        Assert.Equal("c9", push.Push?.Pub?.Info?.Client);

        var refused = JsonSerializer.Deserialize(
            "{\"id\":3,\"error\":{\"code\":\"permission_denied\",\"message\":\"no\"}}", ClientJsonContext.Default.ServerMessage)!;
        Assert.Equal(3L, refused.Id);
        Assert.Equal(ErrorCodes.PermissionDenied, refused.Error?.Code);
        Assert.Null(refused.Result);

        var subscribed = JsonSerializer.Deserialize(
            "{\"id\":2,\"result\":{\"epoch\":\"e1\",\"offset\":12,\"recovered\":true,\"publications\":[{\"offset\":11,\"data\":1},{\"offset\":12,\"data\":2}]}}",
            ClientJsonContext.Default.ServerMessage)!;
        var stream = subscribed.Result!.Value.Deserialize(ClientJsonContext.Default.StreamResultMessage)!;
        Assert.Equal(("e1", 12UL, (bool?)true), (stream.Epoch, stream.Offset, stream.Recovered));
        Assert.Equal([11UL, 12UL], stream.Publications!.Select(p => p.Offset));

        var poll = JsonSerializer.Deserialize(
            "{\"channels\":{\"news\":{\"epoch\":\"e1\",\"offset\":0,\"publications\":[]}}}", ClientJsonContext.Default.PollAnswerMessage)!;
        Assert.Null(poll.Channels!["news"].Recovered);
        Assert.Empty(poll.Channels["news"].Publications!);

        var presence = JsonSerializer.Deserialize(
            "{\"presence\":{\"c1\":{\"user\":\"u1\",\"client\":\"c1\",\"info\":{\"name\":\"Ann\"}}}}", ClientJsonContext.Default.PresenceAnswerMessage)!;
        Assert.Equal("Ann", presence.Presence!["c1"].Info?.GetProperty("name").GetString());

        var httpError = JsonSerializer.Deserialize(
            "{\"error\":{\"code\":\"invalid_position\",\"message\":\"beyond the head\"}}", ClientJsonContext.Default.HttpErrorBody)!;
        Assert.Equal(ErrorCodes.InvalidPosition, httpError.Error?.Code);
    }
}
