#!/usr/bin/env bash
# Runs the Nchan peer in the foreground: bash run.sh PORT [PREFIX_DIR]
# Writes PREFIX_DIR/nginx.conf from nginx.conf.template (PREFIX_DIR defaults to a new temp dir) and execs nginx, so the
# PID of this script becomes the nginx master's PID. The error log (warn and above) is PREFIX_DIR/error.log.
# NCHAN_WORKERS overrides worker_processes (default: auto = one per core).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${1:-${PORT:-}}"
[ -n "$PORT" ] || { echo "usage: run.sh PORT [PREFIX_DIR]" >&2; exit 2; }
PREFIX="${2:-$(mktemp -d "${TMPDIR:-/tmp}/herald-nchan.XXXXXX")}"
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"

NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
[ -x "$NGINX" ] || { echo "run.sh: nginx not found; run bench/peers/install.sh" >&2; exit 2; }
MODULE="${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}"
[ -f "$MODULE" ] || { echo "run.sh: $MODULE not found; run bench/peers/install.sh (libnginx-mod-nchan)" >&2; exit 2; }

# As root the workers drop to nobody (nginx's own default); they must be able to reach the prefix.
USER_LINE=""
if [ "$(id -u)" -eq 0 ]; then
  USER_LINE="user nobody nogroup;"
  chmod 755 "$PREFIX"
fi

sed -e "s|@PORT@|$PORT|g" -e "s|@PREFIX@|$PREFIX|g" -e "s|@MODULE@|$MODULE|g" \
    -e "s|@WORKERS@|${NCHAN_WORKERS:-auto}|g" -e "s|@USER_LINE@|$USER_LINE|g" \
    "$HERE/nginx.conf.template" > "$PREFIX/nginx.conf"

exec "$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/error.log"
