using System.Diagnostics.CodeAnalysis;

namespace Herald;

/// <summary>
/// A refusal the core answers with: one of <see cref="Protocol.ErrorCodes"/> and a message for people. Transports map
/// it to an error reply or an HTTP status once; nothing parses it back out of bytes.
/// </summary>
/// <param name="Code">The documented error code, e.g. <c>permission_denied</c>.</param>
/// <param name="Message">What went wrong, in words the client's developer can act on.</param>
public sealed record HeraldError(string Code, string Message);

/// <summary>The answer of a core operation: a value, or a <see cref="HeraldError"/>.</summary>
/// <typeparam name="T">The value's type.</typeparam>
public readonly struct HeraldResult<T>
{
    private readonly T? _value;

    /// <summary>A successful result.</summary>
    public HeraldResult(T value)
    {
        _value = value;
        Error = null;
    }

    /// <summary>A refusal.</summary>
    public HeraldResult(HeraldError error)
    {
        _value = default;
        Error = error ?? throw new ArgumentNullException(nameof(error));
    }

    /// <summary>The refusal, or <see langword="null"/> when the operation succeeded.</summary>
    public HeraldError? Error { get; }

    /// <summary>The value; throws when the result is an error.</summary>
    public T Value => Error is null ? _value! : throw new InvalidOperationException($"the operation failed: {Error.Code}");

    /// <summary>Gets the value, or the error.</summary>
    public bool TryGetValue([MaybeNullWhen(false)] out T value, [NotNullWhen(false)] out HeraldError? error)
    {
        value = _value;
        error = Error;
        return error is null;
    }

    /// <summary>Wraps a value.</summary>
    public static implicit operator HeraldResult<T>(T value) => new(value);

    /// <summary>Wraps an error.</summary>
    public static implicit operator HeraldResult<T>(HeraldError error) => new(error);
}
