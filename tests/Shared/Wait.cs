namespace Herald.Tests.Infrastructure;

public static class Wait
{
    /// <summary>Polls a condition until it holds or the timeout passes (then fails the test with <paramref name="what"/>).</summary>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting for: {what}");
            }
            await Task.Delay(10);
        }
    }

    /// <summary>Awaits <paramref name="task"/>, failing the test with <paramref name="what"/> when it takes longer than <paramref name="timeout"/>.</summary>
    public static async Task<T> ForAsync<T>(Task<T> task, TimeSpan timeout, string what)
    {
        try
        {
            return await task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting for: {what}");
            throw;
        }
    }
}
