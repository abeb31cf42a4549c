using Herald.Handlers;

namespace Herald.Server;

/// <summary>
/// The demo board's server side: on <c>board:</c> channels a publication is one token position, exactly
/// <see cref="PositionBytes"/> bytes (x and y as big-endian unsigned 16-bit integers, 0–65535 across the board), so a
/// tab cannot draw a stray JSON or oversized payload on every other tab. Any other channel passes untouched. Turn it
/// off with <c>Demo:BoardHandler=false</c>.
/// </summary>
internal sealed class BoardHandler : HeraldHandler
{
    /// <summary>The namespace of the board's channels, with its colon.</summary>
    public const string Prefix = "board:";

    /// <summary>The size of one position: x, y as big-endian uint16.</summary>
    public const int PositionBytes = 4;

    public override ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Channel.StartsWith(Prefix, StringComparison.Ordinal) && context.Bytes is not { Length: PositionBytes })
        {
            return ValueTask.FromResult<HeraldResult<PublishAccepted>>(new HeraldError(ChatHandler.InvalidMessage,
                $"a board position is {PositionBytes} bytes (x, y as big-endian uint16), published as bytes"));
        }
        return base.OnPublishAsync(context, cancellationToken);
    }
}
