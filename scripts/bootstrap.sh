#!/usr/bin/env bash
# Creates .venv with hotline-edge and its pinned dependencies, and (when run as root on Debian)
# installs the system packages the demo and the test suite talk to. Idempotent and quick when
# nothing changed: it keeps a stamp of what it installed.
#   scripts/bootstrap.sh            python packages (+ Debian packages when root)
#   HOTLINE_EDGE_NO_APT=1 ...       never touch system packages
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${HOTLINE_EDGE_VENV:-$ROOT/.venv}
DEB_PACKAGES="unbound python3-unbound bind9 bind9-dnsutils knot knot-dnsutils dnsperf sqlite3 iproute2 procps
  debootstrap systemd-container python3-venv gcc libc6-dev python3-dev libssl-dev"
# gcc, python3-dev and libssl-dev build resolver/_leafhash.c and resolver/_packed.c (the blocked-lookup
# log writer's leaf hashing and decoder); without them the install still succeeds and the writer uses
# hashlib and numpy (the same log, slower)

say() { printf '[bootstrap] %s\n' "$*" >&2; }

find_python() {
  for py in python3.11 python3 python3.12 python3.13; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

apt_install() {
  local missing=()
  for p in $DEB_PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  # Do not let the packaged daemons (unbound, named, knot) start on this host's port 53.
  local prc=/usr/sbin/policy-rc.d had_prc=0
  [ -e "$prc" ] && had_prc=1
  [ $had_prc = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || say "apt-get update failed; trying with the current package lists"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [ $had_prc = 1 ] || rm -f "$prc"
}

if [ "$(id -u)" = 0 ] && [ -z "${HOTLINE_EDGE_NO_APT:-}" ] && command -v apt-get >/dev/null; then
  apt_install
fi

PY=$(find_python) || { say "Python >= 3.11 not found (on Debian: apt-get install python3 python3-venv)"; exit 2; }
stamp="$VENV/.hotline-edge-stamp"
want=$( { cat "$ROOT/pyproject.toml" "$ROOT/resolver/_leafhash.c" "$ROOT/resolver/_packed.c"; "$PY" -V; } | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV" || { say "python venv failed (on Debian: apt-get install python3-venv)"; exit 2; }
fi
say "installing hotline-edge and pinned dependencies into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[dev,ops]" 2>&1 |
  grep -v -e '^WARNING: Location' || true
"$VENV/bin/python" -c 'import rpz, resolver, feedsync, admin_api' || { say "install failed"; exit 2; }
echo "$want" > "$stamp"
