using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Herald.Integration.Tests.Infrastructure;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Herald.Integration.Tests;

public sealed class TokenTests : IAsyncLifetime
{
    private const string Secret = "a-test-secret-that-is-long-enough-for-hs256";
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(o =>
    {
        o.AllowAnonymous = false;
        o.Token.Secret = Secret;
        o.Token.ClockSkew = TimeSpan.FromSeconds(1);
        o.Namespaces["private"] = new NamespaceOptions { HistorySize = 10, RequireGrant = true, Presence = true };
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string Token(string? sub = "alice", DateTime? expires = null, DateTime? notBefore = null, string? channels = null, SigningCredentials? credentials = null, string? issuer = null, string? audience = null)
    {
        var claims = new Dictionary<string, object>();
        if (sub is not null)
        {
            claims["sub"] = sub;
        }
        if (channels is not null)
        {
            claims["channels"] = System.Text.Json.JsonDocument.Parse(channels).RootElement;
        }
        var now = DateTime.UtcNow;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Expires = expires ?? now.AddMinutes(5),
            NotBefore = notBefore ?? now.AddMinutes(-1),
            IssuedAt = (notBefore ?? now.AddMinutes(-1)),
            Issuer = issuer,
            Audience = audience,
            SigningCredentials = credentials ?? new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(Secret)), SecurityAlgorithms.HmacSha256),
        });
    }

    private async Task<(System.Text.Json.JsonElement Reply, WsClient Client)> ConnectWithAsync(string? token)
    {
        var client = await WsClient.OpenAsync(_server.WebSocketUri);
        var reply = await client.CommandAsync(token is null ? """{"op":"connect"}""" : $$"""{"op":"connect","token":"{{token}}"}""");
        return (reply, client);
    }

    [Fact]
    public async Task ValidToken_ConnectsAsItsSubject()
    {
        var (reply, client) = await ConnectWithAsync(Token());
        await using var _ = client;
        Assert.Equal("alice", reply.GetProperty("result").GetProperty("user").GetString());
    }

    /// <summary>Regression: a timer cannot wait past about 49.7 days, and connect failed with 'internal' for such tokens.</summary>
    [Fact]
    public async Task TokenExpiringInAYear_Connects_AndStaysOpen()
    {
        var (reply, client) = await ConnectWithAsync(Token(expires: DateTime.UtcNow.AddDays(365)));
        await using var _ = client;

        Assert.True(reply.TryGetProperty("result", out var result), reply.GetRawText());
        Assert.Equal("alice", result.GetProperty("user").GetString());
        Assert.True((await client.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out var pong));
    }

    public static TheoryData<string, string> BadTokens()
    {
        var now = DateTime.UtcNow;
        var otherKey = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes("another-secret-that-is-long-enough-xx")), SecurityAlgorithms.HmacSha256);
        var unsigned = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor { Claims = new Dictionary<string, object> { ["sub"] = "mallory" }, Expires = now.AddMinutes(5) });
        return new TheoryData<string, string>
        {
            { Token(expires: now.AddMinutes(-5), notBefore: now.AddMinutes(-10)), "expired" },
            { Token(notBefore: now.AddMinutes(5), expires: now.AddMinutes(10)), "not valid yet" },
            { Token(credentials: otherKey), "signature" },
            { unsigned, "" },
            { "not.a.jwt", "" },
            { "garbage", "" },
        };
    }

    [Theory]
    [MemberData(nameof(BadTokens))]
    public async Task BadToken_IsUnauthorizedAndClosedWith4003(string token, string reason)
    {
        var (reply, client) = await ConnectWithAsync(token);
        await using var _ = client;
        Assert.Equal("unauthorized", reply.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains(reason, reply.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal((WebSocketCloseStatus)4003, await client.WaitClosedAsync());
    }

    [Fact]
    public async Task NoToken_WhenAnonymousIsOff_IsUnauthorized()
    {
        var (reply, client) = await ConnectWithAsync(null);
        await using var _ = client;
        Assert.Equal("unauthorized", reply.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Grants_DecideSubscribeAndPublishWhereNamespacesDoNot()
    {
        var (_, granted) = await ConnectWithAsync(Token(channels: """{"private:team-*":["subscribe"],"locked:news":["publish"]}"""));
        var (_, plain) = await ConnectWithAsync(Token(sub: "bob"));
        await using var a = granted;
        await using var b = plain;

        Assert.True((await granted.CommandAsync("""{"op":"subscribe","channel":"private:team-1"}""")).TryGetProperty("result", out _));
        Assert.Equal("permission_denied", (await granted.CommandAsync("""{"op":"subscribe","channel":"private:other"}""")).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("permission_denied", (await plain.CommandAsync("""{"op":"subscribe","channel":"private:team-1"}""")).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("permission_denied", (await plain.CommandAsync("""{"op":"history","channel":"private:team-1"}""")).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("permission_denied", (await plain.CommandAsync("""{"op":"presence","channel":"private:team-1"}""")).GetProperty("error").GetProperty("code").GetString());

        Assert.True((await granted.CommandAsync("""{"op":"publish","channel":"locked:news","data":1}""")).TryGetProperty("result", out _));
        Assert.Equal("permission_denied", (await plain.CommandAsync("""{"op":"publish","channel":"locked:news","data":1}""")).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task PollAndCmd_TakeTheSameTokenAsBearer()
    {
        var token = Token(channels: """{"private:*":["subscribe"]}""");
        using var poll = new HttpRequestMessage(HttpMethod.Get, "/poll?channel=private:x");
        poll.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var ok = await _server.Http.SendAsync(poll);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);

        using var denied = new HttpRequestMessage(HttpMethod.Get, "/poll?channel=private:x");
        denied.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token(sub: "bob"));
        using var forbidden = await _server.Http.SendAsync(denied);
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);

        using var bad = new HttpRequestMessage(HttpMethod.Post, "/cmd") { Content = new StringContent("""{"op":"ping"}""") };
        bad.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "garbage");
        using var unauthorized = await _server.Http.SendAsync(bad);
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
    }

    [Fact]
    public async Task ExpiringToken_ClosesWith4005_UnlessRefreshed_AndRefreshKeepsSubscriptions()
    {
        var now = DateTime.UtcNow;
        var (_, refreshed) = await ConnectWithAsync(Token(expires: now.AddSeconds(2)));
        var (_, lapsed) = await ConnectWithAsync(Token(expires: now.AddSeconds(2)));
        await using var r = refreshed;
        await using var l = lapsed;
        await refreshed.CommandAsync("""{"op":"subscribe","channel":"chat:refresh"}""");

        var other = await refreshed.CommandAsync($$"""{"op":"refresh","token":"{{Token(sub: "mallory")}}"}""");
        Assert.Equal("unauthorized", other.GetProperty("error").GetProperty("code").GetString());
        var renewed = await refreshed.CommandAsync($$"""{"op":"refresh","token":"{{Token(expires: now.AddMinutes(10))}}"}""");
        Assert.True(renewed.GetProperty("result").GetProperty("expires").GetInt64() > DateTimeOffset.UtcNow.AddMinutes(9).ToUnixTimeSeconds());

        Assert.Equal((WebSocketCloseStatus)4005, await lapsed.WaitClosedAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(WebSocketState.Open, refreshed.Socket.State);
        await _server.PublishAsync("chat:refresh", "1");
        Assert.Equal(1UL, (await refreshed.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }
}

public sealed class AsymmetricTokenTests
{
    [Theory]
    [InlineData("RS256")]
    [InlineData("ES256")]
    public async Task PublicKeyPem_VerifiesItsAlgorithm_AndRefusesAlgorithmConfusion(string algorithm)
    {
        using var rsa = RSA.Create(2048);
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (pem, credentials) = algorithm == "RS256"
            ? (rsa.ExportSubjectPublicKeyInfoPem(), new SigningCredentials(new RsaSecurityKey(rsa), SecurityAlgorithms.RsaSha256))
            : (ec.ExportSubjectPublicKeyInfoPem(), new SigningCredentials(new ECDsaSecurityKey(ec), SecurityAlgorithms.EcdsaSha256));
        var pemFile = Path.GetTempFileName();
        await File.WriteAllTextAsync(pemFile, pem);
        try
        {
            await using var server = await TestServer.StartAsync(o =>
            {
                o.AllowAnonymous = false;
                o.Token.PublicKeyFile = pemFile;
                o.Token.Issuer = "https://issuer.example";
                o.Token.Audience = "herald";
            });
            string Make(SigningCredentials c, string issuer = "https://issuer.example", string audience = "herald") =>
                new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
                {
                    Claims = new Dictionary<string, object> { ["sub"] = "carol" },
                    Issuer = issuer,
                    Audience = audience,
                    Expires = DateTime.UtcNow.AddMinutes(5),
                    SigningCredentials = c,
                });

            await using (var ok = await server.ConnectAsync(Make(credentials)))
            {
                Assert.True((await ok.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
            }

            // Algorithm confusion: HS256 "signed" with the public key text as the HMAC secret.
            var confused = Make(new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(pem)), SecurityAlgorithms.HmacSha256));
            foreach (var bad in new[] { confused, Make(credentials, issuer: "https://evil.example"), Make(credentials, audience: "other") })
            {
                await using var client = await WsClient.OpenAsync(server.WebSocketUri);
                var reply = await client.CommandAsync($$"""{"op":"connect","token":"{{bad}}"}""");
                Assert.Equal("unauthorized", reply.GetProperty("error").GetProperty("code").GetString());
            }
        }
        finally
        {
            File.Delete(pemFile);
        }
    }

    [Fact]
    public async Task JwksFile_VerifiesTokensByKeyId()
    {
        using var rsa = RSA.Create(2048);
        var key = new RsaSecurityKey(rsa) { KeyId = "k1" };
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(rsa.ExportParameters(false)) { KeyId = "k1" });
        var jwksFile = Path.GetTempFileName();
        await File.WriteAllTextAsync(jwksFile, $$"""{"keys":[{"kty":"RSA","kid":"k1","use":"sig","n":"{{jwk.N}}","e":"{{jwk.E}}"}]}""");
        try
        {
            await using var server = await TestServer.StartAsync(o =>
            {
                o.AllowAnonymous = false;
                o.Token.JwksFile = jwksFile;
            });
            var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
            {
                Claims = new Dictionary<string, object> { ["sub"] = "dave" },
                Expires = DateTime.UtcNow.AddMinutes(5),
                SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.RsaSha256),
            });
            await using var client = await server.ConnectAsync(token);
            Assert.True((await client.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
        }
        finally
        {
            File.Delete(jwksFile);
        }
    }
}
