#!/usr/bin/env bash
# Drive tests/mock-agent/mock_acp_agent.py through the real, pinned acpx CLI
# (node_modules/.bin/acpx, see package.json) the way TeleCoder runs it:
#
#   acpx --cwd <dir> <--deny-all|--approve-reads|--approve-all> --timeout <s> \
#        --format json --json-strict --agent "python3 <abs>/mock_acp_agent.py" exec -- "<prompt>"
#
# and assert exit codes, assistant text (concatenated agent_message_chunk text
# from stdout JSON lines), files written, state files and leftover processes.
#
# Usage: tests/mock-agent/check.sh        (run `npm ci` in the repo root first)
# Env:   KEEP_TMP=1 keeps the scratch directory; TIMING_RUNS=N (default 5).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ACPX="$ROOT/node_modules/.bin/acpx"
MOCK="$ROOT/tests/mock-agent/mock_acp_agent.py"
# acpx spawns the agent with cwd = --cwd, so the script path must be absolute.
# The --agent string is split like a shell word list (quotes honoured, no
# expansion), hence the single quotes around the path.
AGENT="python3 '$MOCK'"

if [[ ! -x "$ACPX" ]]; then
  echo "missing $ACPX - run 'npm ci' in $ROOT first" >&2
  exit 2
fi
if [[ "$("$ACPX" --version)" != "0.19.1" ]]; then
  echo "warning: expected acpx 0.19.1, got $("$ACPX" --version)" >&2
fi

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/telecoder-mock-check.XXXXXX")"
PASS=0
FAIL=0
ORPHANS=()   # pids this script deliberately left running; killed on exit

cleanup() {
  local p
  for p in "${ORPHANS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$SCRATCH"; else echo "kept $SCRATCH"; fi
}
trap cleanup EXIT

ok()   { PASS=$((PASS + 1)); echo "  ok   $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "  FAIL $*"; }
check() { # check DESCRIPTION ACTUAL EXPECTED
  if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1: expected $(printf %q "$3"), got $(printf %q "$2")"; fi
}

# A process counts as alive unless it is gone or a zombie (pid 1 in some
# containers never reaps re-parented children).
alive() {
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ')"
  [[ -n "$st" && "$st" != Z* ]]
}

# analyze OUT -> prints KEY=VALUE lines (all JSON?, text file, stop reason,
# last-line error, whether acpx sent session/cancel, agent pids).
ANALYZE='
import json, sys
out = sys.argv[1]
chunks, n, bad, last, stop, cancel = [], 0, 0, None, "", 0
for raw in open(out, encoding="utf-8"):
    try:
        m = json.loads(raw)
    except ValueError:
        bad += 1
        continue
    last = m
    if m.get("method") == "session/cancel":
        cancel += 1
    u = (m.get("params") or {}).get("update") or {}
    if m.get("method") == "session/update" and u.get("sessionUpdate") == "agent_message_chunk":
        c = u.get("content") or {}
        if c.get("type") == "text":
            chunks.append(c.get("text", "")); n += 1
    r = m.get("result")
    if isinstance(r, dict) and "stopReason" in r:
        stop = r["stopReason"]
open(out + ".text", "w", encoding="utf-8").write("".join(chunks))
err = (last or {}).get("error") or {}
print("NONJSON=%d" % bad)
print("CHUNKS=%d" % n)
print("STOP=%s" % stop)
print("CANCEL=%d" % cancel)
print("LASTID=%s" % json.dumps((last or {}).get("id", "none")))
print("ERRCODE=%s" % err.get("code", ""))
print("ACPXCODE=%s" % ((err.get("data") or {}).get("acpxCode", "")))
'

# run_acpx NAME MODE TIMEOUT PROMPT [extra exec args...]
# Sets RC, OUT, ERR, TEXT, CHUNKS, STOP, NONJSON, ... ; D is the --cwd dir.
run_acpx() {
  local name="$1" mode="$2" tmo="$3" prompt="$4"
  shift 4
  D="$SCRATCH/$name"
  mkdir -p "$D"
  OUT="$SCRATCH/$name.out"; ERR="$SCRATCH/$name.err"; LOG="$SCRATCH/$name.log"
  MOCK_AGENT_LOG="$LOG" timeout 120 "$ACPX" --cwd "$D" "$mode" --timeout "$tmo" \
    --format json --json-strict --agent "$AGENT" exec "$@" "$prompt" \
    >"$OUT" 2>"$ERR" </dev/null
  RC=$?
  eval "$(python3 -c "$ANALYZE" "$OUT")"
  TEXT="$(cat "$OUT.text"; printf x)"; TEXT="${TEXT%x}"
}

methods() { # methods LOGFILE -> space separated method names received by the mock
  [[ -f "$1" ]] || return 0
  python3 -c 'import json,sys; print(" ".join(json.loads(l)["method"] for l in open(sys.argv[1])))' "$1"
}
agent_pids() {
  [[ -f "$1" ]] || return 0
  python3 -c 'import json,sys; print(" ".join(sorted({str(json.loads(l)["pid"]) for l in open(sys.argv[1])})))' "$1"
}

STATE_BEFORE="$(ls -A "$HOME/.acpx" 2>/dev/null | sort | tr '\n' ' ')"
HAD_STATE_DIR=0; [[ -d "$HOME/.acpx" ]] && HAD_STATE_DIR=1
MARKER="$SCRATCH/.marker"; touch "$MARKER"; sleep 1

echo "== basic replies"
run_acpx echo --approve-all 20 "hello   world"
check "echo rc" "$RC" 0
check "echo text" "$TEXT" "Echo: hello   world"
check "echo stopReason" "$STOP" end_turn
check "echo stdout all JSON" "$NONJSON" 0
check "echo stderr empty" "$(cat "$ERR")" ""
check "echo last line is the prompt result (id 2)" "$LASTID" 2
check "echo JSON-RPC sequence seen by agent" "$(methods "$LOG")" "initialize session/new session/prompt"
check "echo: no session/cancel" "$CANCEL" 0
sleep 0.3
for p in $(agent_pids "$LOG"); do alive "$p" && bad "agent $p still running after exit" || ok "agent $p gone after exit"; done

run_acpx echo2 --deny-all 20 "please @mock echo inline"
check "@mock echo rc" "$RC" 0
check "@mock echo text" "$TEXT" "Echo: please @mock echo inline"

run_acpx outcome --deny-all 20 $'Do the thing.\n@mock outcome\nthanks'
check "outcome rc" "$RC" 0
check "outcome text" "$TEXT" $'Looked at the repo.\nChanged: updated README.md\nVerified: ran the tests\n  all green\nUncertain: nothing\nNext: publish it'

run_acpx say --deny-all 20 'x @mock say line one\nline  two   '
check "say rc" "$RC" 0
check "say text" "$TEXT" $'line one\nline  two'   # acpx trims the positional prompt

run_acpx first --deny-all 20 $'@mock say first\n@mock say second'
check "first directive wins" "$TEXT" "first"

run_acpx stream --deny-all 20 "@mock stream 5 50"
check "stream rc" "$RC" 0
check "stream chunk count" "$CHUNKS" 5
check "stream text" "$TEXT" $'chunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n'

run_acpx sleep --deny-all 20 "@mock sleep 0.5"
check "sleep rc" "$RC" 0
check "sleep text" "$TEXT" "slept 0.5"

run_acpx flood --deny-all 60 "@mock flood 4"
check "flood rc" "$RC" 0
check "flood chunks (64 KiB each)" "$CHUNKS" 64
check "flood bytes" "${#TEXT}" $((4 * 1024 * 1024))

echo "== failures"
run_acpx error --approve-all 20 "@mock error"
check "error rc" "$RC" 1
check "error: last line is the agent's own error response (id 2)" "$LASTID" 2
check "error code" "$ERRCODE" -32603
check "error: acpx adds no error line" "$(tail -1 "$OUT" | grep -c acpxCode)" 0
check "error stderr empty" "$(cat "$ERR")" ""

run_acpx unknown --approve-all 20 "@mock nosuchthing"
check "unknown directive rc" "$RC" 1
check "unknown directive error code" "$ERRCODE" -32602

run_acpx crash --approve-all 20 "@mock crash"
check "crash rc" "$RC" 1
check "crash text" "$TEXT" "about to crash"
check "crash: no prompt result" "$STOP" ""
check "crash: no acpx error line either" "$ERRCODE" ""
check "crash stderr empty" "$(cat "$ERR")" ""

run_acpx crash7 --approve-all 20 "@mock crash 7"
check "crash 7 rc (agent exit code not propagated)" "$RC" 1

echo "== permissions"
for mode in --deny-all --approve-reads --approve-all; do
  n="write${mode}"
  run_acpx "$n" "$mode" 20 '@mock write sub/out.txt hello\nworld'
  if [[ "$mode" == --approve-all ]]; then
    check "write $mode rc" "$RC" 0
    check "write $mode text" "$TEXT" "wrote sub/out.txt"
    check "write $mode file content" "$(cat "$D/sub/out.txt" 2>/dev/null)" $'hello\nworld'
  else
    check "write $mode rc" "$RC" 5
    check "write $mode text" "$TEXT" "permission denied for sub/out.txt"
    check "write $mode stopReason" "$STOP" end_turn
    check "write $mode: no file" "$([[ -e "$D/sub/out.txt" ]] && echo exists || echo absent)" absent
    check "write $mode: acpx adds no error line" "$ERRCODE" ""
  fi
  check "write $mode: permission outcome" \
    "$(grep -o '"outcome":{"outcome":"selected","optionId":"[a-z-]*"}' "$OUT")" \
    "$([[ $mode == --approve-all ]] && echo '"outcome":{"outcome":"selected","optionId":"allow-once"}' || echo '"outcome":{"outcome":"selected","optionId":"reject-once"}')"
done
for mode in --deny-all --approve-reads --approve-all; do
  n="read${mode}"
  mkdir -p "$SCRATCH/$n"; printf 'secret' >"$SCRATCH/$n/in.txt"
  run_acpx "$n" "$mode" 20 "@mock read in.txt"
  if [[ "$mode" == --deny-all ]]; then
    check "read $mode rc" "$RC" 5
    check "read $mode text" "$TEXT" "permission denied for in.txt"
  else
    check "read $mode rc" "$RC" 0
    check "read $mode text" "$TEXT" "read in.txt: secret"
  fi
done

echo "== timeouts and process cleanup"
for b in hang hang-hard spawn-tree; do
  start=$(date +%s.%N)
  run_acpx "t-$b" --approve-all 2 "@mock $b"
  took=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
  check "--timeout 2 @mock $b rc" "$RC" 3
  check "--timeout 2 @mock $b: acpx error line code" "$ERRCODE/$ACPXCODE" "-32070/TIMEOUT"
  check "--timeout 2 @mock $b: no session/cancel sent" "$CANCEL" 0
  check "--timeout 2 @mock $b stderr empty" "$(cat "$ERR")" ""
  echo "       (wall ${took}s)"
  sleep 0.3
  pids="$(agent_pids "$LOG") $(grep -o 'pids: [0-9]* [0-9]*' "$OUT" | cut -d' ' -f2-)"
  for p in $pids; do alive "$p" && { bad "$b: pid $p left running"; ORPHANS+=("$p"); } || ok "$b: pid $p gone"; done
done

# kill_test NAME SIGNAL pid|group PROMPT WAITFOR -> sets RC, TREE, AGENTPID
kill_test() {
  local name="$1" sig="$2" target="$3" prompt="$4" waitfor="$5" i
  D="$SCRATCH/$name"; mkdir -p "$D"
  OUT="$SCRATCH/$name.out"; ERR="$SCRATCH/$name.err"; LOG="$SCRATCH/$name.log"
  # setsid: acpx becomes leader of its own process group (pgid == pid), as
  # TeleCoder is expected to do, so "group" kills hit acpx + agent + helpers.
  MOCK_AGENT_LOG="$LOG" setsid "$ACPX" --cwd "$D" --approve-all --timeout 60 \
    --format json --json-strict --agent "$AGENT" exec "$prompt" >"$OUT" 2>"$ERR" </dev/null &
  local apid=$!
  for i in $(seq 100); do grep -q "$waitfor" "$OUT" 2>/dev/null && break; sleep 0.1; done
  [[ "$(ps -o pgid= -p "$apid" | tr -d ' ')" == "$apid" ]] || bad "$name: acpx is not its own group leader"
  TREE="$(grep -o 'pids: [0-9]* [0-9]*' "$OUT" | cut -d' ' -f2-)"
  AGENTPID="$(agent_pids "$LOG")"
  if [[ "$target" == group ]]; then kill "-$sig" -- "-$apid"; else kill "-$sig" "$apid"; fi
  wait "$apid" 2>/dev/null
  RC=$?
  sleep 2  # give acpx's cleanup (stdin EOF, SIGTERM after 100 ms, SIGKILL after 1.5 s) time
  eval "$(python3 -c "$ANALYZE" "$OUT")"
}

kill_test sigterm-pid TERM pid "@mock spawn-tree" "pids: "
check "SIGTERM acpx pid: rc (cancel answered -> success!)" "$RC" 0
check "SIGTERM acpx pid: session/cancel sent" "$CANCEL" 1
check "SIGTERM acpx pid: stopReason" "$STOP" cancelled
for p in $AGENTPID $TREE; do alive "$p" && { bad "SIGTERM pid: $p left running"; ORPHANS+=("$p"); } || ok "SIGTERM pid: $p gone"; done

kill_test sigterm-pid-hard TERM pid "@mock hang-hard" "hanging"
check "SIGTERM acpx pid, agent ignores cancel: rc" "$RC" 1
check "SIGTERM acpx pid, agent ignores cancel: session/cancel sent" "$CANCEL" 1
for p in $AGENTPID; do alive "$p" && { bad "SIGTERM pid hard: $p left running"; ORPHANS+=("$p"); } || ok "SIGTERM pid hard: agent $p gone"; done

kill_test sigint-pid INT pid "@mock hang" "hanging"
check "SIGINT acpx pid, agent honours cancel: rc" "$RC" 0

kill_test sigterm-group TERM group "@mock spawn-tree" "pids: "
[[ "$RC" != 0 ]] && ok "SIGTERM group: rc non-zero ($RC)" || bad "SIGTERM group: rc 0"
for p in $AGENTPID $TREE; do alive "$p" && { bad "SIGTERM group: $p left running"; ORPHANS+=("$p"); } || ok "SIGTERM group: $p gone"; done

kill_test sigkill-group KILL group "@mock spawn-tree" "pids: "
check "SIGKILL group rc" "$RC" 137
for p in $AGENTPID $TREE; do alive "$p" && { bad "SIGKILL group: $p left running"; ORPHANS+=("$p"); } || ok "SIGKILL group: $p gone"; done

kill_test sigkill-pid KILL pid "@mock spawn-tree" "pids: "
check "SIGKILL acpx pid rc" "$RC" 137
for p in $AGENTPID; do alive "$p" && { bad "SIGKILL pid: agent $p left running"; ORPHANS+=("$p"); } || ok "SIGKILL pid: agent $p exits (stdin EOF)"; done
for p in $TREE; do
  # Documented limitation: nobody reaps the agent's own children when only
  # acpx is SIGKILLed -> kill the whole process group instead.
  if alive "$p"; then ok "SIGKILL pid: agent child $p orphaned (expected; kill the group)"; ORPHANS+=("$p")
  else bad "SIGKILL pid: agent child $p unexpectedly gone"; fi
done
for p in "${ORPHANS[@]}"; do kill -KILL "$p" 2>/dev/null; done

echo "== prompt input"
run_acpx file-prep --deny-all 20 "prep"
printf '\n  @mock say from file\nsecond line\n\n' >"$D/prompt.txt"
MOCK_AGENT_LOG="$SCRATCH/file.log" "$ACPX" --cwd "$D" --deny-all --timeout 20 --format json --json-strict \
  --agent "$AGENT" exec --file prompt.txt >"$SCRATCH/file.out" 2>"$SCRATCH/file.err" </dev/null
RC=$?; eval "$(python3 -c "$ANALYZE" "$SCRATCH/file.out")"
check "exec --file (relative to --cwd) rc" "$RC" 0
check "exec --file text" "$(cat "$SCRATCH/file.out.text")" "from file"
check "exec --file prompt is trimmed file content" \
  "$(python3 -c 'import json,sys; print(json.dumps(json.loads([l for l in open(sys.argv[1]) if "session/prompt" in l][0])["params"]["prompt"]))' "$SCRATCH/file.log")" \
  '[{"type": "text", "text": "@mock say from file\nsecond line"}]'
echo "@mock say via stdin" | "$ACPX" --cwd "$D" --deny-all --timeout 20 --format json --json-strict \
  --agent "$AGENT" exec --file - >"$SCRATCH/stdin.out" 2>&1
RC=$?; eval "$(python3 -c "$ANALYZE" "$SCRATCH/stdin.out")"
check "exec --file - (stdin) rc" "$RC" 0
check "exec --file - text" "$(cat "$SCRATCH/stdin.out.text")" "via stdin"
"$ACPX" --cwd "$D" --deny-all --timeout 20 --format json --json-strict --agent "$AGENT" exec \
  >"$SCRATCH/noprompt.out" 2>&1 </dev/null
RC=$?; eval "$(python3 -c "$ANALYZE" "$SCRATCH/noprompt.out")"
check "exec without prompt, empty stdin: rc (usage)" "$RC/$ACPXCODE" "2/USAGE"

echo "== prompts that look like options (TeleCoder passes \`exec -- <prompt>\`)"
i=0
for p in "--file=$SCRATCH/echo.out" --version --help -x --; do
  i=$((i + 1))
  run_acpx "opt$i" --deny-all 20 "$p" --
  check "exec -- $p rc" "$RC" 0
  check "exec -- $p reaches the agent as text" "$TEXT" "Echo: $p"
done
run_acpx opt-skill --deny-all 20 --skill --
check "exec -- --skill: acpx's skill installer takes over even after -- (why TeleCoder sends it via --file)" "$RC" 1
printf '[{"type":"text","text":"  --skill\\n"}]' >"$D/blocks.json"
"$ACPX" --cwd "$D" --deny-all --timeout 20 --format json --json-strict \
  --agent "$AGENT" exec --file "$D/blocks.json" >"$SCRATCH/blocks.out" 2>&1 </dev/null
RC=$?; eval "$(python3 -c "$ANALYZE" "$SCRATCH/blocks.out")"
check "exec --file <one JSON text block> rc" "$RC" 0
BLOCKS="$(cat "$SCRATCH/blocks.out.text"; printf x)"
check "exec --file <one JSON text block>: text arrives untrimmed" "${BLOCKS%x}" $'Echo:   --skill\n'

echo "== chunks, shell, escape"
run_acpx chunks --deny-all 20 '@mock chunks 10 key=ghp_01 23456789\nx'
check "chunks count" "$CHUNKS" 2
check "chunks text" "$TEXT" $'key=ghp_0123456789\nx'
run_acpx shell-denied --deny-all 20 "@mock shell touch ran"
check "shell denied rc" "$RC" 5
check "shell denied: nothing ran" "$([[ -e "$D/ran" ]] && echo ran || echo absent)" absent
run_acpx shell --approve-all 20 "@mock shell echo hi > out.txt; cat out.txt"
check "shell allowed text" "$TEXT" $'hi\nexit 0'
run_acpx escape --deny-all 20 "@mock escape"
check "escape rc" "$RC" 0
ESCAPED="${TEXT#escaped: }"
if [[ "$ESCAPED" =~ ^[0-9]+$ ]] && alive "$ESCAPED"; then
  ok "escape: sleeper $ESCAPED outlives acpx (TeleCoder kills it by its session marker)"
  check "escape: sleeper left the session" "$([[ "$(ps -o sid= -p "$ESCAPED")" == "$(ps -o sid= -p $$)" ]] && echo same || echo other)" other
  kill -KILL "$ESCAPED"
else
  bad "escape: no live sleeper ($TEXT)"
fi

echo "== agent command handling"
"$ACPX" --cwd "$D" --deny-all --timeout 20 --format json --json-strict \
  --agent "python3 tests/mock-agent/mock_acp_agent.py" exec "hi" >"$SCRATCH/rel.out" 2>&1 </dev/null
RC=$?
check "relative --agent path resolves against --cwd -> startup failure rc" "$RC" 1
check "relative --agent path error detail" "$(grep -o '"detailCode":"[A-Z_]*"' "$SCRATCH/rel.out")" '"detailCode":"AGENT_STARTUP_FAILED"'

echo "== state files"
if [[ "$HAD_STATE_DIR" == 0 ]]; then
  check "exec created no ~/.acpx" "$([[ -e "$HOME/.acpx" ]] && echo created || echo absent)" absent
else
  check "exec left ~/.acpx unchanged" "$(ls -A "$HOME/.acpx" 2>/dev/null | sort | tr '\n' ' ')" "$STATE_BEFORE"
fi
check "no stray files in --cwd dirs" \
  "$(find "$SCRATCH" -mindepth 2 -type f ! -name prompt.txt ! -name in.txt ! -name blocks.json ! -name out.txt ! -path '*/sub/out.txt' | head -5)" ""

echo "== timing (${TIMING_RUNS:-5} x exec echo)"
for i in $(seq "${TIMING_RUNS:-5}"); do
  s=$(date +%s%N)
  "$ACPX" --cwd "$SCRATCH/echo" --approve-all --timeout 20 --format json --json-strict \
    --agent "$AGENT" exec "timing $i" >/dev/null 2>&1 </dev/null
  rc=$?
  echo "       run $i: $(( ($(date +%s%N) - s) / 1000000 )) ms (rc $rc)"
done

echo
echo "passed: $PASS  failed: $FAIL"
[[ "$FAIL" == 0 ]]
