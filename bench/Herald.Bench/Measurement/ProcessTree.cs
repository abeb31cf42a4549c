using System.Globalization;

namespace Herald.Bench.Measurement;

/// <summary>
/// Reads a server's cost from /proc: CPU seconds (user + system) and proportional memory (PSS) of the process and all its
/// descendants (nginx's workers, for instance), so every system is measured the same way whatever its process model.
/// </summary>
internal static class ProcessTree
{
    private const double ClockTicksPerSecond = 100; // USER_HZ; 100 on every Linux this runs on.

    /// <summary>CPU seconds, resident memory (VmRSS) and proportional memory (PSS), summed over the tree.</summary>
    public readonly record struct Sample(double CpuSeconds, long RssBytes, long PssBytes, int Processes);

    public static Sample Read(int rootPid)
    {
        var pids = Descendants(rootPid);
        double cpu = 0;
        long rss = 0, pss = 0;
        foreach (var pid in pids)
        {
            if (TryReadStat(pid, out _, out var ticks))
            {
                cpu += ticks / ClockTicksPerSecond;
            }
            rss += ReadKilobytes($"/proc/{pid}/status", "VmRSS:");
            // PSS as well as RSS: nginx's workers share the master's pages, and adding their RSS counts those twice.
            pss += ReadKilobytes($"/proc/{pid}/smaps_rollup", "Pss:");
        }
        return new Sample(cpu, rss, pss, pids.Count);
    }

    /// <summary>CPU seconds of this (generator) process.</summary>
    public static double SelfCpuSeconds() => Environment.ProcessId is var me && TryReadStat(me, out _, out var ticks) ? ticks / ClockTicksPerSecond : 0;

    /// <summary>
    /// CPU seconds (user + system) of one process, summed over its threads from <c>/proc/&lt;pid&gt;/task/*/schedstat</c>,
    /// whose first field is the time on CPU in nanoseconds. <c>/proc/&lt;pid&gt;/stat</c> counts in 10 ms ticks, too coarse
    /// for a process as quick as Redis: a few hundred publications cost it a few milliseconds.
    /// </summary>
    public static double PreciseCpuSeconds(int pid)
    {
        long nanoseconds = 0;
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    var text = File.ReadAllText(Path.Combine(task, "schedstat"));
                    var space = text.IndexOf(' ', StringComparison.Ordinal);
                    nanoseconds += long.Parse(space < 0 ? text.Trim() : text[..space], CultureInfo.InvariantCulture);
                }
                catch (IOException)
                {
                    // A thread that ended while /proc was read: its time is gone with it, a rounding error here.
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
        }
        return nanoseconds / 1e9;
    }

    private static List<int> Descendants(int root)
    {
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && TryReadStat(pid, out var ppid, out _))
            {
                parents[pid] = ppid;
            }
        }
        var result = new List<int> { root };
        for (var i = 0; i < result.Count; i++)
        {
            foreach (var (pid, ppid) in parents)
            {
                if (ppid == result[i])
                {
                    result.Add(pid);
                }
            }
        }
        return result;
    }

    private static bool TryReadStat(int pid, out int ppid, out long cpuTicks)
    {
        ppid = 0;
        cpuTicks = 0;
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
        // "pid (comm) state ppid … utime stime …": comm may hold spaces, so split after its closing parenthesis. A
        // process that exits while /proc is scanned reads as empty: it is simply not part of the tree any more.
        var close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 > stat.Length)
        {
            return false;
        }
        var fields = stat[(close + 2)..].Split(' ');
        if (fields.Length < 13)
        {
            return false;
        }
        ppid = int.Parse(fields[1], CultureInfo.InvariantCulture);
        cpuTicks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return true;
    }

    private static long ReadKilobytes(string file, string field)
    {
        try
        {
            foreach (var line in File.ReadLines(file))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(field.Length).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }
}
