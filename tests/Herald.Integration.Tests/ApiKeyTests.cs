using Herald.AspNetCore.Security;

namespace Herald.Integration.Tests;

/// <summary>The server API's key check on its own: the verdicts, and that remembering accepted headers changes none.</summary>
public sealed class ApiKeyTests
{
    private const string Key = "s3cret-key";

    [Theory]
    [InlineData("Bearer " + Key, "Accepted")]
    [InlineData("bearer " + Key, "Accepted")]
    [InlineData("Bearer   " + Key + "  ", "Accepted")]
    [InlineData("Bearer " + Key + "x", "WrongKey")]
    [InlineData("Bearer s3cret-ke", "WrongKey")]
    [InlineData("Bearer ", "WrongKey")]
    [InlineData("Bearer", "NotBearer")]
    [InlineData(Key, "NotBearer")]
    [InlineData("Basic czNjcmV0LWtleQ==", "NotBearer")]
    [InlineData("", "NotBearer")]
    public void Check_GivesTheVerdict(string header, string verdict)
    {
        var expected = Enum.Parse<ApiKey.Verdict>(verdict);
        var check = ApiKey.For(Key)!;
        Assert.Equal(expected, check.Check(header));
        Assert.Equal(expected, check.Check(header)); // the same instance again: remembered only if it was accepted
        Assert.Equal(expected, check.Check(new string(header.AsSpan()))); // another instance with the same content
    }

    [Fact]
    public void NoKey_MeansNoCheck()
    {
        Assert.Null(ApiKey.For(null));
        Assert.Null(ApiKey.For(""));
    }

    [Fact]
    public void ManyAcceptedHeaders_PushOutNone_AndAWrongKeyStaysWrong()
    {
        var check = ApiKey.For(Key)!;
        // More distinct accepted instances than it remembers, from several threads at once: each still accepted
        // (hashed again once pushed out), and a wrong key interleaved with them is never let through.
        var headers = Enumerable.Range(0, 500).Select(_ => new string(("Bearer " + Key).AsSpan())).ToArray();
        Parallel.For(0, 20_000, i =>
        {
            Assert.Equal(ApiKey.Verdict.Accepted, check.Check(headers[i % headers.Length]));
            Assert.Equal(ApiKey.Verdict.WrongKey, check.Check("Bearer wrong-" + (i % 7)));
        });
    }

    [Fact]
    public void LongPresentedKey_IsHashed_NotRefusedForItsLength()
    {
        var longKey = new string('k', 1000);
        var check = ApiKey.For(longKey)!;
        Assert.Equal(ApiKey.Verdict.Accepted, check.Check("Bearer " + longKey));
        Assert.Equal(ApiKey.Verdict.WrongKey, check.Check("Bearer " + longKey + "k"));
        Assert.Equal(ApiKey.Verdict.WrongKey, ApiKey.For(Key)!.Check("Bearer " + longKey));
    }
}
