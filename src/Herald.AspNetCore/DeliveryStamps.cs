using System.Buffers;

namespace Herald.AspNetCore;

/// <summary>
/// The accepted-at stamps of the pushes in one write, kept until the write completes so delivery latency is measured
/// when the bytes left; rented from the pool so an idle connection holds none. Shared by the WebSocket and SSE writers.
/// </summary>
internal static class DeliveryStamps
{
    /// <summary>Stores <paramref name="stamp"/> at <paramref name="index"/>, renting a larger array when needed.</summary>
    public static void Add(ref long[]? stamps, int index, long stamp)
    {
        if (stamps is null || index == stamps.Length)
        {
            var larger = ArrayPool<long>.Shared.Rent(stamps is null ? 64 : stamps.Length * 2);
            if (stamps is not null)
            {
                stamps.AsSpan().CopyTo(larger);
                ArrayPool<long>.Shared.Return(stamps);
            }
            stamps = larger;
        }
        stamps[index] = stamp;
    }
}
