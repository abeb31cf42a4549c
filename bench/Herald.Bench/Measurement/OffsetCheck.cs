using System.Text.Json;

namespace Herald.Bench.Measurement;

/// <summary>
/// Follows one Herald subscriber's position in its channel from the messages it receives: the subscribe reply's
/// <c>offset</c> (the head when it subscribed), then each push's <c>pub.offset</c> and each skip notice's
/// <c>skipped</c> range. Every offset after the subscribe position must arrive once, in order, or be named by a skip
/// notice whose <c>from</c> is the next offset due; anything else is counted as a gap or a duplicate. Written by the
/// client's receive loop only; read by the scenario.
/// </summary>
internal sealed class OffsetCheck
{
    private long _next = -1;
    private long _publications;
    private long _gaps;
    private long _duplicates;
    private long _skipNotices;
    private long _skippedOffsets;

    /// <summary>Whether the subscribe reply has arrived.</summary>
    public bool Subscribed => Interlocked.Read(ref _next) >= 0;

    /// <summary>The channel's head when the client subscribed.</summary>
    public long SubscribedAt { get; private set; }

    /// <summary>The newest offset the client has been brought to (by a publication or a skip notice).</summary>
    public long Last => Interlocked.Read(ref _next) - 1;

    /// <summary>Publications received (each <c>pub</c> push).</summary>
    public long Publications => Interlocked.Read(ref _publications);

    /// <summary>Offsets missing without a skip notice naming them, plus skip notices that do not start at the next offset due.</summary>
    public long Gaps => Interlocked.Read(ref _gaps);

    /// <summary>Publications received again, or out of order (at or below an offset already passed).</summary>
    public long Duplicates => Interlocked.Read(ref _duplicates);

    public long SkipNotices => Interlocked.Read(ref _skipNotices);

    /// <summary>Offsets named by the skip notices (<c>to − from + 1</c>, summed).</summary>
    public long SkippedOffsets => Interlocked.Read(ref _skippedOffsets);

    /// <summary>Reads one message (one line of a <c>herald.json</c> frame) for <paramref name="subscribeId"/>'s reply and pushes.</summary>
    public void Observe(ReadOnlySpan<byte> line, int subscribeId)
    {
        var reader = new Utf8JsonReader(line);
        long id = -1, offset = -1, from = -1, to = -1;
        var inResult = false;
        var inPub = false;
        var inSkipped = false;
        while (reader.Read())
        {
            if (reader.TokenType != JsonTokenType.PropertyName)
            {
                continue;
            }
            var depth = reader.CurrentDepth;
            if (depth == 1 && reader.ValueTextEquals("id"u8))
            {
                reader.Read();
                id = reader.TokenType == JsonTokenType.Number ? reader.GetInt64() : -1;
            }
            else if (depth == 1 && reader.ValueTextEquals("result"u8))
            {
                inResult = true;
            }
            else if (depth == 2 && inResult && reader.ValueTextEquals("offset"u8))
            {
                reader.Read();
                offset = reader.GetInt64();
            }
            else if (depth == 2 && reader.ValueTextEquals("pub"u8))
            {
                inPub = true;
            }
            else if (depth == 2 && reader.ValueTextEquals("skipped"u8))
            {
                inSkipped = true;
            }
            else if (depth == 3 && inPub && reader.ValueTextEquals("offset"u8))
            {
                reader.Read();
                offset = reader.GetInt64();
            }
            else if (depth == 3 && inSkipped && reader.ValueTextEquals("from"u8))
            {
                reader.Read();
                from = reader.GetInt64();
            }
            else if (depth == 3 && inSkipped && reader.ValueTextEquals("to"u8))
            {
                reader.Read();
                to = reader.GetInt64();
            }
            else if (depth >= 2)
            {
                // The publication's data (the payload) and the reply's publications list hold nothing this follows.
                reader.Skip();
            }
        }
        if (inResult && id == subscribeId && offset >= 0)
        {
            SubscribedAt = offset;
            Interlocked.Exchange(ref _next, offset + 1);
        }
        else if (inPub && offset >= 0)
        {
            OnPublication(offset);
        }
        else if (inSkipped && from >= 0 && to >= from)
        {
            OnSkipped(from, to);
        }
    }

    private void OnPublication(long offset)
    {
        var next = Interlocked.Read(ref _next);
        if (next < 0 || offset < next)
        {
            // Before the subscribe reply nothing may arrive; at or below a passed offset is a repeat.
            Interlocked.Increment(ref _duplicates);
            return;
        }
        if (offset > next)
        {
            Interlocked.Add(ref _gaps, offset - next);
        }
        Interlocked.Increment(ref _publications);
        Interlocked.Exchange(ref _next, offset + 1);
    }

    private void OnSkipped(long from, long to)
    {
        if (from != Interlocked.Read(ref _next))
        {
            Interlocked.Increment(ref _gaps);
        }
        Interlocked.Increment(ref _skipNotices);
        Interlocked.Add(ref _skippedOffsets, to - from + 1);
        Interlocked.Exchange(ref _next, to + 1);
    }
}
