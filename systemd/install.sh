#!/usr/bin/env bash
# Installs (or upgrades in place) TeleCoder as a systemd service on Debian/Ubuntu.
#
#   sudo systemd/install.sh                      # build with cargo from this checkout
#   sudo systemd/install.sh --binary ./telecoder # install a binary built elsewhere
#   systemd/install.sh --root /tmp/r --binary B  # stage into a directory (tests, packaging)
#
# Idempotent: a second run replaces the binary, the unit and acpx when they differ, and keeps
# /var/lib/telecoder (sessions) and /etc/telecoder/telecoder.env (configuration) untouched.
set -euo pipefail

ACPX_VERSION=0.19.1
SERVICE=telecoder
SERVICE_USER=telecoder
SERVICE_GROUP=telecoder
BIN_PATH=/usr/local/bin/telecoder
DATA_DIR=/var/lib/telecoder
CONF_DIR=/etc/telecoder
ENV_FILE=$CONF_DIR/telecoder.env
UNIT_PATH=/etc/systemd/system/$SERVICE.service

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
unit_src=$here/telecoder.service
env_src=$repo/examples/telecoder.env

usage() {
  cat <<'USAGE'
Usage: install.sh [--binary PATH] [--root DIR] [--no-start] [--help]

Installs TeleCoder as the systemd service "telecoder":
  /usr/local/bin/telecoder                   the binary (built with `cargo build --release`
                                             from this checkout unless --binary is given)
  user and group "telecoder"                 system account, home /var/lib/telecoder
  /var/lib/telecoder                         data dir (SQLite database, workspaces), 0700
  /etc/telecoder/telecoder.env               configuration, 0600; written only if missing
  /etc/telecoder/telecoder.env.example       the current template, refreshed on every run
  /etc/systemd/system/telecoder.service      the unit
  acpx@0.19.1                                npm install -g, when missing or another version
then runs systemctl daemon-reload, enables the service and restarts it.

Options:
  --binary PATH  install this telecoder executable instead of building one
  --root DIR     install under DIR instead of / (staging, tests). User creation, ownership,
                 npm and systemctl are skipped and printed as "would run: ..."
  --no-start     enable the service but do not (re)start it
  -h, --help     show this help

Running it again upgrades in place: data and configuration are kept.
USAGE
}

log() { printf 'install: %s\n' "$*" >&2; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

root=/
binary=
start=1
while [ $# -gt 0 ]; do
  case $1 in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#--binary=}; shift ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    --no-start) start=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# Normalise the root: "/" means the real system, anything else is a staging directory.
if [ "$root" != / ]; then
  mkdir -p "$root"
  root=$(cd "$root" && pwd)
fi
live=0
[ "$root" = / ] && live=1
prefix=${root%/}

# p PATH: PATH inside the install root.
p() { printf '%s%s' "$prefix" "$1"; }

# replace_file SRC PATH MODE: install SRC at PATH (under --root) with MODE, through a
# temporary file and a rename so nothing ever sees half a file; an identical file is left alone.
replace_file() {
  dest=$(p "$2")
  if [ -f "$dest" ] && cmp -s "$1" "$dest"; then
    log "$2 is up to date"
  else
    log "installing $2"
    install -m "$3" "$1" "$dest.new"
    mv -f "$dest.new" "$dest"
  fi
}

# run CMD...: run it on a live install, print it when staging into --root.
run() {
  if [ "$live" = 1 ]; then
    "$@"
  else
    printf 'install: would run:'
    printf ' %q' "$@"
    printf '\n'
  fi
}

if [ "$live" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or use --root DIR to stage the files"
fi
[ -f "$unit_src" ] || die "missing $unit_src (run the script from a TeleCoder checkout)"
[ -f "$env_src" ] || die "missing $env_src (run the script from a TeleCoder checkout)"

# 1. The binary: given, or built from this checkout.
if [ -n "$binary" ]; then
  if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    die "--binary $binary is not an executable file"
  fi
elif command -v cargo >/dev/null 2>&1 && [ -f "$repo/Cargo.toml" ]; then
  log "building the release binary (cargo build --release --locked)"
  (cd "$repo" && cargo build --release --locked --bin telecoder)
  binary=$repo/target/release/telecoder
else
  die "cargo not found: install Rust (https://rustup.rs) or pass --binary PATH"
fi

# 2. The service account (no login shell, home = data dir so agents' caches land there).
if [ "$live" = 1 ]; then
  if ! getent group "$SERVICE_GROUP" >/dev/null; then
    log "creating group $SERVICE_GROUP"
    groupadd --system "$SERVICE_GROUP"
  fi
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    log "creating user $SERVICE_USER"
    useradd --system --gid "$SERVICE_GROUP" --home-dir "$DATA_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "TeleCoder daemon" "$SERVICE_USER"
  fi
else
  run groupadd --system "$SERVICE_GROUP"
  run useradd --system --gid "$SERVICE_GROUP" --home-dir "$DATA_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "TeleCoder daemon" "$SERVICE_USER"
fi

# 3. Directories. The data dir is never emptied; systemd (StateDirectory=) also re-owns it.
install -d -m 0755 "$(p /usr/local/bin)" "$(p /etc/systemd/system)"
install -d -m 0700 "$(p "$DATA_DIR")"
install -d -m 0750 "$(p "$CONF_DIR")"
run chown "$SERVICE_USER:$SERVICE_GROUP" "$DATA_DIR"
run chown "root:$SERVICE_GROUP" "$CONF_DIR"

# 4. The binary, replaced atomically (a running daemon keeps its old inode until restarted).
replace_file "$binary" "$BIN_PATH" 0755

# 5. Configuration: written once, then owned by the administrator.
env_dest=$(p "$ENV_FILE")
if [ -e "$env_dest" ]; then
  log "keeping existing $ENV_FILE"
else
  log "writing $ENV_FILE (edit it, then: systemctl restart $SERVICE)"
  (umask 077 && cp "$env_src" "$env_dest.new")
  mv -f "$env_dest.new" "$env_dest"
fi
# It may hold the API token, the webhook secret and GITHUB_TOKEN: root only.
chmod 0600 "$env_dest"
run chown root:root "$ENV_FILE"
install -m 0644 "$env_src" "$(p "$ENV_FILE.example")"

# 6. acpx, the ACP client the daemon runs agents through (a global npm package).
if [ "$live" = 1 ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    die "node and npm are required for acpx (e.g. https://github.com/nodesource/distributions)"
  fi
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" -lt 22 ]; then
    log "warning: node $(node --version) is older than acpx $ACPX_VERSION's declared minimum (22.13)"
  fi
  acpx_pkg="$(npm root -g)/acpx/package.json"
  have=
  [ -f "$acpx_pkg" ] && have=$(node -p "require(process.argv[1]).version" "$acpx_pkg")
  if [ "$have" = "$ACPX_VERSION" ]; then
    log "acpx $ACPX_VERSION is installed"
  else
    log "installing acpx@$ACPX_VERSION (found: ${have:-none})"
    npm install -g --no-audit --no-fund --no-update-notifier --loglevel=error "acpx@$ACPX_VERSION"
  fi
else
  run npm install -g --no-audit --no-fund --no-update-notifier --loglevel=error "acpx@$ACPX_VERSION"
fi

# 7. The unit.
replace_file "$unit_src" "$UNIT_PATH" 0644

# 8. Enable and (re)start.
if [ "$live" = 1 ] && [ ! -d /run/systemd/system ]; then
  log "systemd is not running on this machine: skipping systemctl (start telecoder yourself)"
else
  run systemctl daemon-reload
  run systemctl enable "$SERVICE"
  if [ "$start" = 1 ]; then
    run systemctl restart "$SERVICE"
    if [ "$live" = 1 ]; then
      systemctl --no-pager --lines=5 status "$SERVICE" || true
    fi
  else
    log "not starting (--no-start): systemctl restart $SERVICE"
  fi
fi

log "done. Configuration: $ENV_FILE; logs: journalctl -u $SERVICE -f"
