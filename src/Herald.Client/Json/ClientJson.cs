using System.Text.Json.Serialization;
using Herald.Protocol;

namespace Herald.Client.Json;

/// <summary>
/// Source-generated JSON metadata for the wire shapes the client reads and writes, all declared in Herald.Protocol.
/// </summary>
/// <remarks>
/// Absent fields are left out rather than written as <c>null</c>, so that every command has the shape
/// <c>docs/protocol.md</c> shows (no <c>"since":null</c> on a subscribe without a cursor). A poll body's
/// <see langword="null"/> cursor is still written, as the JSON <c>null</c> that means "no cursor yet", because the
/// ignore condition does not apply to dictionary values.
/// </remarks>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Command))]
[JsonSerializable(typeof(PollRequestBody))]
[JsonSerializable(typeof(ServerMessage))]
[JsonSerializable(typeof(HttpErrorBody))]
[JsonSerializable(typeof(StreamResultMessage))]
[JsonSerializable(typeof(PollAnswerMessage))]
[JsonSerializable(typeof(PresenceAnswerMessage))]
[JsonSerializable(typeof(System.Text.Json.JsonElement))]
internal sealed partial class ClientJsonContext : JsonSerializerContext;
