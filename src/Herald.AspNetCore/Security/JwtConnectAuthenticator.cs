using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Sessions;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Herald.AspNetCore.Security;

/// <summary>
/// Validates connection tokens (JWT): HS256 with <c>Herald:Token:Secret</c>; RS256 / ES256 with a PEM public key or a
/// JWKS file. <c>sub</c> is the user; <c>exp</c>/<c>nbf</c> are honoured with a small skew; <c>iss</c>/<c>aud</c>
/// are checked when configured. The claim <c>channels</c> grants rights: <c>{"chat:*":["subscribe","publish"]}</c>.
/// The claim <c>info</c>, a JSON object, is the client's display information in presence (it beats the client's own).
/// </summary>
/// <remarks>
/// Unsigned tokens (<c>alg:none</c>) are refused, and each key only verifies its own algorithm family, so a token
/// "signed" with HS256 using the RSA public key as the secret (algorithm confusion) never validates.
/// </remarks>
internal sealed class JwtConnectAuthenticator : IConnectAuthenticator
{
    /// <summary>The claim that carries channel grants.</summary>
    public const string ChannelsClaim = "channels";

    /// <summary>The claim that carries trusted display information for presence.</summary>
    public const string InfoClaim = "info";

    private readonly HeraldOptions _options;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly TokenValidationParameters _parameters;

    /// <summary>Builds the validator from <c>Herald:Token</c>; reads key files once.</summary>
    public JwtConnectAuthenticator(HeraldOptions options, TimeProvider? timeProvider = null)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        var token = options.Token;
        var keys = new List<SecurityKey>();
        var algorithms = new List<string>();
        if (!string.IsNullOrEmpty(token.Secret))
        {
            keys.Add(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(token.Secret)));
            algorithms.Add(SecurityAlgorithms.HmacSha256);
        }
        if (!string.IsNullOrEmpty(token.PublicKeyFile))
        {
            keys.Add(LoadPem(File.ReadAllText(token.PublicKeyFile)));
        }
        if (!string.IsNullOrEmpty(token.JwksFile))
        {
            keys.AddRange(new JsonWebKeySet(File.ReadAllText(token.JwksFile)).GetSigningKeys());
        }
        if (!string.IsNullOrEmpty(token.PublicKeyFile) || !string.IsNullOrEmpty(token.JwksFile))
        {
            algorithms.Add(SecurityAlgorithms.RsaSha256);
            algorithms.Add(SecurityAlgorithms.EcdsaSha256);
        }
        var time = timeProvider ?? TimeProvider.System;
        _parameters = new TokenValidationParameters
        {
            IssuerSigningKeys = keys,
            ValidAlgorithms = algorithms,
            RequireSignedTokens = true,
            ValidateIssuerSigningKey = true,
            ValidateIssuer = !string.IsNullOrEmpty(token.Issuer),
            ValidIssuer = token.Issuer,
            ValidateAudience = !string.IsNullOrEmpty(token.Audience),
            ValidAudience = token.Audience,
            ValidateLifetime = true,
            RequireExpirationTime = false,
            ClockSkew = token.ClockSkew,
            LifetimeValidator = (notBefore, expires, _, p) =>
            {
                var now = time.GetUtcNow().UtcDateTime;
                return (notBefore is null || notBefore.Value <= now + p.ClockSkew)
                    && (expires is null || expires.Value >= now - p.ClockSkew);
            },
        };
    }

    /// <inheritdoc/>
    public async ValueTask<AuthenticationResult> AuthenticateAsync(string? token, CancellationToken cancellationToken = default)
    {
        if (token is null)
        {
            return _options.AllowAnonymous ? AuthenticationResult.Anonymous : AuthenticationResult.Refuse("a token is required (anonymous access is off)");
        }
        if (token.Length > 16 * 1024)
        {
            return AuthenticationResult.Refuse("the token is too large");
        }
        var result = await _handler.ValidateTokenAsync(token, _parameters);
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt)
        {
            return AuthenticationResult.Refuse(Describe(result.Exception));
        }
        var user = jwt.TryGetPayloadValue<string>("sub", out var sub) ? sub : "";
        IReadOnlyList<ChannelGrant> grants;
        try
        {
            grants = ReadGrants(jwt);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            return AuthenticationResult.Refuse($"the '{ChannelsClaim}' claim must be an object of pattern → [\"subscribe\"|\"publish\"]");
        }
        JsonElement? info = null;
        if (jwt.TryGetPayloadValue<JsonElement>(InfoClaim, out var infoClaim) && infoClaim.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
        {
            if (infoClaim.ValueKind != JsonValueKind.Object)
            {
                return AuthenticationResult.Refuse($"the '{InfoClaim}' claim must be a JSON object");
            }
            info = infoClaim.Clone();
        }
        return new AuthenticationResult(true, user, null)
        {
            Grants = grants,
            Info = info,
            ExpiresAt = jwt.TryGetPayloadValue<long>("exp", out var exp) ? DateTimeOffset.FromUnixTimeSeconds(exp) : null,
        };
    }

    private static List<ChannelGrant> ReadGrants(JsonWebToken jwt)
    {
        if (!jwt.TryGetPayloadValue<JsonElement>(ChannelsClaim, out var claim) || claim.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
        {
            return [];
        }
        var grants = new List<ChannelGrant>();
        foreach (var property in claim.EnumerateObject())
        {
            var rights = property.Value.EnumerateArray().Select(r => r.GetString()).ToList();
            grants.Add(new ChannelGrant(property.Name, rights.Contains("subscribe"), rights.Contains("publish")));
        }
        return grants;
    }

    private static string Describe(Exception? exception) => exception switch
    {
        SecurityTokenExpiredException => "the token has expired",
        SecurityTokenNotYetValidException => "the token is not valid yet (nbf)",
        SecurityTokenInvalidIssuerException => "the token's issuer is not accepted",
        SecurityTokenInvalidAudienceException => "the token's audience is not accepted",
        SecurityTokenInvalidLifetimeException => "the token has expired or is not valid yet",
        SecurityTokenInvalidAlgorithmException => "the token's algorithm is not accepted",
        SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException => "the token's signature is invalid",
        SecurityTokenMalformedException => "the token is malformed",
        _ => "the token is invalid",
    };

    private static SecurityKey LoadPem(string pem)
    {
        // A SubjectPublicKeyInfo PEM does not say which algorithm it holds, so try RSA, then EC.
        var rsa = RSA.Create();
        try
        {
            rsa.ImportFromPem(pem);
            return new RsaSecurityKey(rsa);
        }
        catch (CryptographicException)
        {
            rsa.Dispose();
        }
        var ec = ECDsa.Create();
        try
        {
            ec.ImportFromPem(pem);
            return new ECDsaSecurityKey(ec);
        }
        catch (CryptographicException)
        {
            ec.Dispose();
            throw new InvalidOperationException("Herald:Token:PublicKeyFile holds neither an RSA nor an EC public key in PEM form.");
        }
    }
}
