#!/usr/bin/env python3
"""Mock ACP (Agent Client Protocol) agent for TeleCoder tests.

Speaks the agent side of ACP: JSON-RPC 2.0 over stdio, one JSON object per
line (newline-delimited JSON). Stdlib only. Designed to be driven by the real
`acpx` CLI, e.g.

    acpx --cwd DIR --approve-all --format json --json-strict \
         --agent "python3 /abs/path/mock_acp_agent.py" exec -- "@mock say hi"

Behaviour is selected by a directive anywhere in the prompt text:

    @mock <name> [args...]

The first directive wins; it may stand on its own line or inline, and its
arguments run to the end of that line. Without a directive the agent echoes
the prompt ("Echo: <prompt>").

    echo                 same as no directive
    outcome              multi-line reply with Changed/Verified/Uncertain/Next sections
    stream [N] [MS]      N chunks "chunk i\\n", MS ms apart (defaults 20, 200)
    sleep S              sleep S seconds (float ok), reply "slept S"
    write PATH TEXT...   session/request_permission (kind "edit"); if allowed,
                         write TEXT (literal "\\n" -> newline, no trailing
                         newline added) to PATH (relative to the session cwd)
                         and reply "wrote PATH"; otherwise reply
                         "permission denied for PATH" and write nothing
    read PATH            session/request_permission (kind "read"); if allowed,
                         reply "read PATH: <contents>", else
                         "permission denied for PATH"
    crash [CODE]         emit chunk "about to crash", then os._exit(CODE) (default 1)
    error                answer session/prompt with JSON-RPC error -32603
                         "mock agent failure"
    hang                 emit chunk "hanging", never finish on its own
                         (session/cancel -> stopReason "cancelled")
    hang-hard            like hang but ignores session/cancel too
    spawn-tree           start `sh` child + `sleep` grandchild, emit
                         "pids: <child> <grandchild>", then behave like hang
    flood MB             emit MB MiB of text in 64 KiB chunks, then finish
    say TEXT...          reply exactly TEXT (literal "\\n" -> newline)
    env NAME...          reply NAME=value (or NAME=(unset)) per line, as the agent sees it
    chunks MS PART...    emit each PART as its own chunk (literal "\\n" -> newline), MS ms
                         apart: text (a secret) split across chunks
    shell CMD...         session/request_permission (kind "execute"); if allowed, run
                         `sh -c CMD` in the session cwd (stdin closed) and reply with its
                         output and exit code; otherwise "permission denied for shell"
    escape [hang]        start `sleep 1000` that leaves the agent's process group and session
                         (setsid, then a double fork), emit "escaped: <pid>", then finish
                         (or hang like `hang`)
    tools                two tool calls with updates: "Read README.md" (read, with a
                         location; pending -> in_progress -> completed) and "Run the
                         tests" (execute; pending -> failed); reply "tools done"
    plan                 a three-entry plan, updated step by step until every entry
                         is completed; reply "plan done"
    fs-read PATH         fs/read_text_file (PATH relative to the cwd, or absolute as
                         given); reply "fs-read PATH: <content>" or
                         "fs-read PATH failed: <error message>"
    fs-write PATH TEXT   fs/write_text_file; reply "fs-wrote PATH" or
                         "fs-write PATH failed: <error message>"
    run CMD...           terminal/create (sh -c CMD), terminal/wait_for_exit,
                         terminal/output, terminal/release; reply
                         "exit=<code> signal=<signal> output=<output>" or "run failed: <msg>"
    run-hang CMD...      terminal/create (sh -c CMD), wait until it printed something,
                         reply "terminal said: <output>", then behave like hang
    recall               reply "turns before: N; last prompt: <text>" from this session's
                         history (survives session/load)

Directive names are case-insensitive. An unknown directive answers the prompt
with JSON-RPC error -32602. `sleep`, `stream`, `hang` and `spawn-tree` stop
early with stopReason "cancelled" when the client sends session/cancel.

Every prompt answer carries token usage (`usage`: words of the prompt in, words
of the reply out) after a `usage_update` session update (context used/size and a
cost). `initialize` advertises `loadSession`: `session/load` of a session this
process created, or one stored under MOCK_AGENT_STATE_DIR, replays its history
as user/agent message chunks; an unknown id is error -32002.

Environment:
    MOCK_AGENT_LOG=<path>  append one JSON line per received JSON-RPC method
                           ({"ts","pid","method","id","params"}) to <path>.
    MOCK_AGENT_STATE_DIR=<dir>  store each session's history in <dir> so that a
                           later agent process can load it.
    MOCK_AGENT_TIMING=<path>  append {"ts","pid","event","id","method"} when the agent
                           sends a request to the client ("request") and when its
                           answer arrives ("response"): how long the client took.

Arguments:
    --no-load-session      advertise `loadSession: false` (and refuse session/load), like
                           agents that cannot resume a conversation.

Stdout carries only JSON-RPC lines (flushed after each line); diagnostics go
to stderr. The process exits when stdin reaches EOF.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

PROTOCOL_VERSION = 1
AGENT_NAME = "telecoder-mock-agent"
AGENT_VERSION = "0.1.0"

NO_LOAD_SESSION = "--no-load-session" in sys.argv[1:]

DIRECTIVE_RE = re.compile(r"@mock[ \t]+([A-Za-z0-9_-]+)([^\r\n]*)")

_write_lock = threading.Lock()
_log_lock = threading.Lock()
_pending_lock = threading.Lock()
_pending = {}  # our outgoing request id -> [threading.Event, response]
_next_id = [0]
_sessions = {}  # sessionId -> {"cwd": str, "cancel": threading.Event, "history": [...]}
_client_caps = {}  # the client's capabilities from initialize
_sessions_lock = threading.Lock()
_children = []  # keep Popen objects alive (spawn-tree)


class PromptError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def log_err(msg):
    try:
        sys.stderr.write("[mock-agent] %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def send(obj):
    """Write one JSON-RPC message as a single line and flush."""
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    with _write_lock:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (BrokenPipeError, ValueError, OSError):
            # Client went away; nothing sensible left to do.
            os._exit(0)


def respond(req_id, result):
    send({"jsonrpc": "2.0", "id": req_id, "result": result})


def respond_error(req_id, code, message, data=None):
    err = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    send({"jsonrpc": "2.0", "id": req_id, "error": err})


def notify(method, params):
    send({"jsonrpc": "2.0", "method": method, "params": params})


def request_client(method, params):
    """Send an agent->client request and block until its response arrives.

    Returns the full response object ({"result": ...} or {"error": ...}).
    """
    with _pending_lock:
        _next_id[0] += 1
        rid = "mock-%d" % _next_id[0]
        slot = [threading.Event(), None]
        _pending[rid] = slot
    log_timing("request", rid, method)
    send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    slot[0].wait()
    return slot[1]


def log_timing(event, rid, method=None):
    path = os.environ.get("MOCK_AGENT_TIMING")
    if not path:
        return
    entry = {"ts": time.time(), "pid": os.getpid(), "event": event, "id": rid, "method": method}
    try:
        with _log_lock:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
    except OSError as exc:
        log_err("cannot write MOCK_AGENT_TIMING %s: %s" % (path, exc))


def log_method(msg):
    path = os.environ.get("MOCK_AGENT_LOG")
    if not path:
        return
    entry = {
        "ts": time.time(),
        "pid": os.getpid(),
        "method": msg.get("method"),
        "id": msg.get("id"),
        "params": msg.get("params"),
    }
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    try:
        with _log_lock:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
    except OSError as exc:
        log_err("cannot write MOCK_AGENT_LOG %s: %s" % (path, exc))


def session_update(session_id, update):
    notify("session/update", {"sessionId": session_id, "update": update})


_replies = {}  # sessionId -> {"words": n, "head": first HISTORY_TEXT_LIMIT chars said}
_replies_lock = threading.Lock()
HISTORY_TEXT_LIMIT = 4096  # of each reply kept in the history (a flood stays cheap)


def say_chunk(session_id, text):
    with _replies_lock:
        reply = _replies.setdefault(session_id, {"words": 0, "head": ""})
        reply["words"] += word_count(text)
        if len(reply["head"]) < HISTORY_TEXT_LIMIT:
            reply["head"] = (reply["head"] + text)[:HISTORY_TEXT_LIMIT]
    session_update(
        session_id,
        {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}},
    )


def prompt_text(prompt):
    parts = []
    for block in prompt or []:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(parts)


def state_path(session_id):
    state_dir = os.environ.get("MOCK_AGENT_STATE_DIR")
    if not state_dir or not re.match(r"^[A-Za-z0-9_-]+$", session_id or ""):
        return None
    return os.path.join(state_dir, session_id + ".json")


def save_session(session_id, sess):
    path = state_path(session_id)
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"cwd": sess["cwd"], "history": sess["history"]}, fh)
    except OSError as exc:
        log_err("cannot store session %s: %s" % (session_id, exc))


def stored_session(session_id):
    path = state_path(session_id)
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        log_err("cannot read session %s: %s" % (session_id, exc))
        return None


def word_count(text):
    return len(text.split())


def unescape_newlines(text):
    return text.replace("\\n", "\n")


def parse_directive(text):
    """Return (name, rest_of_line) for the first @mock directive, or None."""
    m = DIRECTIVE_RE.search(text)
    if not m:
        return None
    rest = m.group(2)
    if rest.startswith((" ", "\t")):
        rest = rest[1:]
    return m.group(1).lower(), rest


def num_arg(args, index, default, conv, name):
    if len(args) <= index:
        return default
    try:
        return conv(args[index])
    except ValueError:
        raise PromptError(-32602, "invalid %s argument: %r" % (name, args[index]))


# ---------------------------------------------------------------- behaviours


def run_behaviour(session_id, text):
    """Run the prompt; returns the stopReason. Raises PromptError for errors."""
    with _sessions_lock:
        sess = _sessions.get(session_id)
    cancel = sess["cancel"] if sess else threading.Event()
    cwd = sess["cwd"] if sess else os.getcwd()

    directive = parse_directive(text)
    if directive is None:
        say_chunk(session_id, "Echo: " + text)
        return "end_turn"
    name, rest = directive
    args = rest.split()

    if name == "echo":
        say_chunk(session_id, "Echo: " + text)
        return "end_turn"

    if name == "outcome":
        say_chunk(
            session_id,
            "Looked at the repo.\n"
            "Changed: updated README.md\n"
            "Verified: ran the tests\n"
            "  all green\n"
            "Uncertain: nothing\n"
            "Next: publish it",
        )
        return "end_turn"

    if name == "say":
        say_chunk(session_id, unescape_newlines(rest))
        return "end_turn"

    if name == "env":
        # Reports environment variables the agent process can see, for the env-scrub tests.
        shown = ["%s=%s" % (n, os.environ.get(n, "(unset)")) for n in args]
        say_chunk(session_id, "\n".join(shown))
        return "end_turn"

    if name == "chunks":
        delay_ms = num_arg(args, 0, 300, float, "MS")
        for i, part in enumerate(args[1:]):
            if i > 0 and cancel.wait(delay_ms / 1000.0):
                return "cancelled"
            say_chunk(session_id, unescape_newlines(part))
        return "end_turn"

    if name == "shell":
        return do_shell(session_id, cwd, rest, cancel)

    if name == "escape":
        # `setsid` puts sh in a new session and group; sh forks the sleeper and exits, so the
        # sleeper is re-parented too. Only its environment still says which session it is from.
        child = subprocess.Popen(
            ["setsid", "sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        escaped = child.stdout.readline().decode().strip()
        child.wait()
        say_chunk(session_id, "escaped: %s" % escaped)
        if args[:1] == ["hang"]:
            cancel.wait()
            return "cancelled"
        return "end_turn"

    if name == "stream":
        count = num_arg(args, 0, 20, int, "N")
        delay_ms = num_arg(args, 1, 200, float, "MS")
        for i in range(1, count + 1):
            if i > 1 and cancel.wait(delay_ms / 1000.0):
                return "cancelled"
            if cancel.is_set():
                return "cancelled"
            say_chunk(session_id, "chunk %d\n" % i)
        return "end_turn"

    if name == "sleep":
        raw = args[0] if args else "1"
        secs = num_arg(args, 0, 1.0, float, "S")
        if cancel.wait(max(secs, 0.0)):
            return "cancelled"
        say_chunk(session_id, "slept %s" % raw)
        return "end_turn"

    if name == "write":
        return do_write(session_id, cwd, rest, cancel)

    if name == "read":
        return do_read(session_id, cwd, rest, cancel)

    if name == "crash":
        code = num_arg(args, 0, 1, int, "CODE")
        say_chunk(session_id, "about to crash")
        os._exit(code)

    if name == "error":
        raise PromptError(-32603, "mock agent failure")

    if name == "hang":
        say_chunk(session_id, "hanging")
        cancel.wait()
        return "cancelled"

    if name in ("hang-hard", "ignore-cancel"):
        say_chunk(session_id, "hanging")
        threading.Event().wait()

    if name == "spawn-tree":
        child = subprocess.Popen(
            ["sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; wait"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        _children.append(child)
        grandchild = child.stdout.readline().decode().strip()
        say_chunk(session_id, "pids: %d %s" % (child.pid, grandchild))
        cancel.wait()
        return "cancelled"

    if name == "flood":
        mb = num_arg(args, 0, 1.0, float, "MB")
        total = int(mb * 1024 * 1024)
        line = "x" * 1023 + "\n"
        block = line * 64  # 64 KiB
        sent = 0
        while sent < total:
            if cancel.is_set():
                return "cancelled"
            n = min(len(block), total - sent)
            say_chunk(session_id, block[:n])
            sent += n
        return "end_turn"

    if name == "tools":
        return do_tools(session_id, cwd)

    if name == "plan":
        return do_plan(session_id, cancel)

    if name == "fs-read":
        return do_fs_read(session_id, cwd, rest)

    if name == "fs-write":
        return do_fs_write(session_id, cwd, rest)

    if name == "run":
        return do_run(session_id, rest)

    if name == "run-hang":
        return do_run_hang(session_id, rest, cancel)

    if name == "recall":
        with _sessions_lock:
            history = list(sess["history"]) if sess else []
        turns = [h for h in history if h.get("role") == "user"]
        last = turns[-1]["text"] if turns else "(none)"
        say_chunk(session_id, "turns before: %d; last prompt: %s" % (len(turns), last))
        return "end_turn"

    raise PromptError(-32602, "unknown @mock directive: %s" % name)


def tool_update(session_id, tool_call_id, **fields):
    update = {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id}
    update.update(fields)
    session_update(session_id, update)


def do_tools(session_id, cwd):
    read_id = "mock-tool-read-%s" % uuid.uuid4().hex[:8]
    path = os.path.join(cwd, "README.md")
    session_update(
        session_id,
        {
            "sessionUpdate": "tool_call",
            "toolCallId": read_id,
            "title": "Read README.md",
            "kind": "read",
            "status": "pending",
            "locations": [{"path": path, "line": 1}],
        },
    )
    tool_update(session_id, read_id, status="in_progress")
    tool_update(
        session_id,
        read_id,
        status="completed",
        content=[{"type": "content", "content": {"type": "text", "text": "read it"}}],
    )
    run_id = "mock-tool-run-%s" % uuid.uuid4().hex[:8]
    session_update(
        session_id,
        {"sessionUpdate": "tool_call", "toolCallId": run_id, "title": "Run the tests", "kind": "execute"},
    )
    tool_update(session_id, run_id, status="failed")
    say_chunk(session_id, "tools done")
    return "end_turn"


def do_plan(session_id, cancel):
    steps = ["Read the code", "Change it", "Run the tests"]
    for done in range(len(steps)):
        if cancel.is_set():
            return "cancelled"
        entries = [
            {
                "content": step,
                "priority": "high" if i == 0 else "medium",
                "status": "completed" if i < done else ("in_progress" if i == done else "pending"),
            }
            for i, step in enumerate(steps)
        ]
        session_update(session_id, {"sessionUpdate": "plan", "entries": entries})
    final = [{"content": step, "priority": "high" if i == 0 else "medium", "status": "completed"}
             for i, step in enumerate(steps)]
    session_update(session_id, {"sessionUpdate": "plan", "entries": final})
    say_chunk(session_id, "plan done")
    return "end_turn"


def client_path(cwd, raw):
    return raw if os.path.isabs(raw) else os.path.join(cwd, raw)


def error_message(resp):
    err = resp.get("error") if isinstance(resp, dict) else None
    if isinstance(err, dict):
        return str(err.get("message"))
    return None


def do_fs_read(session_id, cwd, rest):
    raw = rest.strip()
    if not raw:
        raise PromptError(-32602, "fs-read needs PATH")
    if not (_client_caps.get("fs") or {}).get("readTextFile"):
        say_chunk(session_id, "fs-read %s failed: the client cannot read files" % raw)
        return "end_turn"
    resp = request_client("fs/read_text_file", {"sessionId": session_id, "path": client_path(cwd, raw)})
    failed = error_message(resp)
    if failed is not None:
        say_chunk(session_id, "fs-read %s failed: %s" % (raw, failed))
    else:
        say_chunk(session_id, "fs-read %s: %s" % (raw, (resp.get("result") or {}).get("content")))
    return "end_turn"


def do_fs_write(session_id, cwd, rest):
    parts = rest.strip().split(None, 1)
    if not parts:
        raise PromptError(-32602, "fs-write needs PATH [TEXT...]")
    raw = parts[0]
    content = unescape_newlines(parts[1]) if len(parts) > 1 else ""
    if not (_client_caps.get("fs") or {}).get("writeTextFile"):
        say_chunk(session_id, "fs-write %s failed: the client cannot write files" % raw)
        return "end_turn"
    resp = request_client(
        "fs/write_text_file", {"sessionId": session_id, "path": client_path(cwd, raw), "content": content}
    )
    failed = error_message(resp)
    if failed is not None:
        say_chunk(session_id, "fs-write %s failed: %s" % (raw, failed))
    else:
        say_chunk(session_id, "fs-wrote %s" % raw)
    return "end_turn"


def create_terminal(session_id, command):
    if not _client_caps.get("terminal"):
        return None, "the client has no terminal"
    resp = request_client(
        "terminal/create",
        {"sessionId": session_id, "command": "sh", "args": ["-c", command], "env": [], "outputByteLimit": 65536},
    )
    failed = error_message(resp)
    if failed is not None:
        return None, failed
    return (resp.get("result") or {}).get("terminalId"), None


def do_run(session_id, rest):
    command = rest.strip()
    terminal_id, failed = create_terminal(session_id, command)
    if failed is not None:
        say_chunk(session_id, "run failed: %s" % failed)
        return "end_turn"
    ids = {"sessionId": session_id, "terminalId": terminal_id}
    exited = request_client("terminal/wait_for_exit", ids).get("result") or {}
    output = (request_client("terminal/output", ids).get("result") or {}).get("output", "")
    request_client("terminal/release", ids)
    say_chunk(
        session_id,
        "exit=%s signal=%s output=%s" % (exited.get("exitCode"), exited.get("signal"), output),
    )
    return "end_turn"


def do_run_hang(session_id, rest, cancel):
    terminal_id, failed = create_terminal(session_id, rest.strip())
    if failed is not None:
        say_chunk(session_id, "run failed: %s" % failed)
        return "end_turn"
    ids = {"sessionId": session_id, "terminalId": terminal_id}
    output = ""
    while not output and not cancel.is_set():
        output = (request_client("terminal/output", ids).get("result") or {}).get("output", "")
        if not output:
            cancel.wait(0.05)
    say_chunk(session_id, "terminal said: %s" % output.strip())
    cancel.wait()
    return "cancelled"


def ask_permission(session_id, tool_call_id, title, kind, locations, raw_input):
    """Announce a tool call, ask session/request_permission; True if allowed."""
    tool_call = {
        "toolCallId": tool_call_id,
        "title": title,
        "kind": kind,
        "status": "pending",
        "locations": locations,
        "rawInput": raw_input,
    }
    session_update(session_id, dict(tool_call, sessionUpdate="tool_call"))
    resp = request_client(
        "session/request_permission",
        {
            "sessionId": session_id,
            "toolCall": tool_call,
            "options": [
                {"optionId": "allow-once", "name": "Allow", "kind": "allow_once"},
                {"optionId": "reject-once", "name": "Reject", "kind": "reject_once"},
            ],
        },
    )
    result = resp.get("result") if isinstance(resp, dict) else None
    if isinstance(result, dict):
        outcome = result.get("outcome") or {}
        return outcome.get("outcome") == "selected" and outcome.get("optionId") == "allow-once"
    return False


def do_read(session_id, cwd, rest, cancel):
    rel_path = rest.strip()
    if not rel_path:
        raise PromptError(-32602, "read needs PATH")
    abs_path = os.path.normpath(os.path.join(cwd, rel_path))
    tool_call_id = "mock-read-%s" % uuid.uuid4().hex[:12]
    allowed = ask_permission(
        session_id, tool_call_id, "Read %s" % rel_path, "read", [{"path": abs_path}], {"path": abs_path}
    )
    if not allowed:
        session_update(
            session_id,
            {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "failed"},
        )
        say_chunk(session_id, "permission denied for %s" % rel_path)
        return "cancelled" if cancel.is_set() else "end_turn"
    try:
        with open(abs_path, "r", encoding="utf-8", errors="replace") as fh:
            data = fh.read()
    except OSError as exc:
        session_update(
            session_id,
            {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "failed"},
        )
        say_chunk(session_id, "cannot read %s: %s" % (rel_path, exc.strerror))
        return "end_turn"
    session_update(
        session_id,
        {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "completed"},
    )
    say_chunk(session_id, "read %s: %s" % (rel_path, data))
    return "end_turn"


def do_write(session_id, cwd, rest, cancel):
    rest = rest.strip()
    if not rest:
        raise PromptError(-32602, "write needs PATH [TEXT...]")
    parts = rest.split(None, 1)
    rel_path = parts[0]
    content = unescape_newlines(parts[1]) if len(parts) > 1 else ""
    abs_path = os.path.normpath(os.path.join(cwd, rel_path))
    tool_call_id = "mock-write-%s" % uuid.uuid4().hex[:12]
    title = "Write %s" % rel_path
    raw_input = {"path": abs_path, "content": content}
    locations = [{"path": abs_path}]

    allowed = ask_permission(session_id, tool_call_id, title, "edit", locations, raw_input)

    if not allowed:
        session_update(
            session_id,
            {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "failed"},
        )
        say_chunk(session_id, "permission denied for %s" % rel_path)
        return "cancelled" if cancel.is_set() else "end_turn"

    session_update(
        session_id,
        {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "in_progress"},
    )
    parent = os.path.dirname(abs_path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(abs_path, "w", encoding="utf-8") as fh:
        fh.write(content)
    session_update(
        session_id,
        {
            "sessionUpdate": "tool_call_update",
            "toolCallId": tool_call_id,
            "status": "completed",
            "content": [{"type": "content", "content": {"type": "text", "text": "wrote %s" % rel_path}}],
        },
    )
    say_chunk(session_id, "wrote %s" % rel_path)
    return "end_turn"


def do_shell(session_id, cwd, rest, cancel):
    command = rest.strip()
    if not command:
        raise PromptError(-32602, "shell needs CMD")
    tool_call_id = "mock-shell-%s" % uuid.uuid4().hex[:12]
    allowed = ask_permission(
        session_id, tool_call_id, "Run %s" % command, "execute", [], {"command": command}
    )
    if not allowed:
        session_update(
            session_id,
            {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "failed"},
        )
        say_chunk(session_id, "permission denied for shell")
        return "cancelled" if cancel.is_set() else "end_turn"
    done = subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    session_update(
        session_id,
        {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id, "status": "completed"},
    )
    output = done.stdout.decode("utf-8", "replace")
    say_chunk(session_id, "%sexit %d" % (output, done.returncode))
    return "end_turn"


def handle_prompt(req_id, params):
    session_id = params.get("sessionId")
    with _sessions_lock:
        sess = _sessions.get(session_id)
    if sess is None:
        respond_error(req_id, -32602, "unknown sessionId: %s" % session_id)
        return
    sess["cancel"].clear()
    text = prompt_text(params.get("prompt"))
    with _replies_lock:
        _replies[session_id] = {"words": 0, "head": ""}
    try:
        stop_reason = run_behaviour(session_id, text)
    except PromptError as exc:
        respond_error(req_id, exc.code, exc.message, exc.data)
        return
    except Exception as exc:  # never leave a prompt unanswered on a bug
        log_err("prompt failed: %r" % (exc,))
        respond_error(req_id, -32603, "mock agent internal error: %s" % exc)
        return
    with _replies_lock:
        reply = _replies.pop(session_id, {"words": 0, "head": ""})
    with _sessions_lock:
        sess["history"].append({"role": "user", "text": text, "words": word_count(text)})
        sess["history"].append({"role": "agent", "text": reply["head"], "words": reply["words"]})
        context = sum(h.get("words", 0) for h in sess["history"])
    save_session(session_id, sess)
    session_update(
        session_id,
        {
            "sessionUpdate": "usage_update",
            "used": context,
            "size": 200000,
            "cost": {"amount": 0.001 * context, "currency": "USD"},
        },
    )
    words_in, words_out = word_count(text), reply["words"]
    respond(
        req_id,
        {
            "stopReason": stop_reason,
            "usage": {"inputTokens": words_in, "outputTokens": words_out, "totalTokens": words_in + words_out},
        },
    )


# ---------------------------------------------------------------- dispatch


def handle_request(req_id, method, params):
    if method == "initialize":
        caps = params.get("clientCapabilities")
        _client_caps.clear()
        if isinstance(caps, dict):
            _client_caps.update(caps)
        client_version = params.get("protocolVersion", PROTOCOL_VERSION)
        version = client_version if isinstance(client_version, int) and client_version < PROTOCOL_VERSION else PROTOCOL_VERSION
        respond(
            req_id,
            {
                "protocolVersion": version,
                "agentCapabilities": {
                    "loadSession": not NO_LOAD_SESSION,
                    "promptCapabilities": {"image": False, "audio": False, "embeddedContext": False},
                    "mcpCapabilities": {"http": False, "sse": False},
                },
                "authMethods": [],
                "agentInfo": {"name": AGENT_NAME, "version": AGENT_VERSION},
            },
        )
    elif method == "authenticate":
        respond(req_id, {})
    elif method == "session/new":
        cwd = params.get("cwd") or os.getcwd()
        session_id = "mock-%s" % uuid.uuid4()
        with _sessions_lock:
            _sessions[session_id] = {"cwd": cwd, "cancel": threading.Event(), "history": []}
        respond(req_id, {"sessionId": session_id})
    elif method == "session/load" and not NO_LOAD_SESSION:
        handle_load(req_id, params)
    elif method == "session/set_mode":
        respond(req_id, {})
    elif method == "session/set_model":
        respond(req_id, {})
    elif method == "session/set_config_option":
        respond(req_id, {"configOptions": []})
    elif method == "session/prompt":
        threading.Thread(target=handle_prompt, args=(req_id, params), daemon=True).start()
    else:
        respond_error(req_id, -32601, "Method not found: %s" % method)


def handle_load(req_id, params):
    session_id = params.get("sessionId")
    with _sessions_lock:
        known = _sessions.get(session_id)
    history = list(known["history"]) if known else None
    if history is None:
        stored = stored_session(session_id)
        if stored is None:
            respond_error(req_id, -32002, "Resource not found: session %s" % session_id)
            return
        history = stored.get("history") or []
    cwd = params.get("cwd") or os.getcwd()
    with _sessions_lock:
        _sessions[session_id] = {"cwd": cwd, "cancel": threading.Event(), "history": history}
    for entry in history:
        kind = "user_message_chunk" if entry.get("role") == "user" else "agent_message_chunk"
        session_update(
            session_id, {"sessionUpdate": kind, "content": {"type": "text", "text": entry.get("text", "")}}
        )
    respond(req_id, {})


def handle_notification(method, params):
    if method == "session/cancel":
        with _sessions_lock:
            sess = _sessions.get(params.get("sessionId"))
        if sess is not None:
            sess["cancel"].set()
    # Unknown notifications are ignored, as JSON-RPC requires.


def handle_response(msg):
    log_timing("response", msg.get("id"))
    with _pending_lock:
        slot = _pending.pop(msg.get("id"), None)
    if slot is None:
        log_err("response for unknown request id %r" % (msg.get("id"),))
        return
    slot[1] = msg
    slot[0].set()


def main():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()
        if not raw:
            break
        raw = raw.strip()
        if not raw:
            continue
        try:
            msg = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            log_err("ignoring non-JSON input line: %s" % exc)
            continue
        if not isinstance(msg, dict):
            log_err("ignoring non-object JSON-RPC message")
            continue
        method = msg.get("method")
        if isinstance(method, str):
            log_method(msg)
            params = msg.get("params")
            if not isinstance(params, dict):
                params = {}
            if "id" in msg and msg["id"] is not None:
                try:
                    handle_request(msg["id"], method, params)
                except Exception as exc:
                    log_err("request %s failed: %r" % (method, exc))
                    respond_error(msg["id"], -32603, "mock agent internal error: %s" % exc)
            else:
                handle_notification(method, params)
        elif "id" in msg and ("result" in msg or "error" in msg):
            handle_response(msg)
        else:
            log_err("ignoring unrecognised message")
    # stdin closed: the client is gone. Exit without waiting for prompt threads.
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
