using System.Buffers;
using MessagePack;

namespace Herald.Core.Tests.Fuzz;

/// <summary>Builds herald.msgpack commands for the property-based fuzz test, with the library's writer.</summary>
internal static class MsgPack
{
    public static byte[] Command(string op, string channel, byte[] bytes, int shape)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        writer.WriteMapHeader(4);
        writer.Write("id");
        writer.Write(shape);
        writer.Write("op");
        writer.Write(op);
        writer.Write("channel");
        writer.Write(channel);
        writer.Write(shape switch { 0 => "data", 1 => "b64", 2 => "since", _ => "info" });
        switch (shape)
        {
            case 0:
                writer.Write(bytes);
                break;
            case 1:
                writer.Write(Convert.ToBase64String(bytes));
                break;
            case 2:
                writer.WriteMapHeader(2);
                writer.Write("offset");
                writer.Write(bytes.Length);
                writer.Write("epoch");
                writer.Write(bytes);
                break;
            default:
                writer.WriteArrayHeader(bytes.Length);
                foreach (var b in bytes)
                {
                    writer.Write(b);
                }
                break;
        }
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}
