#!/usr/bin/env bash
# Installs and builds the three benchmark peers and the floors (idempotent; safe to run again, and from CI with CI=true):
#   - nginx + Debian's Nchan module (apt-get, with sudo when not root), and Node.js/npm when missing
#   - redis-server when missing (the multinode scenario starts its own on a free port; Debian's service is stopped)
#   - npm ci in socketio/ (Socket.IO 4.8.4 from the lock) and here (ws, for smoke.mjs), when node_modules is missing or
#     the lock file changed since the last install
#   - dotnet build -c Release of the SignalR peer and of the floors (kestrel/; the .NET 10 SDK must be there)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

say() { printf '==> install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }

NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

# --- Debian packages --------------------------------------------------------------------------------------------
# Debian's libnginx-mod-nchan depends on nginx-abi-1.22.1-7, which the plain `nginx` package provides (in bookworm it
# holds the binary; nginx-light/-core/-full are metapackages that add other modules we do not need).
apt_pkgs=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then apt_pkgs+=(nginx); fi
if [ ! -f "$NCHAN_MODULE" ]; then apt_pkgs+=(libnginx-mod-nchan); fi
if ! command -v node >/dev/null 2>&1; then apt_pkgs+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then apt_pkgs+=(npm); fi
if ! command -v redis-server >/dev/null 2>&1; then apt_pkgs+=(redis-server); fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${apt_pkgs[*]} and no apt-get to install them"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${apt_pkgs[*]}; installing them needs root or sudo"
    SUDO=(sudo -n)
  fi
  say "apt-get install ${apt_pkgs[*]}"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
  if [[ " ${apt_pkgs[*]} " == *" redis-server "* ]]; then
    # Debian's package starts a system-wide server on 6379; the benchmark never uses it.
    { "${SUDO[@]}" systemctl disable --now redis-server || "${SUDO[@]}" service redis-server stop; } >/dev/null 2>&1 || true
  fi
fi
command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after installing it"
[ -f "$NCHAN_MODULE" ] || die "$NCHAN_MODULE still missing after installing libnginx-mod-nchan"

# --- npm ----------------------------------------------------------------------------------------------------------
# npm ci when node_modules is missing or package-lock.json differs from the one it was installed from.
npm_ci() {
  local dir="$1" stamp="$1/node_modules/.herald-lock.sha256" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -d "$dir/node_modules" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  say "npm ci in ${dir#"$HERE"}/"
  (cd "$dir" && npm ci --omit=dev --no-audit --no-fund)
  printf '%s\n' "$want" > "$stamp"
}
npm_ci "$HERE/socketio"
npm_ci "$HERE"

# --- .NET ---------------------------------------------------------------------------------------------------------
command -v dotnet >/dev/null 2>&1 || die "the .NET 10 SDK ('dotnet') is not installed or not on PATH"
say "dotnet build -c Release signalr"
dotnet build "$HERE/signalr/Herald.Bench.SignalR.csproj" -c Release -nologo -v quiet
say "dotnet build -c Release kestrel (the floors)"
dotnet build "$HERE/kestrel/Herald.Bench.Kestrel.csproj" -c Release -nologo -v quiet
say "done"
