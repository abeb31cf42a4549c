#!/usr/bin/env bash
# Herald's one test command: builds everything (Release), runs the .NET tests, a bounded AFL++ fuzzing run
# (tests/fuzz/run.sh, FUZZ_SECONDS, default 60), the Node interop tests, the TypeScript client tests (clients/js) and the
# browser tests of the demo pages (tests/browser, headless Chromium), the shipping checks (eng/ship-check.sh: packages, the
# `herald` tool, the samples), the benchmark peers' checks, every benchmark scenario at smoke size and every micro-benchmark once (bench/), and ends with a single line of the form `total: N passed, M failed`. Exits non-zero if anything failed.
#
#   bash test.sh
#
# Installs what is missing: Node.js/npm, redis-server, nginx (for the nginx tests, before the .NET suites), AFL++, Chromium, nginx's Nchan module through apt-get (with sudo when not root). The .NET 10 SDK must be there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
RESULTS_DIR="$ROOT/artifacts/test-results"
LOG_DIR="$ROOT/artifacts/logs"
INTEROP_DIR="$ROOT/tests/interop-node"
HERALD_DLL="$ROOT/src/Herald.Server/bin/Release/net10.0/herald.dll"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------------------------
# prerequisites

if ! command -v dotnet >/dev/null 2>&1; then
  die "the .NET SDK ('dotnet') is not installed or not on PATH. Install the .NET 10 SDK (https://dot.net/download, or e.g. 'apt-get install dotnet-sdk-10.0') and run this again."
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node/npm missing: installing them with apt-get"
  command -v apt-get >/dev/null 2>&1 || die "node and npm are missing and apt-get is not available; install Node.js 18+ with npm and run this again."
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "node and npm are missing; installing them needs root or sudo."
    SUDO=(sudo)
  fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
fi

# The Redis tests (tests/Herald.Redis.Tests) start redis-server on a port of their own; install it when missing.
if ! command -v redis-server >/dev/null 2>&1; then
  say "redis-server missing: installing it with apt-get"
  command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and apt-get is not available; install Redis 7 (redis-server on PATH) and run this again."
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "redis-server is missing; installing it needs root or sudo."
    SUDO=(sudo)
  fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
  # Debian's package starts a system-wide server on 6379; the tests never use it, so it is stopped (and not started at boot).
  { "${SUDO[@]}" systemctl disable --now redis-server || "${SUDO[@]}" service redis-server stop; } >/dev/null 2>&1 || true
fi

# The nginx tests (tests/Herald.Client.Tests/Nginx) run Debian's nginx with deploy/nginx/herald.conf on a port of their own.
if [ ! -x /usr/sbin/nginx ]; then
  say "nginx missing: installing it with apt-get"
  command -v apt-get >/dev/null 2>&1 || die "nginx is missing and apt-get is not available; install nginx (/usr/sbin/nginx) and run this again."
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "nginx is missing; installing it needs root or sudo."
    SUDO=(sudo)
  fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx
  # Debian's package starts a system-wide nginx on port 80; the tests never use it.
  { "${SUDO[@]}" systemctl disable --now nginx || "${SUDO[@]}" service nginx stop; } >/dev/null 2>&1 || true
fi

NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 18 ]; then
  die "Node.js $(node --version) is too old for the interop tests (node:test, fetch); install Node.js 18 or newer."
fi

mkdir -p "$LOG_DIR"

# ---------------------------------------------------------------------------------------------------------------
# The TypeScript client first: the server's build copies clients/js/dist into its wwwroot/js (the demo pages use it).

JS_CLIENT_DIR="$ROOT/clients/js"
say "npm ci && npm run build (clients/js, before the server build)"
set +e
(cd "$JS_CLIENT_DIR" && npm ci --no-audit --no-fund && npm run build) 2>&1 | tee "$LOG_DIR/js-client-build.log"
js_build_rc=${PIPESTATUS[0]}
set -e
js_build_failed=0
[ "$js_build_rc" -eq 0 ] || js_build_failed=1

# ---------------------------------------------------------------------------------------------------------------
# build (retried when another build holds a file: MSB3021/MSB3026/MSB3027, "used by another process")

say "dotnet build Herald.slnx -c Release"
build_ok=0
for attempt in 1 2 3 4; do
  set +e
  dotnet build Herald.slnx -c Release 2>&1 | tee "$LOG_DIR/build.log"
  build_rc=${PIPESTATUS[0]}
  set -e
  if [ "$build_rc" -eq 0 ]; then
    build_ok=1
    break
  fi
  if [ "$attempt" -lt 4 ] && grep -Eq 'MSB3021|MSB3026|MSB3027|CS2012|being used by another process|The process cannot access the file|Text file busy' "$LOG_DIR/build.log"; then
    say "build failed on a locked file (attempt $attempt); retrying"
    sleep $((attempt * 3))
    continue
  fi
  break
done

if [ "$build_ok" -ne 1 ]; then
  echo
  echo "==================== summary ===================="
  echo "build: FAILED (dotnet build exited $build_rc; log: artifacts/logs/build.log); no tests were run"
  grep -E ': error [A-Z]+[0-9]+' "$LOG_DIR/build.log" | sort -u | head -20 || true
  echo "total: 0 passed, 1 failed"
  exit 1
fi

# ---------------------------------------------------------------------------------------------------------------
# .NET tests

say "dotnet test Herald.slnx -c Release --no-build"
rm -rf "$RESULTS_DIR"
mkdir -p "$RESULTS_DIR"
set +e
dotnet test Herald.slnx -c Release --no-build --logger "trx;LogFilePrefix=results" --results-directory "$RESULTS_DIR" 2>&1 \
  | tee "$LOG_DIR/dotnet-test.log"
dotnet_rc=${PIPESTATUS[0]}
# The standalone server runs Kestrel's sockets transport inline (Kestrel:Sockets:UnsafePreferInlineScheduling); an
# application hosting Herald keeps the platform's default, which the pass above used. The integration suite once more, inline.
say "HERALD_TEST_INLINE_SCHEDULING=1 dotnet test tests/Herald.Integration.Tests -c Release --no-build"
HERALD_TEST_INLINE_SCHEDULING=1 dotnet test tests/Herald.Integration.Tests -c Release --no-build \
  --logger "trx;LogFilePrefix=inline" --results-directory "$RESULTS_DIR" 2>&1 | tee "$LOG_DIR/dotnet-test-inline.log"
inline_rc=${PIPESTATUS[0]}
if [ "$dotnet_rc" -eq 0 ]; then dotnet_rc=$inline_rc; fi
set -e

attr() { # attr NAME < element text
  sed -n "s/.*[[:space:]]$1=\"\([0-9]*\)\".*/\1/p" | head -n 1
}

dotnet_passed=0
dotnet_failed=0
dotnet_total=0
dotnet_lines=()
dotnet_failures=()
shopt -s nullglob
trx_files=("$RESULTS_DIR"/*.trx)
shopt -u nullglob
for trx in "${trx_files[@]}"; do
  counters="$(grep -o '<Counters [^>]*>' "$trx" | head -n 1 || true)"
  [ -n "$counters" ] || continue
  total=$(attr total <<<"$counters"); passed=$(attr passed <<<"$counters"); failed=$(attr failed <<<"$counters")
  errors=$(attr error <<<"$counters"); timeouts=$(attr timeout <<<"$counters"); aborted=$(attr aborted <<<"$counters")
  not_executed=$(attr notExecuted <<<"$counters")
  bad=$(( ${failed:-0} + ${errors:-0} + ${timeouts:-0} + ${aborted:-0} ))
  dotnet_total=$((dotnet_total + ${total:-0}))
  dotnet_passed=$((dotnet_passed + ${passed:-0}))
  dotnet_failed=$((dotnet_failed + bad))
  assembly="$(grep -o 'codeBase="[^"]*"' "$trx" | head -n 1 | sed 's/codeBase="//; s/"$//; s#.*[/\\]##' || true)"
  case "$(basename "$trx")" in inline*) assembly="$assembly (inline scheduling)" ;; esac
  dotnet_lines+=("  ${assembly:-$(basename "$trx")}: total ${total:-0}, passed ${passed:-0}, failed $bad, not run ${not_executed:-0}")
  while IFS= read -r name; do
    [ -n "$name" ] && dotnet_failures+=("    FAILED ${assembly}: $name")
  done < <(grep -o '<UnitTestResult [^>]*outcome="Failed"[^>]*>' "$trx" | sed -n 's/.*testName="\([^"]*\)".*/\1/p' \
    | sed 's/&quot;/"/g; s/&apos;/'"'"'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\&/g' | head -n 30 || true)
done
dotnet_note=""
if [ "$dotnet_rc" -ne 0 ] && [ "$dotnet_failed" -eq 0 ]; then
  # The runner failed without a failed test in the results (a crash, a missing result file): that is a failure too.
  dotnet_failed=1
  dotnet_note="  dotnet test exited $dotnet_rc with no failed test in the .trx files (crash or missing results): counted as 1 failure"
fi

# ---------------------------------------------------------------------------------------------------------------
# Coverage-guided fuzzing: AFL++ through SharpFuzz, bounded by FUZZ_SECONDS (default 60); counts as one test.
# It installs afl++ with apt-get when missing; findings are copied to tests/Herald.Core.Tests/FuzzRegressions/.

say "bash tests/fuzz/run.sh (FUZZ_SECONDS=${FUZZ_SECONDS:-60})"
set +e
bash "$ROOT/tests/fuzz/run.sh" 2>&1 | tee "$LOG_DIR/fuzz.log"
fuzz_rc=${PIPESTATUS[0]}
set -e
fuzz_passed=0
fuzz_failed=0
if [ "$fuzz_rc" -eq 0 ]; then fuzz_passed=1; else fuzz_failed=1; fi
fuzz_line="$(grep -E '^fuzz: [0-9]+ execs' "$LOG_DIR/fuzz.log" | tail -n 1 || true)"

# ---------------------------------------------------------------------------------------------------------------
# Node interop tests (the real server, driven by the `ws` package)

say "npm ci && node --test (tests/interop-node, HERALD_DLL=$HERALD_DLL)"
node_rc=0
set +e
(cd "$INTEROP_DIR" && npm ci --no-audit --no-fund) 2>&1 | tee "$LOG_DIR/npm-ci.log"
npm_rc=${PIPESTATUS[0]}
if [ "$npm_rc" -eq 0 ]; then
  (cd "$INTEROP_DIR" && HERALD_DLL="$HERALD_DLL" node --test) 2>&1 | tee "$LOG_DIR/node-test.log"
  node_rc=${PIPESTATUS[0]}
else
  : >"$LOG_DIR/node-test.log"
fi
set -e

node_count() { # node_count pass|fail|cancelled|tests: the runner's top-level summary (TAP '# pass 5' or spec 'ℹ pass 5')
  grep -E "^(#|ℹ) $1 [0-9]+\$" "$LOG_DIR/node-test.log" | tail -n 1 | grep -oE '[0-9]+$' || echo 0
}
node_total=$(node_count tests)
node_passed=$(node_count pass)
node_failed=$(( $(node_count fail) + $(node_count cancelled) ))
node_note=""
if [ "$npm_rc" -ne 0 ]; then
  node_failed=$((node_failed + 1))
  node_note="  npm ci failed (exit $npm_rc; log: artifacts/logs/npm-ci.log): interop tests not run, counted as 1 failure"
elif [ "$node_rc" -ne 0 ] && [ "$node_failed" -eq 0 ]; then
  node_failed=1
  node_note="  node --test exited $node_rc with no failed test counted: counted as 1 failure"
fi
mapfile -t node_failures < <(grep -E '^[[:space:]]*(not ok [0-9]+ - |✖ )' "$LOG_DIR/node-test.log" | sed 's/^[[:space:]]*/    FAILED /' | head -n 30 || true)

# ---------------------------------------------------------------------------------------------------------------
# TypeScript client tests (clients/js: tsc, then node --test against the real server)

say "npm ci && npm test (clients/js, HERALD_DLL=$HERALD_DLL)"
js_rc=0
set +e
(cd "$JS_CLIENT_DIR" && npm ci --no-audit --no-fund) 2>&1 | tee "$LOG_DIR/js-client-npm-ci.log"
js_npm_rc=${PIPESTATUS[0]}
if [ "$js_npm_rc" -eq 0 ]; then
  (cd "$JS_CLIENT_DIR" && HERALD_DLL="$HERALD_DLL" npm test) 2>&1 | tee "$LOG_DIR/js-client-test.log"
  js_rc=${PIPESTATUS[0]}
else
  : >"$LOG_DIR/js-client-test.log"
fi
set -e

js_count() { # js_count pass|fail|cancelled|tests: as node_count, from the client's log
  grep -E "^(#|ℹ) $1 [0-9]+\$" "$LOG_DIR/js-client-test.log" | tail -n 1 | grep -oE '[0-9]+$' || echo 0
}
js_total=$(js_count tests)
js_passed=$(js_count pass)
js_failed=$(( $(js_count fail) + $(js_count cancelled) ))
js_note=""
if [ "$js_npm_rc" -ne 0 ]; then
  js_failed=$((js_failed + 1))
  js_note="  npm ci failed (exit $js_npm_rc; log: artifacts/logs/js-client-npm-ci.log): client tests not run, counted as 1 failure"
elif [ "$js_rc" -ne 0 ] && [ "$js_failed" -eq 0 ]; then
  js_failed=1
  js_note="  npm test exited $js_rc with no failed test counted (a tsc error?): counted as 1 failure"
fi
mapfile -t js_failures < <(grep -E '^[[:space:]]*(not ok [0-9]+ - |✖ )' "$LOG_DIR/js-client-test.log" | sed 's/^[[:space:]]*/    FAILED /' | head -n 30 || true)

# ---------------------------------------------------------------------------------------------------------------
# Browser tests (tests/browser: the demo pages in headless Chromium through playwright-core, against the real server;
# screenshots in artifacts/screenshots/)

BROWSER_DIR="$ROOT/tests/browser"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
browser_rc=0
browser_npm_rc=0
browser_note=""
: >"$LOG_DIR/browser-test.log"
if [ ! -x "$CHROMIUM" ]; then
  say "$CHROMIUM missing: installing chromium with apt-get"
  set +e
  (
    command -v apt-get >/dev/null 2>&1 || { echo "apt-get is not available"; exit 1; }
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || { echo "installing chromium needs root or sudo"; exit 1; }
      SUDO=(sudo)
    fi
    "${SUDO[@]}" apt-get update && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  ) 2>&1 | tee "$LOG_DIR/chromium-install.log"
  set -e
fi
say "npm ci && node --test (tests/browser, HERALD_DLL=$HERALD_DLL, CHROMIUM=$CHROMIUM)"
set +e
(cd "$BROWSER_DIR" && npm ci --no-audit --no-fund) 2>&1 | tee "$LOG_DIR/browser-npm-ci.log"
browser_npm_rc=${PIPESTATUS[0]}
if [ "$browser_npm_rc" -eq 0 ]; then
  (cd "$BROWSER_DIR" && HERALD_DLL="$HERALD_DLL" CHROMIUM="$CHROMIUM" node --test) 2>&1 | tee "$LOG_DIR/browser-test.log"
  browser_rc=${PIPESTATUS[0]}
fi
set -e

browser_count() { # browser_count pass|fail|cancelled|tests: as node_count, from the browser tests' log
  grep -E "^(#|ℹ) $1 [0-9]+\$" "$LOG_DIR/browser-test.log" | tail -n 1 | grep -oE '[0-9]+$' || echo 0
}
browser_total=$(browser_count tests)
browser_passed=$(browser_count pass)
browser_failed=$(( $(browser_count fail) + $(browser_count cancelled) ))
if [ "$browser_npm_rc" -ne 0 ]; then
  browser_failed=$((browser_failed + 1))
  browser_note="  npm ci failed (exit $browser_npm_rc; log: artifacts/logs/browser-npm-ci.log): browser tests not run, counted as 1 failure"
elif [ "$browser_rc" -ne 0 ] && [ "$browser_failed" -eq 0 ]; then
  browser_failed=1
  browser_note="  node --test exited $browser_rc with no failed test counted: counted as 1 failure"
fi
mapfile -t browser_failures < <(grep -E '^[[:space:]]*(not ok [0-9]+ - |✖ )' "$LOG_DIR/browser-test.log" | sed 's/^[[:space:]]*/    FAILED /' | head -n 30 || true)

# ---------------------------------------------------------------------------------------------------------------
# Shipping (eng/ship-check.sh): packs every package and the `herald` tool from this tree (what was just built), checks
# their metadata, installs the tool into a temp tool path and runs it, builds the samples against the packed packages
# through their local feed and runs them; each check counts as one test.

say "bash eng/ship-check.sh (packages, the herald tool, samples)"
set +e
SHIP_NO_BUILD=1 bash "$ROOT/eng/ship-check.sh" 2>&1 | tee "$LOG_DIR/ship.log"
ship_rc=${PIPESTATUS[0]}
set -e
ship_line="$(grep -E '^ship: [0-9]+ passed, [0-9]+ failed' "$LOG_DIR/ship.log" | tail -n 1 || true)"
ship_passed=$(sed -E 's/^ship: ([0-9]+) passed.*/\1/' <<<"${ship_line:-ship: 0 passed}")
ship_failed=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"${ship_line:-x 0 failed}")
if [ "$ship_rc" -ne 0 ] && [ "$ship_failed" -eq 0 ]; then ship_failed=1; fi
mapfile -t ship_failures < <(grep -E '^not ok - ' "$LOG_DIR/ship.log" | sed 's/^/    /' || true)

# ---------------------------------------------------------------------------------------------------------------
# benchmarks, smoke size only (issue 6: CI proves the harness works; the figures of a smoke run mean nothing). First the
# peers' own protocol checks (bench/peers/smoke.sh), then every scenario against every system (bench/run.sh smoke). The
# conflate scenario (Herald only, issue 14) checks correctness even at smoke size: it fails when a fast subscriber misses
# an offset, or a stalled subscriber of the Conflate channel is closed (4002) or never reaches the final offset.

say "bash bench/peers/install.sh && bash bench/peers/smoke.sh && bench/run.sh smoke"
set +e
bash bench/peers/install.sh > "$LOG_DIR/bench-install.log" 2>&1
bench_install_rc=$?
SMOKE_SKIP_INSTALL=1 bash bench/peers/smoke.sh 2>&1 | tee "$LOG_DIR/bench-peers-smoke.log"
peers_rc=${PIPESTATUS[0]}
HERALD_BENCH_SKIP_BUILD=1 bash bench/run.sh smoke 2>&1 | tee "$LOG_DIR/bench-smoke.log"
bench_rc=${PIPESTATUS[0]}
set -e
peers_line="$(grep -E '^smoke: [0-9]+ passed, [0-9]+ failed' "$LOG_DIR/bench-peers-smoke.log" | tail -n 1 || true)"
peers_passed=$(sed -E 's/^smoke: ([0-9]+) passed.*/\1/' <<<"${peers_line:-smoke: 0 passed}")
peers_failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"${peers_line:-x 0 failed}")
bench_line="$(grep -E '^bench: [0-9]+ runs, [0-9]+ passed, [0-9]+ failed' "$LOG_DIR/bench-smoke.log" | tail -n 1 || true)"
bench_passed=$(sed -E 's/^bench: [0-9]+ runs, ([0-9]+) passed.*/\1/' <<<"${bench_line:-bench: 0 runs, 0 passed}")
bench_failed=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"${bench_line:-x 0 failed}")
bench_note=""
if [ "$bench_install_rc" -ne 0 ]; then
  bench_failed=$((bench_failed + 1))
  bench_note="  bench/peers/install.sh failed (exit $bench_install_rc; log: artifacts/logs/bench-install.log): counted as 1 failure"
fi
# The micro-benchmarks run last in bench/run.sh smoke, each case once; a missing line (it never ran, or crashed) is a failure.
micro_line="$(grep -E '^micro: [0-9]+ passed, [0-9]+ failed' "$LOG_DIR/bench-smoke.log" | tail -n 1 || true)"
micro_passed=$(sed -E 's/^micro: ([0-9]+) passed.*/\1/' <<<"${micro_line:-micro: 0 passed}")
micro_failed=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"${micro_line:-x 1 failed}")
if [ "$peers_rc" -ne 0 ] && [ "$peers_failed" -eq 0 ]; then peers_failed=1; fi
if [ "$bench_rc" -ne 0 ] && [ "$bench_failed" -eq 0 ] && [ "$micro_failed" -eq 0 ]; then bench_failed=1; fi

# ---------------------------------------------------------------------------------------------------------------
# summary

echo
echo "==================== summary ===================="
echo "dotnet test (exit $dotnet_rc; .trx files in artifacts/test-results): total $dotnet_total, passed $dotnet_passed, failed $dotnet_failed"
if [ "${#trx_files[@]}" -eq 0 ]; then
  echo "  no .trx files were written"
fi
grep -E '^[[:space:]]*(Passed|Failed)! +- ' "$LOG_DIR/dotnet-test.log" | sed 's/^[[:space:]]*/  /' || true
for line in "${dotnet_lines[@]+"${dotnet_lines[@]}"}"; do echo "$line"; done
for line in "${dotnet_failures[@]+"${dotnet_failures[@]}"}"; do echo "$line"; done
[ -z "$dotnet_note" ] || echo "$dotnet_note"
echo "fuzz (exit $fuzz_rc; log: artifacts/logs/fuzz.log, afl-fuzz output in artifacts/fuzz/): ${fuzz_line:-no summary line}; $([ "$fuzz_rc" -eq 0 ] && echo passed || echo FAILED)"
echo "node --test interop (exit $node_rc; log: artifacts/logs/node-test.log): total $node_total, passed $node_passed, failed $node_failed"
grep -E '^(#|ℹ) (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$LOG_DIR/node-test.log" | sed 's/^/  /' | paste -sd ' ' - || true
for line in "${node_failures[@]+"${node_failures[@]}"}"; do echo "$line"; done
[ -z "$node_note" ] || echo "$node_note"
echo "npm test clients/js (exit $js_rc; log: artifacts/logs/js-client-test.log): total $js_total, passed $js_passed, failed $js_failed"
grep -E '^(#|ℹ) (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$LOG_DIR/js-client-test.log" | sed 's/^/  /' | paste -sd ' ' - || true
for line in "${js_failures[@]+"${js_failures[@]}"}"; do echo "$line"; done
[ -z "$js_note" ] || echo "$js_note"

echo "browser tests (exit $browser_rc; log: artifacts/logs/browser-test.log, screenshots in artifacts/screenshots/): total $browser_total, passed $browser_passed, failed $browser_failed"
grep -E '^(#|ℹ) (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$LOG_DIR/browser-test.log" | sed 's/^/  /' | paste -sd ' ' - || true
for line in "${browser_failures[@]+"${browser_failures[@]}"}"; do echo "$line"; done
[ -z "$browser_note" ] || echo "$browser_note"
[ "$js_build_failed" -eq 0 ] || echo "clients/js build before the server build FAILED (exit $js_build_rc; log: artifacts/logs/js-client-build.log): counted as 1 failure"

echo "ship checks (exit $ship_rc; log: artifacts/logs/ship.log, one log per check in artifacts/logs/ship/): passed $ship_passed, failed $ship_failed"
for line in "${ship_failures[@]+"${ship_failures[@]}"}"; do echo "$line"; done
echo "bench peers smoke (exit $peers_rc; log: artifacts/logs/bench-peers-smoke.log): passed $peers_passed, failed $peers_failed"
echo "bench smoke, every scenario x every system (exit $bench_rc; log: artifacts/logs/bench-smoke.log, results in artifacts/bench-smoke/): passed $bench_passed, failed $bench_failed"
grep -E '^FAIL ' "$LOG_DIR/bench-smoke.log" | sed 's/^/    /' | head -n 20 || true
[ -z "$bench_note" ] || echo "$bench_note"
echo "micro-benchmarks smoke, every benchmark once (log: artifacts/logs/bench-smoke.log): ${micro_line:-no summary line}; passed $micro_passed, failed $micro_failed"

total_passed=$((dotnet_passed + fuzz_passed + node_passed + js_passed + browser_passed + ship_passed + peers_passed + bench_passed + micro_passed))
total_failed=$((dotnet_failed + fuzz_failed + node_failed + js_failed + browser_failed + js_build_failed + ship_failed + peers_failed + bench_failed + micro_failed))
echo "total: $total_passed passed, $total_failed failed"
if [ "$total_failed" -ne 0 ] || [ "$dotnet_rc" -ne 0 ] || [ "$fuzz_rc" -ne 0 ] || [ "$node_rc" -ne 0 ] || [ "$npm_rc" -ne 0 ] \
  || [ "$js_rc" -ne 0 ] || [ "$js_npm_rc" -ne 0 ] || [ "$browser_rc" -ne 0 ] || [ "$browser_npm_rc" -ne 0 ] \
  || [ "$js_build_rc" -ne 0 ] || [ "$ship_rc" -ne 0 ] || [ "$peers_rc" -ne 0 ] || [ "$bench_rc" -ne 0 ] || [ "$bench_install_rc" -ne 0 ]; then
  exit 1
fi
