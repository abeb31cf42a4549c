using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Herald.Client.Json;
using Herald.Protocol;

namespace Herald.Client.Transports;

/// <summary>Commands over <c>POST /cmd</c> and the HTTP plumbing the transports without a socket of their own share (polling, SSE).</summary>
internal static class HttpCommands
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    public static async Task<JsonElement> SendAsync(HeraldClient client, Uri baseUri, Command command, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, HeraldClient.ResolveHttp(baseUri, client.Options.CommandPath))
        {
            Content = Body(JsonSerializer.SerializeToUtf8Bytes(command, ClientJsonContext.Default.Command)),
        };
        await AuthorizeAsync(client, request, cancellationToken);
        byte[] bytes;
        HttpStatusCode status;
        try
        {
            using var response = await client.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            status = response.StatusCode;
            bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new HeraldConnectionException($"POST /{client.Options.CommandPath} failed: {ex.Message}", ex);
        }
        ServerMessage? reply;
        try
        {
            reply = JsonSerializer.Deserialize(bytes, ClientJsonContext.Default.ServerMessage);
        }
        catch (JsonException ex)
        {
            throw new HeraldConnectionException($"POST /{client.Options.CommandPath} answered {(int)status} without a JSON reply", ex);
        }
        if (reply?.Error is { } error)
        {
            throw ClientTransport.ToException(error);
        }
        if (status != HttpStatusCode.OK || reply?.Result is not { } result)
        {
            throw new HeraldConnectionException($"POST /{client.Options.CommandPath} answered {(int)status}");
        }
        return result;
    }

    public static ByteArrayContent Body(byte[] json)
    {
        var content = new ByteArrayContent(json);
        content.Headers.ContentType = Json;
        return content;
    }

    public static async Task AuthorizeAsync(HeraldClient client, HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (await client.GetTokenAsync(cancellationToken) is { Length: > 0 } token)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }

    public static Exception ErrorOf(HttpStatusCode status, byte[] body, string what)
    {
        try
        {
            if (JsonSerializer.Deserialize(body, ClientJsonContext.Default.HttpErrorBody)?.Error is { } error)
            {
                return ClientTransport.ToException(error);
            }
        }
        catch (JsonException)
        {
        }
        return new HeraldConnectionException($"{what} answered {(int)status}");
    }
}
