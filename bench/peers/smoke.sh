#!/usr/bin/env bash
# Proves the three benchmark peers and the two floors work: installs/builds them (install.sh), starts each on a free
# port on 127.0.0.1, runs smoke.mjs against all five, and stops them. Nothing is left running when it exits, however it exits.
# Exit status: smoke.mjs's (0 = every check passed). The peers' own output is printed when something failed.
#   bash bench/peers/smoke.sh            (SMOKE_SKIP_INSTALL=1 to skip install.sh)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if [ "${SMOKE_SKIP_INSTALL:-0}" != 1 ]; then
  bash "$HERE/install.sh"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/herald-peers-smoke.XXXXXX")"
PIDS=()

cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  # run.sh execs nginx, so PIDS holds the master; its workers exit with it. The pid file is a second handle on it.
  if [ -f "$WORK/nchan/nginx.pid" ]; then kill -KILL "$(cat "$WORK/nchan/nginx.pid")" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/*.log "$WORK/nchan/error.log"; do
      [ -s "$log" ] && { echo "---- $log"; tail -n 50 "$log"; }
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

wait_port() { # name port pid
  local name="$1" port="$2" pid="$3"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { echo "smoke.sh: $name exited before listening" >&2; return 1; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "smoke.sh: $name did not listen on $port within 30 s" >&2
  return 1
}

SIGNALR_PORT="$(free_port)"
SOCKETIO_PORT="$(free_port)"
NCHAN_PORT="$(free_port)"
KESTREL_PORT="$(free_port)"
KESTREL_RAW_PORT="$(free_port)"
KESTREL_SOCKET_PORT="$(free_port)"

dotnet "$HERE/signalr/bin/Release/net10.0/herald-bench-signalr.dll" --urls "http://127.0.0.1:$SIGNALR_PORT" \
  >"$WORK/signalr.log" 2>&1 &
PIDS+=($!)
SIGNALR_PID=$!

NODE_ENV=production node "$HERE/socketio/server.js" "$SOCKETIO_PORT" >"$WORK/socketio.log" 2>&1 &
PIDS+=($!)
SOCKETIO_PID=$!

bash "$HERE/nchan/run.sh" "$NCHAN_PORT" "$WORK/nchan" >"$WORK/nchan.log" 2>&1 &
PIDS+=($!)
NCHAN_PID=$!

# The floors: one build, three modes (README.md, "Floors").
KESTREL_DLL="$HERE/kestrel/bin/Release/net10.0/herald-bench-kestrel.dll"
dotnet "$KESTREL_DLL" --urls "http://127.0.0.1:$KESTREL_PORT" >"$WORK/kestrel.log" 2>&1 &
PIDS+=($!)
KESTREL_PID=$!
dotnet "$KESTREL_DLL" --raw --urls "http://127.0.0.1:$KESTREL_RAW_PORT" >"$WORK/kestrel-raw.log" 2>&1 &
PIDS+=($!)
KESTREL_RAW_PID=$!
dotnet "$KESTREL_DLL" --socket --urls "http://127.0.0.1:$KESTREL_SOCKET_PORT" >"$WORK/kestrel-socket.log" 2>&1 &
PIDS+=($!)
KESTREL_SOCKET_PID=$!

wait_port signalr "$SIGNALR_PORT" "$SIGNALR_PID"
wait_port socketio "$SOCKETIO_PORT" "$SOCKETIO_PID"
wait_port nchan "$NCHAN_PORT" "$NCHAN_PID"
wait_port kestrel "$KESTREL_PORT" "$KESTREL_PID"
wait_port kestrel-raw "$KESTREL_RAW_PORT" "$KESTREL_RAW_PID"
wait_port kestrel-socket "$KESTREL_SOCKET_PORT" "$KESTREL_SOCKET_PID"
echo "smoke.sh: signalr :$SIGNALR_PORT (pid $SIGNALR_PID), socketio :$SOCKETIO_PORT (pid $SOCKETIO_PID), nchan :$NCHAN_PORT (master pid $NCHAN_PID)," \
  "kestrel :$KESTREL_PORT (pid $KESTREL_PID), kestrel-raw :$KESTREL_RAW_PORT (pid $KESTREL_RAW_PID), kestrel-socket :$KESTREL_SOCKET_PORT (pid $KESTREL_SOCKET_PID)"

# In the background plus wait, so that a signal to this script runs cleanup at once (and ends smoke.mjs too).
node "$HERE/smoke.mjs" --signalr "$SIGNALR_PORT" --socketio "$SOCKETIO_PORT" --nchan "$NCHAN_PORT" \
  --kestrel "$KESTREL_PORT" --kestrel-raw "$KESTREL_RAW_PORT" --kestrel-socket "$KESTREL_SOCKET_PORT" &
SMOKE_PID=$!
PIDS+=("$SMOKE_PID")
wait "$SMOKE_PID"
