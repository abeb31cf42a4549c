using Herald.Sessions;

namespace Herald.Tests.Infrastructure;

/// <summary>
/// Test credentials without JWTs: the token <c>user:&lt;name&gt;</c> connects as that user (granted every channel), no
/// token connects anonymously. Register it with <see cref="Use"/>.
/// </summary>
public sealed class UserAuthenticator : IConnectAuthenticator
{
    public const string Prefix = "user:";

    public static string TokenFor(string user) => Prefix + user;

    public static void Use(Microsoft.Extensions.DependencyInjection.IServiceCollection services) =>
        Microsoft.Extensions.DependencyInjection.ServiceCollectionServiceExtensions.AddSingleton<IConnectAuthenticator, UserAuthenticator>(services);

    public ValueTask<AuthenticationResult> AuthenticateAsync(string? token, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(token switch
        {
            null => AuthenticationResult.Anonymous,
            _ when token.StartsWith(Prefix, StringComparison.Ordinal) && token.Length > Prefix.Length =>
                new AuthenticationResult(true, token[Prefix.Length..], null) { Grants = [new ChannelGrant("*", Subscribe: true, Publish: false)] },
            _ => AuthenticationResult.Refuse("not a test token"),
        });
}
