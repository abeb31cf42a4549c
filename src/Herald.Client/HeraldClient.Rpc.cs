using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Herald.Protocol;

namespace Herald.Client;

public sealed partial class HeraldClient
{
    /// <summary>
    /// Calls <paramref name="method"/> on the server's application handler with <paramref name="data"/>, over the current
    /// transport (the WebSocket, or <c>POST /cmd</c> when polling).
    /// </summary>
    /// <param name="method">The method: 1 to 64 characters of <c>A-Z a-z 0-9 _ - . :</c>.</param>
    /// <param name="data">The argument, any JSON; <see langword="null"/> sends none.</param>
    /// <param name="cancellationToken">Stops waiting for the answer.</param>
    /// <returns>The answer's <c>data</c> (a JSON <c>null</c> when the handler returned none).</returns>
    /// <exception cref="HeraldException">
    /// The server refused it: <c>not_available</c> (no handler answers the method), <c>bad_request</c> (an invalid method
    /// name), <c>internal</c> (the handler failed or timed out), or the handler's own code.
    /// </exception>
    /// <exception cref="HeraldConnectionException">The connection was lost before the answer; the call may or may not have run.</exception>
    public async ValueTask<JsonElement> RpcAsync(string method, JsonElement? data = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        var result = await ExecuteAsync(new Command { Op = Ops.Rpc, Method = method, Data = data }, cancellationToken);
        return result.ValueKind == JsonValueKind.Object && result.TryGetProperty("data", out var answer) ? answer.Clone() : default;
    }

    /// <summary>Calls <paramref name="method"/> with a typed argument and answer, serialized with source-generated metadata.</summary>
    /// <inheritdoc cref="RpcAsync(string, JsonElement?, CancellationToken)"/>
    /// <param name="method">The method.</param>
    /// <param name="request">The argument.</param>
    /// <param name="requestType">Metadata of the argument's type.</param>
    /// <param name="responseType">Metadata of the answer's type.</param>
    /// <param name="cancellationToken">Stops waiting for the answer.</param>
    /// <returns>The answer's <c>data</c>, deserialized.</returns>
    public async ValueTask<TResponse?> RpcAsync<TRequest, TResponse>(string method, TRequest request, JsonTypeInfo<TRequest> requestType, JsonTypeInfo<TResponse> responseType, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requestType);
        ArgumentNullException.ThrowIfNull(responseType);
        var answer = await RpcAsync(method, JsonSerializer.SerializeToElement(request, requestType), cancellationToken);
        return answer.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null ? default : answer.Deserialize(responseType);
    }
}
