// The .NET client against a Herald server (the EmbeddedServer sample, or `herald --environment Development`):
// subscribes to chat:lobby, publishes, sees its own publication arrive, calls the `time` RPC method, and exits.
//   dotnet run --project samples/ConsoleClient -- http://localhost:5080/
using System.Text.Json;
using Herald.Client;

var server = new Uri(args.Length > 0 ? args[0] : "http://localhost:8080/");
await using var client = new HeraldClient(new HeraldClientOptions { BaseUri = server });
client.StateChanged += (_, e) => Console.WriteLine($"state: {e.State} {e.Transport}");
client.RecoveryFailed += (_, e) => Console.WriteLine($"{e.Channel}: missed publications are gone");
await client.ConnectAsync();

await using var lobby = await client.SubscribeAsync("chat:lobby");
using var message = JsonDocument.Parse("""{"text":"hello from the console sample"}""");
var sent = await client.PublishAsync("chat:lobby", message.RootElement);
Console.WriteLine($"published at offset {sent.Offset}");

using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
await foreach (var publication in lobby.WithCancellation(timeout.Token))
{
    Console.WriteLine($"{publication.Offset}: {publication.Data}");
    if (publication.Offset == sent.Offset)
    {
        break;
    }
}

try
{
    Console.WriteLine($"server time: {await client.RpcAsync("time")}");
}
catch (HeraldException e) when (e.Code == "not_available")
{
    Console.WriteLine("this server has no `time` method (run the EmbeddedServer sample for it)");
}
