using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Herald.Sessions;

/// <summary>
/// Asks the CPU to bring an object's first cache lines in ahead of use. A fan-out walks hundreds of subscribers, and at
/// a low publication rate every one of them (its subscription, session, queue, connection) is cold: the profile of
/// scenario (d) had the fan-out turn and the chunk runner spend most of their own time waiting on the first load from
/// each, one after another. Prefetching a few subscribers ahead lets those misses overlap.
/// </summary>
/// <remarks>
/// The address is read from the reference and used only as a hint: if the GC moves the object meanwhile the prefetch
/// brings in stale lines, and a prefetch never faults. Without SSE (ARM) it does nothing.
/// </remarks>
internal static class CachePrefetch
{
    /// <summary>
    /// How far ahead a loop over subscribers prefetches an object; what that object points to is prefetched half as far
    /// ahead, when the object itself has arrived.
    /// </summary>
    public const int Ahead = 4;

    /// <summary>Prefetches the first two cache lines of <paramref name="target"/> (where the object's header and first fields are).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Object<T>(T? target)
        where T : class
    {
        if (Sse.IsSupported && target is not null)
        {
            var address = (byte*)Unsafe.As<T, nint>(ref target!);
            Sse.Prefetch0(address);
            Sse.Prefetch0(address + 64);
        }
    }
}
