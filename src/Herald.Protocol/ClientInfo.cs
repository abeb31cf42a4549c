namespace Herald.Protocol;

/// <summary>Who published a publication or is present in a channel.</summary>
/// <param name="User">The user, from the token's <c>sub</c> claim; empty for anonymous clients.</param>
/// <param name="Client">The server-assigned id of the connection.</param>
public sealed record ClientInfo(string User, string Client);
