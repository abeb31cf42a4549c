namespace Herald.Core.Tests;

public sealed class ChannelNameTests
{
    private static readonly HeraldOptions Options = CreateOptions();

    private static HeraldOptions CreateOptions()
    {
        var options = new HeraldOptions { MaxChannelNameLength = 20 };
        options.Namespaces["chat"] = new NamespaceOptions();
        return options;
    }

    [Theory]
    [InlineData("news", "default")]
    [InlineData("chat:lobby", "chat")]
    [InlineData("chat:a:b", "chat")]
    [InlineData("chat:user@x.y=1~", "chat")]
    public void ValidNames_ResolveTheirNamespace(string channel, string ns)
    {
        Assert.Null(ChannelName.Validate(channel, Options, out var found));
        Assert.Same(Options.FindNamespace(ns), found);
    }

    [Theory]
    [InlineData(null, "required")]
    [InlineData("", "required")]
    [InlineData("chat:lobby-with-a-long-name", "at most 20")]
    [InlineData("chat:a b", "may contain only")]
    [InlineData("chat:\"x", "may contain only")]
    [InlineData("chat:a/b", "may contain only")]
    [InlineData("chat:é", "may contain only")]
    [InlineData(":x", "neither part empty")]
    [InlineData("chat:", "neither part empty")]
    [InlineData("other:x", "unknown namespace 'other'")]
    public void InvalidNames_AreRefusedWithAReason(string? channel, string reason)
    {
        Assert.Contains(reason, ChannelName.Validate(channel, Options, out _));
    }

    [Fact]
    public void OptionsValidation_RejectsBadNamespaceNamesAndNegativeValues()
    {
        var options = new HeraldOptions { ConnectTimeout = TimeSpan.Zero };
        options.Namespaces["bad name"] = new NamespaceOptions { HistorySize = -1 };
        var problems = options.Validate().ToList();
        Assert.Contains(problems, p => p.Contains("ConnectTimeout"));
        Assert.Contains(problems, p => p.Contains("namespace name"));
        Assert.Contains(problems, p => p.Contains("HistorySize"));
    }
}
