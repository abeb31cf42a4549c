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
}

/// <summary>What a results file holds: the machine, the sizes, and every run.</summary>
internal sealed record ScenarioResults
{
    public string Scenario { get; init; } = "";
    public string Size { get; init; } = "";
    public DateTimeOffset Started { get; init; }
    public Dictionary<string, string> Machine { get; init; } = [];
    public List<RunResult> Runs { get; init; } = [];
}
