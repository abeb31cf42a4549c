namespace Herald;

/// <summary>The channel naming rules: <c>namespace:name</c>, or a bare name in the default namespace.</summary>
/// <remarks>
/// Allowed characters are <c>A-Z a-z 0-9 _ - . : @ = ~</c>, so a name never needs JSON escaping and is always one URL path segment
/// (which is why push frames can copy it verbatim). The namespace is the part before the first <c>:</c>.
/// </remarks>
internal static class ChannelName
{
    /// <summary>Checks <paramref name="channel"/> against the rules and finds its namespace's options.</summary>
    /// <returns><see langword="null"/> when valid, otherwise a message for an <c>invalid_channel</c> error.</returns>
    public static string? Validate(string? channel, HeraldOptions options, out NamespaceOptions? ns)
    {
        ArgumentNullException.ThrowIfNull(options);
        ns = null;
        if (string.IsNullOrEmpty(channel))
        {
            return "the channel name is required";
        }
        if (channel.Length > options.MaxChannelNameLength)
        {
            return $"channel names are at most {options.MaxChannelNameLength} characters";
        }
        foreach (var c in channel)
        {
            if (!IsAllowed(c))
            {
                return "channel names may contain only A-Z a-z 0-9 and _ - . : @ = ~";
            }
        }
        var colon = channel.IndexOf(':', StringComparison.Ordinal);
        if (colon == 0 || colon == channel.Length - 1)
        {
            return "a channel name is 'namespace:name' or a bare name, with neither part empty";
        }
        var nsName = colon < 0 ? HeraldOptions.DefaultNamespace : channel[..colon];
        ns = options.FindNamespace(nsName);
        return ns is null ? $"unknown namespace '{nsName}'" : null;
    }

    /// <summary>Whether <paramref name="name"/> can name a namespace.</summary>
    public static bool IsValidNamespaceName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');

    private static bool IsAllowed(char c) =>
        char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or ':' or '@' or '=' or '~';
}
