using System.Collections;
using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore;

/// <summary>
/// A request's headers as handlers see them (<see cref="Herald.Handlers.ConnectContext.Headers"/>): a view over the live
/// <see cref="IHeaderDictionary"/>, so no connection copies its headers; several values of one header are joined with commas.
/// </summary>
internal sealed class RequestHeaders(IHeaderDictionary headers) : IReadOnlyDictionary<string, string>
{
    public string this[string key] => TryGetValue(key, out var value) ? value : throw new KeyNotFoundException(key);

    public IEnumerable<string> Keys => headers.Keys;

    public IEnumerable<string> Values => headers.Select(h => h.Value.ToString());

    public int Count => headers.Count;

    public bool ContainsKey(string key) => headers.ContainsKey(key);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out string value)
    {
        if (headers.TryGetValue(key, out var values))
        {
            value = values.ToString();
            return true;
        }
        value = null;
        return false;
    }

    public IEnumerator<KeyValuePair<string, string>> GetEnumerator() =>
        headers.Select(h => new KeyValuePair<string, string>(h.Key, h.Value.ToString())).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
