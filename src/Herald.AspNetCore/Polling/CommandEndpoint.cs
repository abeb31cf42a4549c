using Herald.Handlers;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.Polling;

/// <summary>
/// <c>POST /cmd</c>: the WebSocket's stateless commands (publish, history, presence, ping, rpc) over plain HTTP, for
/// polling clients. Same bodies, same rules, same error codes; the HTTP status mirrors the error code.
/// </summary>
internal static partial class CommandEndpoint
{
    private static partial class CommandLog
    {
        [LoggerMessage(EventId = 400, Level = LogLevel.Error, Message = "HTTP command {Op} failed")]
        public static partial void Failed(ILogger logger, string? op, Exception exception);
    }

    public static async Task HandleAsync(HttpContext context, HeraldNode node, ILogger logger)
    {
        var max = node.Options.MaxMessageBytes;
        if (context.Request.ContentLength > max)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {max} bytes");
            return;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = max;
        }
        // Each HTTP command is its own short-lived client; its id is for handlers and the publication's info only.
        var clientId = node.NewClientId();
        if (await HttpAuth.AuthenticateAsync(context, node, HeraldTransportNames.Command, clientId) is not { } auth)
        {
            return;
        }
        byte[] body;
        try
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
            body = buffer.ToArray();
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {max} bytes");
            return;
        }

        CommandOutcome outcome;
        if (!CommandParser.TryParse(body, out var command, out var error, out var id))
        {
            outcome = CommandOutcome.Failed(id, ErrorCodes.BadRequest, error!);
        }
        else if (command.Op is Ops.Connect or Ops.Subscribe or Ops.Unsubscribe or Ops.Refresh)
        {
            outcome = CommandOutcome.Failed(command.Id, ErrorCodes.BadRequest,
                $"'{command.Op}' needs a WebSocket; over HTTP, send the token as 'Authorization: Bearer' and receive with /poll");
        }
        else
        {
            var client = new ClientInfo(auth.User, clientId);
            try
            {
                outcome = await ChannelCommands.DispatchAsync(node.Channels, node.Handlers, HeraldTransportNames.Command, auth, client, command, context.RequestAborted);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                CommandLog.Failed(logger, command.Op, ex);
                outcome = CommandOutcome.Failed(command.Id, ErrorCodes.Internal, "the server failed to handle the command");
            }
        }
        node.Metrics.CommandHandled(failed: outcome.Error is not null);
        await HttpErrors.WriteJsonAsync(context, outcome.Reply!, outcome.Error is { } failed ? HttpErrors.StatusOf(failed.Code) : StatusCodes.Status200OK);
    }
}
