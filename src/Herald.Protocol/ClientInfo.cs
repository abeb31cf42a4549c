using System.Text.Json;

namespace Herald.Protocol;

/// <summary>Who published a publication or is present in a channel.</summary>
/// <param name="User">The user, from the token's <c>sub</c> claim; empty for anonymous clients.</param>
/// <param name="Client">The server-assigned id of the connection, or the id a polling client sends with its polls.</param>
public sealed record ClientInfo(string User, string Client)
{
    /// <summary>
    /// Display information shown in presence answers: a JSON object from the token's <c>info</c> claim (trusted), or
    /// else the one the client sent with <c>connect</c> or its polls (untrusted); <see langword="null"/> when neither.
    /// </summary>
    /// <remarks>Publications carry only <see cref="User"/> and <see cref="Client"/>.</remarks>
    public JsonElement? Info { get; init; }
}
