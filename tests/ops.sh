#!/usr/bin/env bash
# Operations checks: the systemd unit (systemd-analyze verify, security exposure <= 2.5), the
# shell scripts (bash -n, shellcheck), systemd/install.sh staged twice into a temp root, and
# the examples (env template covers every variable, curl.md covers every route, configs parse).
#
#   tests/ops.sh   # on Debian/Ubuntu, as root (or with sudo), installs systemd and shellcheck if missing
#
# Prints one line per check and "N passed, M failed" last; exits 1 when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)

MAX_EXPOSURE=2.5
unit=systemd/telecoder.service
installer=systemd/install.sh
env_example=examples/telecoder.env

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() {
  failed=$((failed + 1))
  printf 'FAIL %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 40 | sed 's/^/     /'; fi
}
skip() { printf 'skip %s\n' "$1"; }
# check NAME CMD...: passes when CMD succeeds; shows its output when it does not.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- Tools ------------------------------------------------------------------------------------
apt_updated=0
as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo -n)
# ensure COMMAND PACKAGE: install PACKAGE with apt when COMMAND is missing (as root, or with
# password-less sudo).
ensure() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 &&
    { [ "${#as_root[@]}" = 0 ] || sudo -n true 2>/dev/null; }; then
    echo "ops: installing $2 (for $1)" >&2
    if [ "$apt_updated" = 0 ]; then
      "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
      apt_updated=1
    fi
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 || true
  fi
  command -v "$1" >/dev/null 2>&1
}
ensure systemd-analyze systemd
ensure shellcheck shellcheck

# ---- The unit ---------------------------------------------------------------------------------
# unit_has LINE...: every LINE is present verbatim (as a whole line) in the unit.
unit_has() {
  local line missing=
  for line in "$@"; do
    grep -qxF -- "$line" "$unit" || missing="$missing$line"$'\n'
  done
  [ -z "$missing" ] || { printf 'missing from %s:\n%s' "$unit" "$missing"; return 1; }
}
check "unit: service settings" unit_has \
  Type=notify NotifyAccess=main WatchdogSec=30 Restart=on-failure RestartSec=2 \
  User=telecoder Group=telecoder EnvironmentFile=/etc/telecoder/telecoder.env \
  "ExecStart=/usr/local/bin/telecoder serve" Environment=TELECODER_DATA_DIR=/var/lib/telecoder \
  StateDirectory=telecoder KillMode=mixed UMask=0077
check "unit: hardening settings" unit_has \
  NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/telecoder ProtectHome=yes \
  PrivateTmp=yes PrivateDevices=yes ProtectKernelTunables=yes ProtectKernelModules=yes \
  ProtectKernelLogs=yes ProtectControlGroups=yes ProtectClock=yes ProtectHostname=yes \
  ProtectProc=invisible "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
  RestrictNamespaces=yes RestrictRealtime=yes RestrictSUIDSGID=yes LockPersonality=yes \
  SystemCallArchitectures=native SystemCallFilter=@system-service CapabilityBoundingSet=
check "unit: MemoryMax and TasksMax defaults" grep -qE '^MemoryMax=.+' "$unit"
check "unit: TasksMax default" grep -qE '^TasksMax=[0-9]+' "$unit"
# node's V8 JIT needs W+X memory: the unit must not turn MemoryDenyWriteExecute on.
check "unit: MemoryDenyWriteExecute left off (node JIT)" \
  bash -c "! grep -qE '^MemoryDenyWriteExecute=(yes|true|1|on)' '$unit'"

# The daemon's drain and its agents' stop each get up to the grace period; systemd must not
# SIGKILL before both are over.
stop_timeout() {
  local stop grace
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$unit")
  grace=$(sed -n 's/^#\{0,1\}TELECODER_SHUTDOWN_GRACE_SECONDS=\([0-9]*\)$/\1/p' "$env_example")
  if [ -z "$stop" ] || [ -z "$grace" ]; then
    echo "TimeoutStopSec=$stop grace=$grace"
    return 1
  fi
  [ "$stop" -gt $((2 * grace)) ] || { echo "TimeoutStopSec=$stop <= 2 x grace $grace"; return 1; }
}
check "unit: TimeoutStopSec above 2 x the default shutdown grace" stop_timeout

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify checks that ExecStart exists; /usr/local/bin/telecoder is not installed here, so
  # verify a copy whose ExecStart points at a stand-in executable.
  mkdir -p "$tmp/unit"
  printf '#!/bin/sh\nexit 0\n' >"$tmp/unit/telecoder"
  chmod 755 "$tmp/unit/telecoder"
  sed "s#^ExecStart=/usr/local/bin/telecoder #ExecStart=$tmp/unit/telecoder #" "$unit" \
    >"$tmp/unit/telecoder.service"
  verify() {
    local out rc
    out=$(systemd-analyze verify "$tmp/unit/telecoder.service" 2>&1)
    rc=$?
    # Warnings about other units on the machine are not ours; any line about ours fails.
    out=$(printf '%s\n' "$out" | grep -F 'telecoder')
    if [ "$rc" != 0 ] || [ -n "$out" ]; then
      printf 'systemd-analyze verify (exit %s):\n%s\n' "$rc" "$out"
      return 1
    fi
  }
  check "systemd-analyze verify" verify

  security_out=$(systemd-analyze security --offline=true --no-pager "$repo/$unit" 2>&1)
  exposure=$(printf '%s\n' "$security_out" |
    sed -n 's/.*[Oo]verall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p' | head -n 1)
  if [ -z "$exposure" ]; then
    fail "systemd-analyze security: no exposure level in the output" "$security_out"
  elif awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    pass "systemd-analyze security: exposure $exposure <= $MAX_EXPOSURE"
  else
    fail "systemd-analyze security: exposure $exposure > $MAX_EXPOSURE" \
      "$(printf '%s\n' "$security_out" | grep -E '✗|exposure')"
  fi
else
  fail "systemd-analyze is not installed (apt-get install systemd, as root)"
fi

# ---- Shell scripts ----------------------------------------------------------------------------
scripts=("$installer" tests/ops.sh)
for f in scripts/*; do
  [ -f "$f" ] && head -n 1 "$f" | grep -qE '^#!.*\b(ba)?sh\b' && scripts+=("$f")
done
for f in "${scripts[@]}"; do
  check "bash -n $f" bash -n "$f"
done
if command -v shellcheck >/dev/null 2>&1; then
  for f in "${scripts[@]}"; do
    check "shellcheck $f" shellcheck -x "$f"
  done
else
  skip "shellcheck is not installed"
fi

# ---- install.sh in a temp root ---------------------------------------------------------------
r=$tmp/root
printf '#!/bin/sh\necho telecoder v1\n' >"$tmp/telecoder-v1"
printf '#!/bin/sh\necho telecoder v2\n' >"$tmp/telecoder-v2"
chmod 755 "$tmp/telecoder-v1" "$tmp/telecoder-v2"

check "install.sh --help" bash -c "'$installer' --help | grep -q '^Usage: install.sh'"
check "install.sh rejects an unknown option" bash -c "! '$installer' --bogus"
check "install.sh rejects a missing --binary" \
  bash -c "! '$installer' --root '$tmp/bad' --binary '$tmp/nonexistent'"

# mode PATH: octal permission bits.
mode() { stat -c '%a' "$1"; }
# tree DIR: a listing of every file with its mode and checksum (to compare runs).
tree() { (cd "$1" && find . -printf '%p %m %s\n' | sort && find . -type f -exec md5sum {} + | sort); }

first() {
  local out
  out=$("$installer" --root "$r" --binary "$tmp/telecoder-v1" 2>&1) || { echo "$out"; return 1; }
  local want
  for want in 'would run: groupadd --system telecoder' 'would run: useradd --system' \
    'would run: npm install -g' 'acpx@0.19.1' 'would run: systemctl daemon-reload' \
    'would run: systemctl enable telecoder' 'would run: systemctl restart telecoder'; do
    grep -qF -- "$want" <<<"$out" || { printf 'output lacks "%s":\n%s\n' "$want" "$out"; return 1; }
  done
}
check "install.sh --root: first run" first

installed() {
  local problems=
  add() { problems="$problems$1"$'\n'; }
  [ -x "$r/usr/local/bin/telecoder" ] || add "no executable usr/local/bin/telecoder"
  cmp -s "$tmp/telecoder-v1" "$r/usr/local/bin/telecoder" || add "binary differs from --binary"
  cmp -s "$unit" "$r/etc/systemd/system/telecoder.service" ||
    add "etc/systemd/system/telecoder.service missing or differs from $unit"
  cmp -s "$env_example" "$r/etc/telecoder/telecoder.env" ||
    add "etc/telecoder/telecoder.env missing or differs from $env_example"
  [ "$(mode "$r/etc/telecoder/telecoder.env")" = 600 ] ||
    add "telecoder.env mode $(mode "$r/etc/telecoder/telecoder.env"), want 600"
  [ -f "$r/etc/telecoder/telecoder.env.example" ] || add "no etc/telecoder/telecoder.env.example"
  [ "$(mode "$r/var/lib/telecoder" 2>/dev/null)" = 700 ] ||
    add "var/lib/telecoder missing or not mode 700"
  [ "$(mode "$r/etc/telecoder" 2>/dev/null)" = 750 ] || add "etc/telecoder missing or not mode 750"
  [ -z "$(find "$r" -name '*.new')" ] || add "leftover *.new files"
  [ -z "$problems" ] || { printf '%s' "$problems"; return 1; }
}
check "install.sh --root: files, modes, unit in the root" installed

# An administrator edits the config (and loosens its mode), the daemon stores data, and a new
# binary arrives: the second run upgrades the binary and keeps the rest.
printf 'TELECODER_LISTEN_PORT=7999\n' >>"$r/etc/telecoder/telecoder.env"
chmod 644 "$r/etc/telecoder/telecoder.env"
cp "$r/etc/telecoder/telecoder.env" "$tmp/edited.env"
printf 'sessions\n' >"$r/var/lib/telecoder/telecoder.sqlite"
mkdir -p "$r/var/lib/telecoder/workspaces/abcd1234"
second() {
  local out problems=
  out=$("$installer" --root "$r" --binary "$tmp/telecoder-v2" --no-start 2>&1) ||
    { echo "$out"; return 1; }
  add() { problems="$problems$1"$'\n'; }
  cmp -s "$tmp/edited.env" "$r/etc/telecoder/telecoder.env" || add "edited telecoder.env was changed"
  [ "$(mode "$r/etc/telecoder/telecoder.env")" = 600 ] || add "telecoder.env mode not reset to 600"
  grep -qx sessions "$r/var/lib/telecoder/telecoder.sqlite" 2>/dev/null || add "data file lost"
  [ -d "$r/var/lib/telecoder/workspaces/abcd1234" ] || add "workspace lost"
  cmp -s "$tmp/telecoder-v2" "$r/usr/local/bin/telecoder" || add "binary not upgraded"
  cmp -s "$unit" "$r/etc/systemd/system/telecoder.service" || add "unit missing after upgrade"
  grep -q 'would run: systemctl restart' <<<"$out" && add "--no-start still restarts"
  grep -q 'keeping existing /etc/telecoder/telecoder.env' <<<"$out" || add "no 'keeping' message"
  [ -z "$problems" ] || { printf '%s\n%s' "$problems" "$out"; return 1; }
}
check "install.sh --root: second run upgrades, keeps config and data" second

third() {
  local before after
  before=$(tree "$r")
  "$installer" --root "$r" --binary "$tmp/telecoder-v2" --no-start >/dev/null 2>&1 || return 1
  after=$(tree "$r")
  [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after"); return 1; }
}
check "install.sh --root: third run changes nothing (idempotent)" third

# ---- Examples ---------------------------------------------------------------------------------
# Every TELECODER_* variable the code reads is in the env template (internal ones excepted).
env_complete() {
  local v missing=
  for v in $(grep -rhoE '"TELECODER_[A-Z0-9_]+"' src actors/src | tr -d '"' | sort -u); do
    case $v in
      TELECODER_AGENT_ | TELECODER_SESSION_ID) continue ;; # prefix / marker set on agents
    esac
    grep -qE "^#? ?$v=" "$env_example" || missing="$missing $v"
  done
  for v in GITHUB_TOKEN GH_TOKEN RUST_LOG; do
    grep -qE "^#? ?$v=" "$env_example" || missing="$missing $v"
  done
  [ -z "$missing" ] || { echo "not documented in $env_example:$missing"; return 1; }
}
check "examples: telecoder.env documents every variable" env_complete
# The template only documents defaults: every non-blank line is a comment.
check "examples: telecoder.env sets nothing (all defaults commented)" \
  bash -c "! grep -vE '^[[:space:]]*(#|$)' '$env_example'"

# Every route of README's HTTP API table and of the spec's route table has a curl example.
routes_covered() {
  local spec=../shared/spec/api.md sources=(README.md) missing='' method path pattern
  [ -f "$spec" ] && sources+=("$spec")
  while read -r method path; do
    # :id -> the placeholder used in curl.md (ID, WATCH).
    pattern=$(printf '%s' "$path" | sed -e 's#:[a-z]*#[A-Z]*#g')
    if [ "$method" = GET ]; then
      grep -qE "\\\$TC$pattern([?\"]|$)" examples/curl.md || missing="$missing"$'\n'"$method $path"
    else
      grep -qE -- "-X $method .*\\\$TC$pattern([?\"]|$)" examples/curl.md ||
        missing="$missing"$'\n'"$method $path"
    fi
  done < <(sed -nE 's#^\| *(GET|POST|PUT|PATCH|DELETE) *\| *(/[^ |]*) *\|.*#\1 \2#p' "${sources[@]}" | sort -u)
  [ -z "$missing" ] || { echo "routes without an example in examples/curl.md:$missing"; return 1; }
}
check "examples: curl.md covers every route" routes_covered

workflow=examples/github-actions-report-failure.yml
workflow_ok() {
  local want
  # shellcheck disable=SC2016 # the literal text of the workflow
  for want in 'workflow_run:' 'types: [completed]' "conclusion == 'failure'" \
    '/api/watch-events/ci' 'Authorization: Bearer $TELECODER_API_TOKEN' \
    'secrets.TELECODER_API_TOKEN' 'secrets.TELECODER_URL'; do
    grep -qF -- "$want" "$workflow" || { echo "$workflow lacks: $want"; return 1; }
  done
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 - "$workflow" <<'PY' || return 1
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
on = doc.get("on", doc.get(True))
assert "workflow_run" in on, "no workflow_run trigger"
step = doc["jobs"]["report"]["steps"][0]
for field in ["repo", "workflow", "branch", "runId", "runUrl", "sha", "status", "conclusion"]:
    assert "$" + field in step["run"] or field + ":" in step["run"], field
PY
  fi
}
check "examples: GitHub Actions workflow" workflow_ok
indexed() {
  local f
  for f in telecoder.env curl.md github-actions-report-failure.yml caddy/Caddyfile \
    nginx/telecoder.conf; do
    [ -f "examples/$f" ] || { echo "no examples/$f"; return 1; }
    grep -qF "($f)" examples/README.md || { echo "examples/README.md does not link $f"; return 1; }
  done
}
check "examples: README indexes every example" indexed

# Proxy configs parse, when the proxies are installed (not installed on purpose: CI time).
if command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; then
  nginx_ok() {
    local d=$tmp/nginx
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=t \
      -keyout "$d/key.pem" -out "$d/cert.pem" >/dev/null 2>&1 || return 1
    sed -e "s#/etc/letsencrypt/live/[^/]*/fullchain.pem#$d/cert.pem#" \
      -e "s#/etc/letsencrypt/live/[^/]*/privkey.pem#$d/key.pem#" \
      examples/nginx/telecoder.conf >"$d/site.conf"
    printf 'pid %s/pid; error_log %s/err; events {} http { include %s/site.conf; }\n' \
      "$d" "$d" "$d" >"$d/nginx.conf"
    nginx -t -q -c "$d/nginx.conf"
  }
  check "examples: nginx -t" nginx_ok
else
  skip "examples: nginx not installed"
fi
if command -v caddy >/dev/null 2>&1; then
  check "examples: caddy validate" \
    caddy validate --adapter caddyfile --config examples/caddy/Caddyfile
else
  skip "examples: caddy not installed"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
