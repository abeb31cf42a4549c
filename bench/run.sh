#!/usr/bin/env bash
# One command per benchmark scenario (see bench/README.md):
#
#   bench/run.sh fanout|channels|idle|polling|multinode|all [--systems herald,signalr,socketio,nchan]
#       default sizes; results in bench/results/<scenario>.json, then docs/benchmarks.md and its plots are regenerated
#       (multinode runs the systems with a Redis scale-out mode here: herald and signalr)
#   bench/run.sh smoke
#       every scenario at smoke size, to prove the harness works (CI); results in artifacts/bench-smoke, docs untouched
#
# Installs the peers (nginx + Nchan and redis-server with apt-get, Socket.IO with npm ci) and builds everything in Release first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

scenario="${1:-}"
[ -n "$scenario" ] || { sed -n '2,10p' "$0"; exit 2; }
shift

bash bench/peers/install.sh
if [ "${HERALD_BENCH_SKIP_BUILD:-0}" != 1 ]; then
  dotnet build Herald.slnx -c Release -v quiet -nologo
fi
BENCH=(dotnet bench/Herald.Bench/bin/Release/net10.0/herald-bench.dll)

if [ "$scenario" = smoke ]; then
  exec "${BENCH[@]}" all --size smoke --out artifacts/bench-smoke --work artifacts/bench-smoke/work "$@"
fi
status=0
"${BENCH[@]}" "$scenario" --size default "$@" || status=$?
# The report is written even when a run failed: its row says why.
"${BENCH[@]}" report
exit "$status"
