namespace Herald.Bench.Reporting;

internal static class Report
{
    public static void Write(string resultsDir, string docsDir) => throw new NotImplementedException();
}
