namespace Herald.Sessions;

/// <summary>Decides whether a <c>connect</c> (or a polling request's bearer token) is allowed, and as whom.</summary>
public interface IConnectAuthenticator
{
    /// <summary>Checks <paramref name="token"/> (<see langword="null"/> when the client sent none).</summary>
    ValueTask<AuthenticationResult> AuthenticateAsync(string? token, CancellationToken cancellationToken = default);
}

/// <summary>The outcome of authentication.</summary>
/// <param name="Succeeded">Whether the client may connect.</param>
/// <param name="User">The user (empty for anonymous).</param>
/// <param name="Error">Why it was refused, for the <c>unauthorized</c> error message.</param>
public sealed record AuthenticationResult(bool Succeeded, string User, string? Error)
{
    /// <summary>An accepted anonymous client.</summary>
    public static AuthenticationResult Anonymous { get; } = new(true, "", null);

    /// <summary>A refusal with a reason.</summary>
    public static AuthenticationResult Refuse(string error) => new(false, "", error);
}

/// <summary>Accepts clients without a token when <c>Herald:AllowAnonymous</c> is on; refuses every token.</summary>
internal sealed class AnonymousOnlyAuthenticator(HeraldOptions options) : IConnectAuthenticator
{
    public ValueTask<AuthenticationResult> AuthenticateAsync(string? token, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(
            token is not null ? AuthenticationResult.Refuse("token validation is not configured on this server")
            : options.AllowAnonymous ? AuthenticationResult.Anonymous
            : AuthenticationResult.Refuse("a token is required (anonymous access is off)"));
}
