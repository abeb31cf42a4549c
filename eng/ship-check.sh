#!/usr/bin/env bash
# What a user installing Herald gets, checked from this tree (test.sh runs it; it assumes clients/js/dist is built):
#   1. dotnet pack: Herald.Protocol, .Core, .AspNetCore, .Redis, .Client (+ .snupkg) and the `herald` tool, into
#      artifacts/packages, each with its README, LICENSE and MIT license expression
#   2. the tool installed from that folder into a temp tool path: `herald --version`, `--help`, a refused option
#   3. the self-contained single-file binary: published, `--version`, the demo served
#   4. the samples (samples/, nuget.config pointing at that folder) built against the packed packages, then run:
#      the console client against the embedded server
# Each check prints `ok - …` or `not ok - …`; the last line is `ship: N passed, M failed`. Exits non-zero on any failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
FEED="$ROOT/artifacts/packages"
WORK="$(mktemp -d /tmp/herald-ship-XXXXXX)"
LOG="$ROOT/artifacts/logs/ship"
mkdir -p "$LOG"
VERSION="$(sed -n 's:.*<HeraldVersion>\(.*\)</HeraldVersion>.*:\1:p' eng/Version.props)"
passed=0
failed=0
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

check() { # check NAME COMMAND...: runs COMMAND, logs its output to $LOG/NAME.log
  local name="$1"; shift
  if "$@" >"$LOG/$name.log" 2>&1; then
    echo "ok - $name"; passed=$((passed + 1))
  else
    echo "not ok - $name (log: artifacts/logs/ship/$name.log)"; tail -n 15 "$LOG/$name.log" | sed 's/^/    /'; failed=$((failed + 1))
  fi
}

pack() {
  rm -rf "$FEED" "$ROOT/artifacts/samples/packages"
  for project in Herald.Protocol Herald.Core Herald.AspNetCore Herald.Redis Herald.Client Herald.Server; do
    # SHIP_NO_BUILD=1 (test.sh, right after its Release build of the solution) packs what was just built.
    dotnet pack "src/$project/$project.csproj" -c Release -o "$FEED" -nologo ${SHIP_NO_BUILD:+--no-build} || return 1
  done
}
check pack pack

packages_complete() {
  local id list spec
  for id in Herald.Protocol Herald.Core Herald.AspNetCore Herald.Redis Herald.Client; do
    [ -f "$FEED/$id.$VERSION.nupkg" ] && [ -f "$FEED/$id.$VERSION.snupkg" ] || { echo "missing $id.$VERSION.nupkg or .snupkg"; return 1; }
    # (read into variables first: grep -q closing a pipe early would fail the pipeline under pipefail)
    list="$(unzip -l "$FEED/$id.$VERSION.nupkg")"; spec="$(unzip -p "$FEED/$id.$VERSION.nupkg" "$id.nuspec")"
    grep -qE ' README\.md$' <<<"$list" || { echo "$id: no README.md"; return 1; }
    grep -qE ' LICENSE$' <<<"$list" || { echo "$id: no LICENSE"; return 1; }
    grep -q '<license type="expression">MIT</license>' <<<"$spec" || { echo "$id: no MIT license expression"; return 1; }
    grep -q '<description>.\{20,\}</description>' <<<"$spec" || { echo "$id: no description"; return 1; }
    grep -q '<repository type="git"' <<<"$spec" || { echo "$id: no repository"; return 1; }
    grep -qE "lib/net10.0/$id\.pdb$" <<<"$(unzip -l "$FEED/$id.$VERSION.snupkg")" || { echo "$id: no PDB in the symbol package"; return 1; }
  done
  [ -f "$FEED/herald.$VERSION.nupkg" ] || { echo "missing herald.$VERSION.nupkg (the tool)"; return 1; }
  list="$(unzip -l "$FEED/herald.$VERSION.nupkg")"
  grep -qE 'tools/net10.0/any/wwwroot/index.html$' <<<"$list" || { echo "the tool has no demo page"; return 1; }
  grep -qE 'tools/net10.0/any/wwwroot/js/index.js$' <<<"$list" || { echo "the tool has no JS client for the demo"; return 1; }
  grep -qE 'tools/net10.0/any/wwwroot/board.html$' <<<"$list" || { echo "the tool has no demo board"; return 1; }
  grep -qE 'tools/net10.0/any/wwwroot/vendor/uplot/uPlot.esm.js$' <<<"$list" || { echo "the tool has no chart library for the dashboard"; return 1; }
  grep -qE 'tools/net10.0/any/wwwroot/vendor/msgpack/index.mjs$' <<<"$list" || { echo "the tool has no MessagePack library for the board"; return 1; }
  ! grep -qE 'node_modules|wwwroot/.*package(-lock)?\.json' <<<"$list" || { echo "the tool carries npm's files"; return 1; }
  for f in $(ls "$FEED"); do
    case "$f" in Herald.Protocol.*|Herald.Core.*|Herald.AspNetCore.*|Herald.Redis.*|Herald.Client.*|herald.*) ;; *) echo "unexpected package $f"; return 1 ;; esac
  done
  # clients/js/package.json carries the same version.
  grep -q "\"version\": \"$VERSION\"" clients/js/package.json || { echo "clients/js/package.json is not at $VERSION"; return 1; }
}
check packages-complete packages_complete

TOOLS="$WORK/tools"
check tool-install dotnet tool install herald --tool-path "$TOOLS" --add-source "$FEED" --version "$VERSION"
tool_version() { local out; out="$("$TOOLS/herald" --version)" || return 1; echo "$out"; grep -qx "herald $VERSION+[0-9a-f]*\|herald $VERSION" <<<"$out"; }
check tool-version tool_version
tool_help() { local out; out="$("$TOOLS/herald" --help)" || return 1; echo "$out"; grep -q -- '--urls' <<<"$out" && grep -q 'Herald:ApiKey' <<<"$out"; }
check tool-help tool_help
tool_refuses() {
  local out rc
  out="$("$TOOLS/herald" --no-such-option 2>&1)"; rc=$?
  echo "$out"
  [ "$rc" -eq 64 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && [[ "$out" == *"unknown option '--no-such-option'"* ]]
}
check tool-refuses-unknown-option tool_refuses

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_healthy() { # wait_healthy URL PID: until /healthz answers 200, the process dies, or 60 s pass
  local i
  for i in $(seq 1 120); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
tool_serves_demo() {
  local port; port="$(free_port)"
  "$TOOLS/herald" --urls "http://127.0.0.1:$port" --Herald:ApiKey=k &
  SERVER_PID=$!
  wait_healthy "http://127.0.0.1:$port" "$SERVER_PID" || return 1
  local page client rc=1
  page="$(curl -fsS "http://127.0.0.1:$port/")" && client="$(curl -fsS "http://127.0.0.1:$port/js/index.js")" \
    && grep -qi '<html' <<<"$page" && grep -q 'HeraldClient' <<<"$client" && rc=0
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  return $rc
}
check tool-serves-demo tool_serves_demo

# The self-contained single-file binary (src/Herald.Server/Properties/PublishProfiles/linux-x64.pubxml): it publishes,
# says its version and serves the demo with its JS client.
single_file() {
  rm -rf artifacts/publish/herald-linux-x64
  dotnet publish src/Herald.Server -c Release -p:PublishProfile=linux-x64 -nologo || return 1
  local bin="$ROOT/artifacts/publish/herald-linux-x64/herald" out
  out="$("$bin" --version)" || return 1
  echo "$out"; grep -q "^herald $VERSION" <<<"$out" || return 1
  local port; port="$(free_port)"
  "$bin" --urls "http://127.0.0.1:$port" &
  SERVER_PID=$!
  wait_healthy "http://127.0.0.1:$port" "$SERVER_PID" || return 1
  # (read into variables first: grep -q closing a pipe early would fail the pipeline under pipefail)
  local rc=1 page client
  client="$(curl -fsS "http://127.0.0.1:$port/js/index.js")" && page="$(curl -fsS "http://127.0.0.1:$port/")" \
    && grep -q 'HeraldClient' <<<"$client" && grep -qi '<html' <<<"$page" && rc=0
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  return $rc
}
check single-file-binary single_file

check sample-embedded-server-build dotnet build samples/EmbeddedServer -c Release -nologo
check sample-console-client-build dotnet build samples/ConsoleClient -c Release -nologo
samples_run() {
  local port; port="$(free_port)"
  dotnet samples/EmbeddedServer/bin/Release/net10.0/EmbeddedServer.dll --urls "http://127.0.0.1:$port" &
  SERVER_PID=$!
  wait_healthy "http://127.0.0.1:$port" "$SERVER_PID" || return 1
  local out; out="$(timeout 60 dotnet samples/ConsoleClient/bin/Release/net10.0/ConsoleClient.dll "http://127.0.0.1:$port/" 2>&1)"
  local rc=$?
  echo "$out"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  [ "$rc" -eq 0 ] && [[ "$out" == *'1: {"text":"hello from the console sample"}'* ]] && [[ "$out" == *"server time: 20"* ]]
}
check samples-console-client-against-embedded-server samples_run

echo "ship: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
