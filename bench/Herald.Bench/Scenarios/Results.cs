using System.Text.Json.Serialization;

namespace Herald.Bench.Scenarios;

/// <summary>One measured interval of a run at one offered publish rate.</summary>
internal sealed record StepResult
{
    public double TargetRate { get; init; }
    public double PublishedPerSecond { get; init; }
    public long Published { get; init; }
    public long Expected { get; init; }
    public long Delivered { get; init; }
    public double Seconds { get; init; }
    public double DeliveriesPerSecond { get; init; }
    public double P50Ms { get; init; }
    public double P90Ms { get; init; }
    public double P99Ms { get; init; }
    public double MaxMs { get; init; }
    // How long the publish API took to answer (each POST, from its start to its answer), over the step.
    public double PublishP50Ms { get; init; }
    public double PublishP99Ms { get; init; }
    public double ServerCpuSeconds { get; init; }
    public double ServerCpuPercent { get; init; }
    public double GeneratorCpuPercent { get; init; }
    public double DeliveriesPerCpuSecond { get; init; }
    public double PeakRssMb { get; init; }
    public double PeakPssMb { get; init; }
    public double BytesPerDelivery { get; init; }
    public double RequestsPerDelivery { get; init; }
    public long Errors { get; init; }

    // The multinode scenario's figures (absent from the other scenarios' files). Server CPU there is the nodes' sum.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double ServerCpuMicrosPerDelivery { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double RedisCpuSeconds { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double RedisCpuPercent { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double RedisCpuMicrosPerPublication { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double RedisCpuMicrosPerPublicationAboveIdle { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double RedisPeakRssMb { get; init; }

    public bool Saturated { get; init; }
    public string Limit { get; init; } = "";
}

/// <summary>One system, transport and size within a scenario.</summary>
internal sealed record RunResult
{
    public string Scenario { get; init; } = "";
    public string System { get; init; } = "";
    public string Transport { get; init; } = "";
    public int Clients { get; init; }
    public int Channels { get; init; }
    public int Connected { get; init; }
    public int ConnectFailures { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Nodes { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double RedisIdleCpuPercent { get; init; }
    public string? FirstError { get; init; }
    public List<StepResult> Steps { get; init; } = [];
    public double BaselinePssMb { get; init; }
    public double LoadedPssMb { get; init; }
    public double LoadedRssMb { get; init; }
    public double KbPerConnection { get; init; }
    public string Limit { get; init; } = "";
    public double WallSeconds { get; init; }

    // The conflate scenario's figures (absent from the other scenarios' files).
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ConflateResult? Conflate { get; init; }
}

/// <summary>
/// One mode of the conflate scenario: fast and slow WebSocket subscribers of one channel, in a namespace with
/// <c>Conflate</c> (<see cref="Mode"/> <c>conflate</c>) or without (<c>plain</c>). The fast subscribers' deliveries
/// and latency are the run's step; this holds what the offsets, the slow subscribers and the server showed.
/// </summary>
internal sealed record ConflateResult
{
    public string Mode { get; init; } = "";
    public string Channel { get; init; } = "";
    public double Rate { get; init; }
    public double PublishSeconds { get; init; }
    public double WarmLoadSeconds { get; init; }
    public int PayloadBytes { get; init; }
    public int MaxQueuedBytes { get; init; }
    public double StallAfterSeconds { get; init; }
    public double StallSeconds { get; init; }
    public int SlowReceiveBufferBytes { get; init; }

    /// <summary>The channel's head (newest offset) once publishing ended.</summary>
    public long FinalOffset { get; init; }

    public SubscriberGroup Fast { get; init; } = new();

    // The fast subscribers' delivery latency in each part of the publishing interval: before the stall, during it,
    // and from its end (the slow subscribers catching up) to the end of the drain.
    public PhaseLatency FastBeforeStall { get; init; } = new();
    public PhaseLatency FastInStall { get; init; } = new();
    public PhaseLatency FastAfterStall { get; init; } = new();

    public SubscriberGroup Slow { get; init; } = new();
    public List<SlowSubscriber> SlowSubscribers { get; init; } = [];

    // The server's memory (process tree, /proc): settled with the subscribers connected before any load, its peak
    // while every subscriber read (the warm load and publishing before the stall), and its peak during the stall.
    public double BeforePssMb { get; init; }
    public double BeforeRssMb { get; init; }
    public double ReadingPeakPssMb { get; init; }
    public double ReadingPeakRssMb { get; init; }
    public double StallPeakPssMb { get; init; }
    public double StallPeakRssMb { get; init; }

    // The server's own counters (GET /metrics) at the end of the run.
    public long ServerConflatedSkips { get; init; }
    public long ServerSlowConsumerCloses { get; init; }
}

/// <summary>What a group of subscribers (fast or slow) received, summed over its members.</summary>
internal sealed record SubscriberGroup
{
    public int Count { get; init; }

    /// <summary>Offsets due to the group: from each member's subscribe position to the final offset.</summary>
    public long OffsetsDue { get; init; }
    public long Publications { get; init; }
    public long Gaps { get; init; }
    public long Duplicates { get; init; }
    public long SkipNotices { get; init; }
    public long SkippedOffsets { get; init; }

    /// <summary>Members that reached the final offset (by its publication, after any skips).</summary>
    public int SawFinal { get; init; }

    /// <summary>Members whose connection ended during the run (a close frame or a reset).</summary>
    public int Closed { get; init; }
}

/// <summary>Delivery latency percentiles over one part of a run.</summary>
internal sealed record PhaseLatency
{
    public long Deliveries { get; init; }
    public double P50Ms { get; init; }
    public double P99Ms { get; init; }
    public double MaxMs { get; init; }
}

/// <summary>One slow subscriber: how its connection ended (if it did) and what it received.</summary>
internal sealed record SlowSubscriber
{
    public int? CloseCode { get; init; }
    public string? LostWith { get; init; }

    /// <summary>Seconds from the start of publishing to when the client saw its connection end.</summary>
    public double? EndedAtSeconds { get; init; }
    public long Publications { get; init; }
    public long SkipNotices { get; init; }
    public long SkippedOffsets { get; init; }
    public long Gaps { get; init; }
    public long Duplicates { get; init; }
    public long LastOffset { get; init; }
    public bool SawFinal { get; init; }
}

/// <summary>What a results file holds: the machine, the sizes, and every run.</summary>
internal sealed record ScenarioResults
{
    public string Scenario { get; init; } = "";
    public string Size { get; init; } = "";
    public DateTimeOffset Started { get; init; }

    /// <summary>What to say of this run beside its figures (<c>--note</c>), e.g. that it was taken on a shared machine.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Note { get; init; }
    public Dictionary<string, string> Machine { get; init; } = [];
    public List<RunResult> Runs { get; init; } = [];
}
