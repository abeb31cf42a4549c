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

/// <summary>
/// A request's headers copied when the request ends before the connection it opened (a WebSocket handed off below the
/// HTTP layer, <see cref="WebSockets.WebSocketHandoff"/>): what <see cref="RequestHeaders"/> shows, in one array of
/// names and values, looked up by case-insensitive name.
/// </summary>
internal sealed class HeaderSnapshot : IReadOnlyDictionary<string, string>
{
    // Name, value, name, value…
    private readonly string[] _pairs;

    public HeaderSnapshot(IHeaderDictionary headers)
    {
        _pairs = new string[headers.Count * 2];
        var i = 0;
        foreach (var (name, values) in headers)
        {
            _pairs[i++] = name;
            _pairs[i++] = values.ToString();
        }
    }

    public string this[string key] => TryGetValue(key, out var value) ? value : throw new KeyNotFoundException(key);

    public IEnumerable<string> Keys => this.Select(h => h.Key);

    public IEnumerable<string> Values => this.Select(h => h.Value);

    public int Count => _pairs.Length / 2;

    public bool ContainsKey(string key) => TryGetValue(key, out _);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out string value)
    {
        for (var i = 0; i < _pairs.Length; i += 2)
        {
            if (string.Equals(_pairs[i], key, StringComparison.OrdinalIgnoreCase))
            {
                value = _pairs[i + 1];
                return true;
            }
        }
        value = null;
        return false;
    }

    public IEnumerator<KeyValuePair<string, string>> GetEnumerator()
    {
        for (var i = 0; i < _pairs.Length; i += 2)
        {
            yield return new KeyValuePair<string, string>(_pairs[i], _pairs[i + 1]);
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
