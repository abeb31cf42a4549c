namespace Herald.Client;

/// <summary>The server answered a command with an error (see <c>ErrorCodes</c> in Herald.Protocol).</summary>
public class HeraldException : Exception
{
    /// <summary>Creates the exception.</summary>
    public HeraldException() : this("unknown", "the server refused the command")
    {
    }

    /// <summary>Creates the exception.</summary>
    public HeraldException(string message) : this("unknown", message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public HeraldException(string message, Exception innerException) : base(message, innerException)
    {
        Code = "unknown";
    }

    /// <summary>Creates the exception from an error reply.</summary>
    public HeraldException(string code, string message) : base($"{code}: {message}")
    {
        Code = code;
    }

    /// <summary>The error code, one of <c>Herald.Protocol.ErrorCodes</c>.</summary>
    public string Code { get; }
}

/// <summary>The connection was lost (or could not be made) before the command got its reply.</summary>
public class HeraldConnectionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public HeraldConnectionException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public HeraldConnectionException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public HeraldConnectionException(string message, Exception? innerException) : base(message, innerException)
    {
    }
}

/// <summary>
/// <see cref="HeraldClient.SwitchTransportAsync"/> did not land on the requested transport: its one attempt failed
/// (the client then falls back to its other transports, as after any failed attempt), a later switch superseded it,
/// or the client stopped. Subscriptions are unaffected: they resume from their cursors on whatever transport connects.
/// </summary>
public sealed class HeraldTransportSwitchException : HeraldConnectionException
{
    /// <summary>Creates the exception.</summary>
    public HeraldTransportSwitchException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public HeraldTransportSwitchException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public HeraldTransportSwitchException(string message, Exception? innerException) : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a switch to <paramref name="requestedTransport"/>.</summary>
    public HeraldTransportSwitchException(HeraldTransport requestedTransport, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        RequestedTransport = requestedTransport;
    }

    /// <summary>The transport the switch asked for; <see langword="null"/> when not known.</summary>
    public HeraldTransport? RequestedTransport { get; }
}
