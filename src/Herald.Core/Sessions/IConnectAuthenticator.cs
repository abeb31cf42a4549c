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

    /// <summary>Channel rights the token grants beyond what namespaces allow everyone.</summary>
    public IReadOnlyList<ChannelGrant> Grants { get; init; } = [];

    /// <summary>
    /// Display information vouched for by the token (a JSON object, the JWT's <c>info</c> claim). When set, presence
    /// shows it and ignores whatever <c>info</c> the client sends.
    /// </summary>
    public System.Text.Json.JsonElement? Info { get; init; }

    /// <summary>When the token expires; <see langword="null"/> for anonymous clients and tokens without <c>exp</c>.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>A refusal with a reason.</summary>
    public static AuthenticationResult Refuse(string error) => new(false, "", error);

    /// <summary>Whether a grant allows subscribing to (and reading history and presence of) <paramref name="channel"/>.</summary>
    public bool CanSubscribe(string channel) => Grants.Any(g => g.Subscribe && g.Matches(channel));

    /// <summary>Whether a grant allows publishing to <paramref name="channel"/>.</summary>
    public bool CanPublish(string channel) => Grants.Any(g => g.Publish && g.Matches(channel));
}

/// <summary>Rights on the channels matching a pattern: an exact name, or a prefix followed by <c>*</c>.</summary>
/// <param name="Pattern">For example <c>chat:lobby</c>, <c>chat:*</c> or <c>*</c>.</param>
/// <param name="Subscribe">May subscribe, read history and presence.</param>
/// <param name="Publish">May publish.</param>
public sealed record ChannelGrant(string Pattern, bool Subscribe, bool Publish)
{
    /// <summary>Whether the pattern covers <paramref name="channel"/>.</summary>
    public bool Matches(string channel)
    {
        ArgumentNullException.ThrowIfNull(channel);
        return Pattern.EndsWith('*')
            ? channel.StartsWith(Pattern.AsSpan(0, Pattern.Length - 1), StringComparison.Ordinal)
            : string.Equals(Pattern, channel, StringComparison.Ordinal);
    }
}

/// <summary>Accepts clients without a token when <c>Herald:AllowAnonymous</c> is on; refuses every token.</summary>
internal sealed class AnonymousOnlyAuthenticator(HeraldOptions options) : IConnectAuthenticator
{
    public ValueTask<AuthenticationResult> AuthenticateAsync(string? token, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(
            token is not null ? AuthenticationResult.Refuse("token validation is not configured on this server (set Herald:Token:Secret, PublicKeyFile or JwksFile)")
            : options.AllowAnonymous ? AuthenticationResult.Anonymous
            : AuthenticationResult.Refuse("a token is required (anonymous access is off)"));
}
