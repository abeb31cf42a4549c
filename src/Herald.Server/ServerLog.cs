namespace Herald.Server;

internal static partial class ServerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "Herald:ApiKey is not set; the server API key for this run is: {ApiKey}")]
    public static partial void GeneratedApiKey(ILogger logger, string apiKey);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Herald starting ({Environment}): anonymous access {AllowAnonymous}, namespaces: {Namespaces}")]
    public static partial void Profile(ILogger logger, string environment, bool allowAnonymous, string namespaces);
}
