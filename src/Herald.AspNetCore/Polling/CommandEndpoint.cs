using Herald.Protocol;
using Herald.Sessions;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.Polling;

/// <summary>
/// <c>POST /cmd</c>: the WebSocket's stateless commands (publish, history, presence, ping) over plain HTTP, for
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
        if (await HttpAuth.AuthenticateAsync(context, node) is not { } auth)
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

        byte[] reply;
        if (!CommandParser.TryParse(body, out var command, out var error, out var id))
        {
            reply = ProtocolWriter.EncodeError(id, ErrorCodes.BadRequest, error!);
        }
        else
        {
            // Each HTTP command is its own short-lived client; its id is for the publication's info only.
            var client = new ClientInfo(auth.User, node.NewClientId());
            try
            {
                reply = await DispatchAsync(node, auth, client, command, context.RequestAborted);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                CommandLog.Failed(logger, command.Op, ex);
                reply = ProtocolWriter.EncodeError(command.Id, ErrorCodes.Internal, "the server failed to handle the command");
            }
        }
        var failed = ProtocolWriter.IsErrorReply(reply);
        node.Metrics.CommandHandled(failed);
        await HttpErrors.WriteJsonAsync(context, reply, failed ? StatusOf(reply) : StatusCodes.Status200OK);
    }

    private static async ValueTask<byte[]> DispatchAsync(HeraldNode node, AuthenticationResult auth, ClientInfo client, Command command, CancellationToken cancellationToken) =>
            command.Op switch
            {
                Ops.Publish => await ChannelCommands.PublishAsync(node, auth, client, command, cancellationToken),
                Ops.History => await ChannelCommands.HistoryAsync(node, auth, command, cancellationToken),
                Ops.Presence => ChannelCommands.Presence(node, auth, command),
                Ops.Ping => ProtocolWriter.EncodeResult(command.Id, 0, static (_, _) => { }),
                Ops.Connect or Ops.Subscribe or Ops.Unsubscribe or Ops.Refresh => ProtocolWriter.EncodeError(command.Id, ErrorCodes.BadRequest,
                    $"'{command.Op}' needs a WebSocket; over HTTP, send the token as 'Authorization: Bearer' and receive with /poll"),
                _ => ProtocolWriter.EncodeError(command.Id, ErrorCodes.UnknownOp, $"unknown op '{command.Op}'"),
            };

    /// <summary>The HTTP status for an error reply, from its code.</summary>
    private static int StatusOf(byte[] reply)
    {
        var code = System.Text.Json.JsonDocument.Parse(reply).RootElement.GetProperty("error").GetProperty("code").GetString();
        return code switch
        {
            ErrorCodes.Unauthorized => StatusCodes.Status401Unauthorized,
            ErrorCodes.PermissionDenied => StatusCodes.Status403Forbidden,
            ErrorCodes.NotAvailable => StatusCodes.Status404NotFound,
            ErrorCodes.EpochMismatch => StatusCodes.Status409Conflict,
            ErrorCodes.PayloadTooLarge => StatusCodes.Status413PayloadTooLarge,
            ErrorCodes.RateLimited => StatusCodes.Status429TooManyRequests,
            ErrorCodes.Internal => StatusCodes.Status500InternalServerError,
            _ => StatusCodes.Status400BadRequest,
        };
    }
}
