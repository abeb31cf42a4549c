#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol parser and command dispatcher: AFL++ drives tests/Herald.Fuzz through
# SharpFuzz for a bounded time, and this script fails if it found anything.
#
#   bash tests/fuzz/run.sh                 # 60 seconds of fuzzing
#   FUZZ_SECONDS=600 bash tests/fuzz/run.sh
#
# Steps: install AFL++ (Debian's afl++) with apt-get if afl-fuzz is missing; restore the local dotnet tool
# SharpFuzz.CommandLine (.config/dotnet-tools.json); publish Herald.Fuzz (Release) to artifacts/fuzz/app; instrument
# Herald.Core.dll and Herald.Protocol.dll there (the ordinary build output is never touched); check that every seed
# in tests/Herald.Fuzz/corpus passes; run afl-fuzz for FUZZ_SECONDS (-V). Every crash or hang it saved is copied to
# tests/Herald.Core.Tests/FuzzRegressions/ as crash-<sha1>.bin / hang-<sha1>.bin (replayed there by
# FuzzRegressionTests), its verdict is printed, and the script exits 1. The last line is always
#   fuzz: N execs, M paths, K crashes, H hangs
# Exit codes: 0 nothing found; 1 a finding, a failing seed, or a step that failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
OUT="$ROOT/artifacts/fuzz"
APP="$OUT/app"
FINDINGS="$OUT/findings"
CORPUS="$ROOT/tests/Herald.Fuzz/corpus"
REGRESSIONS="$ROOT/tests/Herald.Core.Tests/FuzzRegressions"
PROJECT="$ROOT/tests/Herald.Fuzz/Herald.Fuzz.csproj"

execs=0 paths=0 crashes=0 hangs=0
say() { printf '\n==> fuzz: %s\n' "$*"; }
summary() { echo "fuzz: $execs execs, $paths paths, $crashes crashes, $hangs hangs"; }
fail() { printf 'fuzz: %s\n' "$*" >&2; summary; exit 1; }

case "$FUZZ_SECONDS" in
  '' | *[!0-9]*) fail "FUZZ_SECONDS must be a whole number of seconds, not '$FUZZ_SECONDS'" ;;
esac
[ "$FUZZ_SECONDS" -ge 1 ] || fail "FUZZ_SECONDS must be at least 1"
command -v dotnet >/dev/null 2>&1 || fail "the .NET SDK ('dotnet') is not on PATH"
mkdir -p "$OUT" "$REGRESSIONS"

# ---------------------------------------------------------------------------------------------------------------
# AFL++

if ! command -v afl-fuzz >/dev/null 2>&1; then
  say "afl-fuzz missing: installing Debian's afl++ with apt-get"
  command -v apt-get >/dev/null 2>&1 || fail "afl-fuzz is missing and apt-get is not available; install AFL++ 4.x"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "afl-fuzz is missing; installing it needs root or sudo"
    SUDO=(sudo -n)
  fi
  "${SUDO[@]}" apt-get update -q >"$OUT/apt.log" 2>&1 || { tail -20 "$OUT/apt.log" >&2; fail "apt-get update failed"; }
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends afl++ >>"$OUT/apt.log" 2>&1 \
    || { tail -20 "$OUT/apt.log" >&2; fail "apt-get install afl++ failed (log: artifacts/fuzz/apt.log)"; }
  command -v afl-fuzz >/dev/null 2>&1 || fail "afl++ installed but afl-fuzz is not on PATH"
fi
afl_help="$(afl-fuzz -h 2>&1 || true)"
grep -q -- '-V seconds' <<<"$afl_help" || fail "this afl-fuzz has no -V (time limit): AFL++ 4.x is needed ($(command -v afl-fuzz))"

# ---------------------------------------------------------------------------------------------------------------
# build and instrument (a fresh folder each time: instrumenting twice is refused)

say "dotnet tool restore (SharpFuzz.CommandLine)"
dotnet tool restore >"$OUT/tool-restore.log" 2>&1 || { cat "$OUT/tool-restore.log" >&2; fail "dotnet tool restore failed"; }

say "dotnet publish tests/Herald.Fuzz -c Release -o artifacts/fuzz/app"
published=0
for attempt in 1 2 3 4; do
  rm -rf "$APP"
  if dotnet publish "$PROJECT" -c Release -o "$APP" >"$OUT/publish.log" 2>&1; then
    published=1
    break
  fi
  if [ "$attempt" -lt 4 ] && grep -Eq 'MSB3021|MSB3026|MSB3027|CS2012|being used by another process|The process cannot access the file|Text file busy' "$OUT/publish.log"; then
    echo "fuzz: publish hit a locked file (attempt $attempt); retrying"
    sleep $((attempt * 3))
    continue
  fi
  break
done
if [ "$published" -ne 1 ]; then
  grep -E ': error ' "$OUT/publish.log" | sort -u | head -20 >&2 || tail -30 "$OUT/publish.log" >&2
  fail "dotnet publish of Herald.Fuzz failed (log: artifacts/fuzz/publish.log)"
fi

for dll in Herald.Core.dll Herald.Protocol.dll; do
  say "sharpfuzz $dll"
  dotnet tool run sharpfuzz "$APP/$dll" >"$OUT/instrument-$dll.log" 2>&1 \
    || { cat "$OUT/instrument-$dll.log" >&2; fail "SharpFuzz could not instrument $dll"; }
done

# The seeds must pass: afl-fuzz refuses to start on a crashing seed, and a failing seed is a finding in itself.
say "replaying the seed corpus (tests/Herald.Fuzz/corpus)"
if ! dotnet "$APP/Herald.Fuzz.dll" --replay "$CORPUS" >"$OUT/seeds.log" 2>&1; then
  grep -v '^ok ' "$OUT/seeds.log" >&2 || true
  crashes=$(grep -c '^FAIL ' "$OUT/seeds.log" || true)
  fail "a seed input fails the oracle (log: artifacts/fuzz/seeds.log); fix the bug or the seed"
fi

# ---------------------------------------------------------------------------------------------------------------
# fuzz

say "afl-fuzz for ${FUZZ_SECONDS}s (log: artifacts/fuzz/afl.log)"
rm -rf "$FINDINGS"
set +e
# AFL_SKIP_BIN_CHECK: the target binary is dotnet, which carries no AFL instrumentation of its own (SharpFuzz's fork
# server talks to afl-fuzz). AFL_NO_AFFINITY: on a 2-core machine that is busy, do not fail for want of a free core.
# -t 10000 -m none as SharpFuzz advises (the runtime starts slowly and reserves much virtual memory). The outer
# timeout only guards against an afl-fuzz that never starts or never stops.
AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
  timeout --kill-after=10 $((FUZZ_SECONDS + 120)) \
  afl-fuzz -i "$CORPUS" -o "$FINDINGS" -t 10000 -m none -V "$FUZZ_SECONDS" -- "$(command -v dotnet)" "$APP/Herald.Fuzz.dll" \
  </dev/null >"$OUT/afl.log" 2>&1
afl_rc=$?
set -e

stats="$FINDINGS/default/fuzzer_stats"
stat_of() { sed -n "s/^$1 *: *\([0-9]*\).*/\1/p" "$stats" 2>/dev/null | head -n 1; }
if [ -f "$stats" ]; then
  execs=$(stat_of execs_done); execs=${execs:-0}
  paths=$(stat_of corpus_count); [ -n "$paths" ] || paths=$(stat_of paths_total); paths=${paths:-0}
  echo "fuzz: afl-fuzz $(sed -n 's/^afl_version *: *//p' "$stats"), $(stat_of execs_per_sec) execs/s, stability $(sed -n 's/^stability *: *//p' "$stats"), edges $(stat_of edges_found)"
fi

shopt -s nullglob
found=()
for kind in crashes hangs; do
  for file in "$FINDINGS"/default/"$kind"/id:*; do
    sha="$(sha1sum "$file" | cut -c1-40)"
    prefix=crash
    [ "$kind" = hangs ] && prefix=hang
    dest="$REGRESSIONS/$prefix-$sha.bin"
    [ -e "$dest" ] || cp "$file" "$dest"
    found+=("$dest")
    if [ "$kind" = crashes ]; then crashes=$((crashes + 1)); else hangs=$((hangs + 1)); fi
  done
done
shopt -u nullglob

if [ "$afl_rc" -ne 0 ] || [ ! -f "$stats" ]; then
  grep -E 'PROGRAM ABORT|Location|ERROR|\[-\]' "$OUT/afl.log" | head -20 >&2 || tail -30 "$OUT/afl.log" >&2
  fail "afl-fuzz exited $afl_rc$([ -f "$stats" ] || echo ' without writing fuzzer_stats') (log: artifacts/fuzz/afl.log)"
fi

if [ "${#found[@]}" -gt 0 ]; then
  echo "fuzz: afl-fuzz saved $crashes crash(es) and $hangs hang(s); copied to tests/Herald.Core.Tests/FuzzRegressions/:"
  # What the oracle says about each (a hang may pass here: it timed out under afl-fuzz).
  dotnet "$APP/Herald.Fuzz.dll" --replay "${found[@]}" 2>&1 | sed "s#$ROOT/##; s/^/  /" | head -20 || true
  echo "fuzz: fix the bug, keep the file: FuzzRegressionTests replays it from then on"
  summary
  exit 1
fi

summary
