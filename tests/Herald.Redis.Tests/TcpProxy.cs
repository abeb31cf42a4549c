using System.Net;
using System.Net.Sockets;

namespace Herald.Redis.Tests;

/// <summary>
/// A TCP forwarder on a free loopback port, standing in for the address clients use to reach "the Redis primary"
/// (a floating IP, a DNS name, a Sentinel-aware proxy): <see cref="SwitchTo"/> points it at another server and cuts
/// every connection, as a failover does.
/// </summary>
public sealed class TcpProxy : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<TcpClient> _open = [];
    private int _target;

    public TcpProxy(int target)
    {
        _target = target;
        _listener.Start();
        _ = AcceptLoopAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>New connections go to <paramref name="target"/>; the open ones are cut.</summary>
    public void SwitchTo(int target)
    {
        TcpClient[] open;
        lock (_gate)
        {
            _target = target;
            open = [.. _open];
            _open.Clear();
        }
        foreach (var client in open)
        {
            client.Dispose();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        SwitchTo(0);
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = ForwardAsync(inbound);
        }
    }

    private async Task ForwardAsync(TcpClient inbound)
    {
        var outbound = new TcpClient();
        int target;
        lock (_gate)
        {
            target = _target;
            _open.Add(inbound);
            _open.Add(outbound);
        }
        try
        {
            await outbound.ConnectAsync(IPAddress.Loopback, target, _stop.Token);
            var up = inbound.GetStream().CopyToAsync(outbound.GetStream(), _stop.Token);
            var down = outbound.GetStream().CopyToAsync(inbound.GetStream(), _stop.Token);
            await Task.WhenAny(up, down);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            lock (_gate)
            {
                _open.Remove(inbound);
                _open.Remove(outbound);
            }
            inbound.Dispose();
            outbound.Dispose();
        }
    }
}
