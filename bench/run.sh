#!/usr/bin/env bash
# One command per benchmark scenario (see bench/README.md):
#
#   bench/run.sh fanout|channels|idle|polling|multinode|conflate|all [--systems herald,signalr,socketio,nchan,kestrel,kestrel-raw]
#       default sizes; results in bench/results/<scenario>.json, then docs/benchmarks.md and its plots are regenerated
#       (multinode runs the systems with a Redis scale-out mode here: herald and signalr; conflate runs herald only)
#   bench/run.sh micro [BenchmarkDotNet options, e.g. --filter '*FanOut*']
#       the BenchmarkDotNet micro-benchmarks of the hot paths (bench/Herald.MicroBench), full run; tables in
#       artifacts/microbench/results (docs/benchmarks.md's "Micro-benchmarks" section is updated by hand)
#   bench/run.sh smoke
#       every scenario at smoke size, then every micro-benchmark once, to prove the harness works (CI); results in
#       artifacts/bench-smoke, docs untouched
#
# Installs the peers (nginx + Nchan and redis-server with apt-get, Socket.IO with npm ci) and builds everything in Release first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

scenario="${1:-}"
[ -n "$scenario" ] || { sed -n '2,14p' "$0"; exit 2; }
shift
MICRO=(dotnet bench/Herald.MicroBench/bin/Release/net10.0/Herald.MicroBench.dll)

if [ "$scenario" = micro ]; then
  # No peers and no servers: the micro-benchmarks call Herald's code in their own process.
  if [ "${HERALD_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    dotnet build bench/Herald.MicroBench/Herald.MicroBench.csproj -c Release -v quiet -nologo
  fi
  exec "${MICRO[@]}" --artifacts artifacts/microbench "$@"
fi

bash bench/peers/install.sh
if [ "${HERALD_BENCH_SKIP_BUILD:-0}" != 1 ]; then
  dotnet build Herald.slnx -c Release -v quiet -nologo
fi
BENCH=(dotnet bench/Herald.Bench/bin/Release/net10.0/herald-bench.dll)

if [ "$scenario" = smoke ]; then
  status=0
  "${BENCH[@]}" all --size smoke --out artifacts/bench-smoke --work artifacts/bench-smoke/work "$@" || status=$?
  # Each micro-benchmark once, in process (about 5 s): ends with "micro: N passed, M failed", which test.sh counts.
  "${MICRO[@]}" --smoke --artifacts artifacts/bench-smoke/micro || status=$?
  exit "$status"
fi
status=0
"${BENCH[@]}" "$scenario" --size default "$@" || status=$?
# The report is written even when a run failed: its row says why.
"${BENCH[@]}" report
exit "$status"
