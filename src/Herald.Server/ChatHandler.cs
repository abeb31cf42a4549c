using System.Security.Cryptography;
using System.Text.Json;
using Herald.Handlers;
using Herald.Protocol;

namespace Herald.Server;

/// <summary>
/// The demo chat's server side: the <c>roll</c> RPC method behind the page's <c>/roll</c> command, and a filter that
/// refuses an empty or over-long chat message. It looks only at <c>chat:</c> channels and at payloads with a
/// <c>text</c> string (what the demo page sends), so any other use of the server passes through untouched. Turn it
/// off with <c>Demo:ChatHandler=false</c>.
/// </summary>
internal sealed class ChatHandler : HeraldHandler
{
    /// <summary>Longest chat message, in characters.</summary>
    public const int MaxTextLength = 500;

    /// <summary>The error code of a refused chat message.</summary>
    public const string InvalidMessage = "invalid_message";

    public override ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Channel.StartsWith("chat:", StringComparison.Ordinal)
            && context.Data is { ValueKind: JsonValueKind.Object } data
            && data.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String)
        {
            var value = text.GetString()!;
            if (string.IsNullOrWhiteSpace(value))
            {
                return Refuse("the message is empty");
            }
            if (value.Length > MaxTextLength)
            {
                return Refuse($"the message is longer than {MaxTextLength} characters");
            }
        }
        return base.OnPublishAsync(context, cancellationToken);

        static ValueTask<HeraldResult<PublishAccepted>> Refuse(string why) =>
            ValueTask.FromResult<HeraldResult<PublishAccepted>>(new HeraldError(InvalidMessage, why));
    }

    /// <summary><c>roll</c>: <c>{"sides":N}</c> (2–1000, default 6) → <c>{"sides":N,"value":1..N}</c>.</summary>
    public override ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Method != "roll")
        {
            return base.OnRpcAsync(context, cancellationToken);
        }
        var sides = 6;
        if (context.Data is { ValueKind: JsonValueKind.Object } data && data.TryGetProperty("sides", out var asked))
        {
            if (asked.ValueKind != JsonValueKind.Number || !asked.TryGetInt32(out sides) || sides < 2 || sides > 1000)
            {
                return ValueTask.FromResult<HeraldResult<RpcReply>>(new HeraldError(ErrorCodes.BadRequest, "'sides' must be a whole number from 2 to 1000"));
            }
        }
        var value = RandomNumberGenerator.GetInt32(1, sides + 1);
        var answer = JsonSerializer.SerializeToElement(new RollAnswer(sides, value), ServerJsonContext.Default.RollAnswer);
        return ValueTask.FromResult<HeraldResult<RpcReply>>(new RpcReply(answer));
    }
}

/// <summary>The answer of <c>roll</c>.</summary>
internal sealed record RollAnswer(
    [property: System.Text.Json.Serialization.JsonPropertyName("sides")] int Sides,
    [property: System.Text.Json.Serialization.JsonPropertyName("value")] int Value);

[System.Text.Json.Serialization.JsonSerializable(typeof(RollAnswer))]
internal sealed partial class ServerJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
