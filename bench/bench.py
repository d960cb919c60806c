#!/usr/bin/env python3
"""TeleCoder benchmark driver (python3 stdlib only).

Starts `target/release/telecoder serve` daemons on free ports with throwaway data directories,
drives them over HTTP (and wrk, for f) with the project's mock ACP agent, and measures:

  a. start latency   POST /api/sessions latency, and POST returned -> first event (SSE)
  b. overhead        the bare agent run (bare mock agent; bare `acpx exec` with --runtime acpx)
                     vs the same prompt through the daemon (interleaved)
  c. footprint       daemon RSS / threads idle at start-up and after N finished sessions
  d. burst           N sessions submitted at once, default vs unlimited concurrency
  e. clone cost      "setting up workspace" -> "running <runtime>" event gap
  f. ingestion       CI events and signed GitHub webhook deliveries under wrk (mostly duplicates
                     and events nothing watches): requests/s, p50/p99, non-2xx, sessions created
  g. scale           a large history generated in SQLite: list/inbox/events latency, DB size, RSS
  h. streaming       one session streaming N chunks to many SSE clients: completeness, lag, RSS
  i. runtimes        native vs acpx runtime vs the bare mock agent, in one run: session latency,
                     overhead over the bare agent, CPU per session, bursts of 20 and 100 (wall,
                     peak RSS of the process tree), against the issue's targets
  j. workspaces      a generated ~200 MB repository: clone time and disk per session through the
                     mirror (remote URL), with hard links (local path) and a plain clone (no mirror)
  k. dashboard       10,000 sessions generated in SQLite: the dashboard's first page (HTML shell,
                     /ui/whoami, 50 rows) timed server-side, deep and filtered pages, first-load bytes
  l. approvals       policy ask, a person who answers at once: the agent's permission request ->
                     approval stored -> answered (POST) -> the agent hears the answer (mock agent
                     timestamps + server timestamps)
  m. notifications   a signed webhook to a local receiver: event committed -> receiver got it,
                     sessions one at a time and in a burst; one retried delivery (500 first)

Sections a-h run the daemon with --runtime (default native, the daemon's default).

Nothing is asserted: figures are printed as a table and written to
bench/results/<UTC timestamp>.json. Usually run through scripts/bench, which installs acpx and
builds the release binary first. See bench/README.md.
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import platform
import random
import re
import resource
import secrets
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "telecoder")
MOCK_AGENT = os.path.join(ROOT, "tests", "mock-agent", "mock_acp_agent.py")
AGENT_COMMAND = "python3 %s" % MOCK_AGENT
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TERMINAL_EVENTS = ("done", "error")
FINISHED_STATUSES = ("complete", "error", "cancelled")


def sse_line(line, kind, data, event_id):
    """Applies one line of a server-sent event block: appends a data line to `data` and
    returns the (kind, event_id) the line leaves; comments change nothing."""
    if line.startswith(":"):
        return kind, event_id
    field, _, value = line.partition(":")
    if value.startswith(" "):
        value = value[1:]
    if field == "event":
        kind = value
    elif field == "data":
        data.append(value)
    elif field == "id":
        event_id = value
    return kind, event_id


PROFILES = {
    "quick": {
        "start_n": 20,
        "overhead_n": 10,
        "footprint_n": 200,
        "footprint_seed_to": 0,
        "burst_sizes": [20],
        "ingest_s": 10,
        "scale_sessions": 10000,
        "scale_events": 100000,
        "scale_reps": 50,
        "scale_reps_all": 3,
        "stream_chunks": 2000,
        "stream_clients": 50,
        "runtimes_n": 10,
        "runtimes_bursts": [20, 100],
        "approvals_n": 20,
        "workspace_sessions": 5,
        "plain_clones": 2,
        "dashboard_sessions": 10000,
        "dashboard_reps": 30,
        "notify_n": 20,
        "notify_burst": 20,
    },
    "full": {
        "start_n": 50,
        "overhead_n": 30,
        # 1,000 real sessions through the API, then the database is seeded with copies of
        # finished rows up to 10,000 (see seed_finished_sessions) and the daemon restarted.
        "footprint_n": 1000,
        "footprint_seed_to": 10000,
        "burst_sizes": [20, 100],
        "ingest_s": 30,
        "scale_sessions": 100000,
        "scale_events": 1000000,
        "scale_reps": 100,
        "scale_reps_all": 3,
        "stream_chunks": 10000,
        "stream_clients": 100,
        "runtimes_n": 30,
        "runtimes_bursts": [20, 100],
        "approvals_n": 100,
        "workspace_sessions": 10,
        "plain_clones": 3,
        "dashboard_sessions": 10000,
        "dashboard_reps": 100,
        "notify_n": 50,
        "notify_burst": 100,
    },
}

# The runtime of the daemons of sections a-h (--runtime); section i runs both.
RUNTIME = {"name": "native"}


class BenchError(Exception):
    """A failure with a message meant for the person running the bench."""


def log(message):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# statistics helpers


def pct(values, p):
    """Percentile with linear interpolation (p in 0..100); None for no data."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values):
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def parse_ts(text):
    """RFC 3339 UTC with milliseconds ("2026-01-01T00:00:00.123Z") -> epoch ms."""
    if not text:
        return None
    text = text.rstrip("Z")
    if "." not in text:
        text += ".000"
    at = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
    return at.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000.0


# ---------------------------------------------------------------------------------------------
# /proc helpers


def proc_status(pid):
    """VmRSS / VmHWM (bytes) and Threads of one process, from /proc/<pid>/status."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
                elif key == "Threads":
                    out[key] = int(value)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def proc_table():
    """{pid: (ppid, rss_bytes, starttime)} for every process, from /proc/*/stat."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                raw = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        rest = raw.rsplit(")", 1)[-1].split()
        # rest[0] is field 3 (state): ppid = field 4, starttime = field 22, rss = field 24
        try:
            table[int(name)] = (int(rest[1]), int(rest[21]) * PAGE_SIZE, int(rest[19]))
        except (IndexError, ValueError):
            continue
    return table


def proc_cpu(pid):
    """(own CPU s, CPU s of reaped children) of one process, from /proc/<pid>/stat."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            rest = f.read().decode("utf-8", "replace").rsplit(")", 1)[-1].split()
    except OSError:
        return None, None
    tick = float(os.sysconf("SC_CLK_TCK"))
    # utime, stime, cutime, cstime are fields 14..17
    return (int(rest[11]) + int(rest[12])) / tick, (int(rest[13]) + int(rest[14])) / tick


def machine_busy_s():
    """CPU seconds all CPUs spent busy since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / float(os.sysconf("SC_CLK_TCK"))


def own_cpu_s():
    """CPU seconds of this script and everything it has reaped (daemons, their agents, acpx)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def descendants(root, table=None):
    table = table if table is not None else proc_table()
    children = {}
    for pid, (ppid, _rss, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_rss(root):
    """(RSS of root, sum of RSS of root and all descendants, number of processes)."""
    table = proc_table()
    if root not in table:
        return 0, 0, 0
    pids = [root] + descendants(root, table)
    return table[root][1], sum(table[p][1] for p in pids if p in table), len(pids)


class Sampler(threading.Thread):
    """Samples the daemon's RSS, its process tree's RSS and thread count every `period` s."""

    def __init__(self, pid, period=0.05, tree=True):
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.tree = tree  # False: the daemon alone (cheap enough for short periods)
        self.samples = []  # (t, daemon_rss, tree_rss, processes, threads)
        self._halt = threading.Event()

    def run(self):
        t0 = time.perf_counter()
        while not self._halt.is_set():
            if self.tree:
                rss, tree, procs = tree_rss(self.pid)
                threads = proc_status(self.pid).get("Threads", 0)
            else:
                status = proc_status(self.pid)
                rss, threads = status.get("VmRSS", 0), status.get("Threads", 0)
                tree, procs = rss, 1
            self.samples.append((time.perf_counter() - t0, rss, tree, procs, threads))
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join(5)
        return self.samples


# ---------------------------------------------------------------------------------------------
# HTTP client


class Api:
    def __init__(self, port, host="127.0.0.1"):
        self.host = host
        self.port = port

    def call(self, method, path, body=None, timeout=30):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            return resp.status, payload
        finally:
            conn.close()

    def get(self, path):
        status, payload = self.call("GET", path)
        if status != 200:
            raise BenchError("GET %s -> %s %s" % (path, status, payload))
        return payload

    def create(self, repo, prompt, agent="mock"):
        status, payload = self.call(
            "POST", "/api/sessions", {"repo": repo, "prompt": prompt, "agent": agent}
        )
        if status != 201 or not isinstance(payload, dict) or "id" not in payload:
            raise BenchError("POST /api/sessions -> %s %s" % (status, payload))
        return payload

    def sse(self, session_id, timeout=300):
        """Yields (perf_counter, type, data, id) per SSE event; ends after done/error."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(
                "GET",
                "/api/sessions/%s/events" % session_id,
                headers={"Accept": "text/event-stream"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise BenchError("SSE for %s -> %s %s" % (session_id, resp.status, resp.read()))
            kind, data, event_id = "message", [], None
            while True:
                line = resp.readline()
                if not line:
                    return
                line = line.decode("utf-8", "replace").rstrip("\r\n")
                if line == "":
                    if data or event_id is not None:
                        yield time.perf_counter(), kind, "\n".join(data), event_id
                        if kind in TERMINAL_EVENTS:
                            return
                    kind, data, event_id = "message", [], None
                    continue
                kind, event_id = sse_line(line, kind, data, event_id)
        finally:
            conn.close()

    def wait_idle(self, period=0.05, timeout=600):
        """Polls until no session is pending/running; returns the perf_counter it saw that."""
        deadline = time.monotonic() + timeout
        while True:
            active = self.get("/api/sessions?status=active")
            now = time.perf_counter()
            if not active:
                return now
            if time.monotonic() > deadline:
                raise BenchError(
                    "%d sessions still active after %d s (e.g. %s)"
                    % (len(active), timeout, active[0].get("id"))
                )
            time.sleep(period)


# ---------------------------------------------------------------------------------------------
# processes


class Cleanup:
    """Everything that must go away however the bench ends."""

    def __init__(self):
        self.daemons = []
        self.children = []  # Popen of bare acpx / bare agent runs
        self.dirs = []

    def run(self):
        for proc in list(self.children):
            kill_group(proc)
        for daemon in list(self.daemons):
            try:
                daemon.stop()
            except Exception as err:  # keep cleaning up the rest
                log("cleanup: %s" % err)
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)


CLEANUP = Cleanup()
# Unexpected behaviour seen while measuring (kept in the results, never fatal).
ANOMALIES = []
# WARN/ERROR lines of every daemon's log, collected when it stops.
DAEMON_WARNINGS = []


def kill_group(proc):
    """SIGKILL a child started with start_new_session and whatever is left in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def daemon_env(data_dir, acpx, extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECODER_")}
    env.pop("RUST_LOG", None)
    env.update(
        {
            "TELECODER_DATA_DIR": data_dir,
            "TELECODER_LISTEN_HOST": "127.0.0.1",
            "TELECODER_LISTEN_PORT": "0",
            "TELECODER_RUNTIME": RUNTIME["name"],
            "TELECODER_ACPX_COMMAND": acpx,
            "TELECODER_AGENT_MOCK_COMMAND": AGENT_COMMAND,
            "TELECODER_DEFAULT_AGENT": "mock",
            "TELECODER_LOG": "info",
        }
    )
    env.update(extra or {})
    return env


class Daemon:
    """One `telecoder serve` in its own session (process group), on a free port."""

    LISTEN_RE = re.compile(r"TeleCoder listening on http://([0-9.]+):(\d+)")

    def __init__(self, workdir, name, acpx, extra_env=None, data_dir=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.env = daemon_env(self.data_dir, acpx, extra_env)
        self.proc = None
        self.api = None
        self.startup_ms = None
        self.log_offset = 0

    def config(self):
        out = subprocess.run(
            [BINARY, "config", "--json"], env=self.env, capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise BenchError("telecoder config failed: %s" % out.stderr.strip())
        return json.loads(out.stdout)

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout=30):
        log_file = open(self.log_path, "ab")
        offset = log_file.tell()  # a restart appends to the same log: read only what is new
        t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                [BINARY, "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()
        CLEANUP.daemons.append(self)
        self.log_offset = offset
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            if self.proc.poll() is not None:
                raise BenchError(
                    "telecoder serve exited with code %s:\n%s" % (self.proc.returncode, self.log_tail())
                )
            if time.monotonic() > deadline:
                raise BenchError("telecoder serve did not log its address within %d s" % timeout)
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                found = self.LISTEN_RE.search(f.read().decode("utf-8", "replace"))
            if found:
                port = int(found.group(2))
            else:
                time.sleep(0.005)
        self.api = Api(port)
        while True:
            try:
                status, payload = self.api.call("GET", "/health", timeout=2)
                if status == 200 and isinstance(payload, dict) and payload.get("status") == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("/health did not answer ok within %d s" % timeout)
            time.sleep(0.005)
        self.startup_ms = (time.perf_counter() - t0) * 1000
        return self

    @property
    def pid(self):
        return self.proc.pid

    def footprint(self):
        status = proc_status(self.pid)
        rss, tree, procs = tree_rss(self.pid)
        return {
            "rss": status.get("VmRSS"),
            "hwm": status.get("VmHWM"),
            "threads": status.get("Threads"),
            "tree_rss": tree,
            "processes": procs,
        }

    def stop(self):
        """SIGTERM (graceful: the daemon kills its agents), then SIGKILL whatever is left."""
        if self.proc is None:
            return
        table = proc_table()
        leftovers = [(p, table[p][2]) for p in descendants(self.proc.pid, table)]
        if self.proc.poll() is not None:
            # Not expected: a negative code is the signal that ended it (e.g. -9, -11).
            message = "%s: the daemon (pid %d) exited on its own with code %s; its log ends with:\n%s" % (
                os.path.basename(self.dir), self.proc.pid, self.proc.returncode, self.log_tail(20))
            ANOMALIES.append(message)
            log("warning: " + message)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Agents run in their own process groups; kill any that outlived the daemon (only if
        # the pid still belongs to the same process, judged by its start time).
        table = proc_table()
        for pid, start in leftovers:
            if pid in table and table[pid][2] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            with open(self.log_path, errors="replace") as f:
                f.seek(self.log_offset)
                DAEMON_WARNINGS.extend(
                    "%s: %s" % (os.path.basename(self.dir), line.rstrip())
                    for line in f
                    if " WARN " in line or " ERROR " in line
                )
        except OSError:
            pass
        if self in CLEANUP.daemons:
            CLEANUP.daemons.remove(self)
        self.proc = None


# ---------------------------------------------------------------------------------------------
# single runs


def run_session(api, repo, prompt, fetch_events=True):
    """POST, then follow SSE until done/error. Client times are perf_counter seconds."""
    t0 = time.perf_counter()
    session = api.create(repo, prompt)
    t_posted = time.perf_counter()
    first = first_output = terminal = None
    kinds = []
    for t, kind, _data, _id in api.sse(session["id"]):
        kinds.append(kind)
        if first is None:
            first = t
        if kind == "output" and first_output is None:
            first_output = t
        if kind in TERMINAL_EVENTS:
            terminal = t
    if terminal is None:
        # Not expected: record it, then finish the measurement by polling the stored events.
        stored = api.get("/api/sessions/%s/events" % session["id"])
        ANOMALIES.append(
            "SSE for %s ended without done/error after %s; stored then: %s"
            % (session["id"], kinds, [e["type"] for e in stored])
        )
        log("warning: " + ANOMALIES[-1])
        deadline = time.monotonic() + 300
        while terminal is None:
            stored = api.get("/api/sessions/%s/events" % session["id"])
            if any(e["type"] in TERMINAL_EVENTS for e in stored):
                terminal = time.perf_counter()
                kinds.append([e["type"] for e in stored][-1])
                first = first or terminal
            elif time.monotonic() > deadline:
                raise BenchError("session %s did not finish within 300 s" % session["id"])
            else:
                time.sleep(0.005)
    run = {
        "id": session["id"],
        "post_ms": (t_posted - t0) * 1000,
        "first_event_ms": (first - t_posted) * 1000,
        "first_output_ms": (first_output - t0) * 1000 if first_output else None,
        "end_to_end_ms": (terminal - t0) * 1000,
        "terminal": kinds[-1],
    }
    if fetch_events:
        run["server"] = server_phases(api, session["id"])
    return run


def server_phases(api, session_id):
    """Phase durations from the server's own timestamps (ms resolution)."""
    session = api.get("/api/sessions/%s" % session_id)
    events = api.get("/api/sessions/%s/events" % session_id)
    created = parse_ts(session.get("createdAt"))
    at = {}
    for event in events:
        ts = parse_ts(event["createdAt"])
        key = event["type"]
        if event["type"] == "status":
            if event["data"] == "setting up workspace":
                key = "setup"
            elif event["data"].startswith("running "):
                key = "running"
        at.setdefault("first", ts)
        at.setdefault(key, ts)
    end = at.get("done", at.get("error"))

    def gap(a, b):
        return None if a is None or b is None else b - a

    return {
        "status": session.get("status"),
        "created_to_first_event": gap(created, at.get("first")),
        "clone": gap(at.get("setup"), at.get("running")),
        "running_to_first_output": gap(at.get("running"), at.get("output")),
        "first_output_to_done": gap(at.get("output"), end),
        "created_to_done": gap(created, end),
        "queued": gap(created, parse_ts(session.get("startedAt"))),
    }


def run_bare_acpx(acpx, cwd, prompt):
    """`acpx exec` the way the daemon runs it (observe policy), timed from spawn to exit."""
    argv = [
        acpx, "--cwd", cwd, "--approve-reads", "--timeout", "60", "--format", "json",
        "--json-strict", "--agent", AGENT_COMMAND, "exec", prompt,
    ]
    with tempfile.TemporaryFile() as err:
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            start_new_session=True,
        )
        CLEANUP.children.append(proc)
        first_output = None
        text = []
        try:
            for line in proc.stdout:
                if first_output is None and b"agent_message_chunk" in line:
                    first_output = time.perf_counter()
                text.append(line)
            rc = proc.wait(120)
            t1 = time.perf_counter()
        finally:
            kill_group(proc)
            proc.stdout.close()
            CLEANUP.children.remove(proc)
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc != 0:
            err.seek(0)
            raise BenchError("bare acpx exited %s: %s" % (rc, err.read().decode()[-2000:]))
        if b'"text":"hi"' not in b"".join(text):
            raise BenchError("bare acpx did not answer 'hi': %r" % b"".join(text)[-500:])
    return {
        "end_to_end_ms": (t1 - t0) * 1000,
        "first_output_ms": (first_output - t0) * 1000 if first_output else None,
        "cpu_ms": (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) * 1000,
    }


class BareAgent:
    """The mock agent without TeleCoder: a minimal ACP client (stdlib) spawns it in `cwd`,
    initializes, opens a session, sends one prompt, reads to the answer, closes stdin and waits
    for the agent to exit, the way a client would run it by hand."""

    CAPABILITIES = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}

    def __init__(self, cwd):
        self.cwd = cwd
        self.proc = None
        self.next_id = 0

    def send(self, method, params):
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.next_id

    def answer(self, request_id, on_update=None):
        for raw in self.proc.stdout:
            message = json.loads(raw)
            if message.get("id") == request_id and "method" not in message:
                if "error" in message:
                    raise BenchError("bare agent answered %s" % message["error"])
                return message.get("result") or {}
            if on_update and message.get("method") == "session/update":
                on_update(message["params"]["update"])
        raise BenchError("bare agent closed its output before answering")

    def run(self, prompt):
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            ["python3", MOCK_AGENT], cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        CLEANUP.children.append(self.proc)
        text, first = [], []

        def on_update(update):
            if update.get("sessionUpdate") == "agent_message_chunk":
                first.append(time.perf_counter())
                text.append(update.get("content", {}).get("text", ""))

        try:
            self.answer(self.send("initialize", {"protocolVersion": 1, "clientCapabilities": self.CAPABILITIES}))
            session = self.answer(self.send("session/new", {"cwd": self.cwd, "mcpServers": []}))
            prompt_params = {"sessionId": session["sessionId"], "prompt": [{"type": "text", "text": prompt}]}
            self.answer(self.send("session/prompt", prompt_params), on_update)
            self.proc.stdin.close()
            self.proc.wait(60)
            t1 = time.perf_counter()
        finally:
            kill_group(self.proc)
            self.proc.stdout.close()
            CLEANUP.children.remove(self.proc)
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if "".join(text) != "hi":
            raise BenchError("bare agent did not answer 'hi': %r" % "".join(text))
        return {
            "end_to_end_ms": (t1 - t0) * 1000,
            "first_output_ms": (first[0] - t0) * 1000 if first else None,
            "cpu_ms": (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) * 1000,
        }


def run_bare(acpx, cwd, prompt):
    """The baseline of (b): the agent run without the daemon, as the runtime under test runs it."""
    if RUNTIME["name"] == "acpx":
        return run_bare_acpx(acpx, cwd, prompt)
    return BareAgent(cwd).run(prompt)


# ---------------------------------------------------------------------------------------------
# sections


def bench_start_latency(api, repo, n):
    log("a/e: %d sequential sessions '@mock say hi'" % n)
    runs = [run_session(api, repo, "@mock say hi") for _ in range(n)]
    bad = [r for r in runs if r["server"]["status"] != "complete"]
    if bad:
        raise BenchError("session %s ended %s" % (bad[0]["id"], bad[0]["server"]["status"]))

    def col(key):
        return [r[key] for r in runs if r.get(key) is not None]

    def server_col(key):
        return [r["server"][key] for r in runs if r["server"].get(key) is not None]

    return {
        "n": n,
        "post_ms": summary(col("post_ms")),
        "first_event_ms": summary(col("first_event_ms")),
        "server_created_to_first_event_ms": summary(server_col("created_to_first_event")),
        "end_to_end_ms": summary(col("end_to_end_ms")),
        "phases_ms": {
            key: summary(server_col(key))
            for key in ("clone", "running_to_first_output", "first_output_to_done", "created_to_done")
        },
        "clone_ms": summary(server_col("clone")),
        "runs": runs,
    }


def bench_overhead(api, acpx, repo, clone, n):
    log("b: %d x bare run vs daemon, interleaved (+1 warm-up each)" % n)
    run_bare(acpx, clone, "@mock say hi")
    run_session(api, repo, "@mock say hi", fetch_events=False)
    bare, daemon = [], []
    for i in range(n):
        # alternate which kind goes first so neither always runs on a "warmer" machine
        order = ("bare", "daemon") if i % 2 == 0 else ("daemon", "bare")
        for kind in order:
            if kind == "bare":
                bare.append(run_bare(acpx, clone, "@mock say hi"))
            else:
                daemon.append(run_session(api, repo, "@mock say hi", fetch_events=False))
    failed = [r for r in daemon if r["terminal"] != "done"]
    if failed:
        raise BenchError("session %s ended with %s" % (failed[0]["id"], failed[0]["terminal"]))
    bare_med = statistics.median(r["end_to_end_ms"] for r in bare)
    daemon_med = statistics.median(r["end_to_end_ms"] for r in daemon)
    return {
        "n": n,
        "baseline": "bare acpx exec" if RUNTIME["name"] == "acpx" else "bare mock agent",
        "bare_ms": summary([r["end_to_end_ms"] for r in bare]),
        "daemon_ms": summary([r["end_to_end_ms"] for r in daemon]),
        "bare_cpu_ms": summary([r["cpu_ms"] for r in bare]),
        "bare_first_output_ms": summary([r["first_output_ms"] for r in bare if r["first_output_ms"]]),
        "daemon_first_output_ms": summary(
            [r["first_output_ms"] for r in daemon if r["first_output_ms"]]
        ),
        "overhead_ms": daemon_med - bare_med,
        "ratio": daemon_med / bare_med,
        "bare_runs": bare,
        "daemon_runs": daemon,
    }


def seed_finished_sessions(db_path, target):
    """Full run only: copies finished session rows (and their events) under fresh ids until the
    database holds `target` sessions. The daemon must be stopped. The copies are what the API
    produced for real sessions, so they look exactly like finished history."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        cols = [row[1] for row in conn.execute("PRAGMA table_info(sessions)")]
        existing = {row[0] for row in conn.execute("SELECT id FROM sessions")}
        templates = [
            row[0]
            for row in conn.execute("SELECT id FROM sessions WHERE status = 'complete' LIMIT 50")
        ]
        if not templates:
            raise BenchError("no complete session to copy while seeding")
        todo = target - len(existing)
        col_list = ", ".join(cols)
        # fresh id and branch; every other column is copied from a real finished session
        fresh = ("id", "branch")
        select = ", ".join("?" if c in fresh else c for c in cols)
        with conn:
            for i in range(max(0, todo)):
                new_id = secrets.token_hex(4)
                while new_id in existing:
                    new_id = secrets.token_hex(4)
                existing.add(new_id)
                template = templates[i % len(templates)]
                params = [new_id if c == "id" else "telecoder/" + new_id for c in cols if c in fresh]
                conn.execute(
                    "INSERT INTO sessions (%s) SELECT %s FROM sessions WHERE id = ?"
                    % (col_list, select),
                    params + [template],
                )
                conn.execute(
                    "INSERT INTO events (session_id, type, data, created_at) "
                    "SELECT ?, type, data, created_at FROM events WHERE session_id = ? ORDER BY id",
                    (new_id, template),
                )
        return max(0, todo)
    finally:
        conn.close()


def bench_footprint(workdir, acpx, repo, profile):
    n = profile["footprint_n"]
    log("c: idle footprint, then %d sessions '@mock say x' (default concurrency)" % n)
    daemon = Daemon(workdir, "footprint", acpx).start()
    result = {"startup_ms": daemon.startup_ms}
    time.sleep(2)
    result["idle"] = daemon.footprint()
    sampler = Sampler(daemon.pid, period=0.25)
    sampler.start()
    own0, children0 = proc_cpu(daemon.pid)
    t0 = time.perf_counter()
    ids = [daemon.api.create(repo, "@mock say x")["id"] for _ in range(n)]
    t_submitted = time.perf_counter()
    t_idle = daemon.api.wait_idle(period=0.25, timeout=max(600, n * 3))
    samples = sampler.stop()
    time.sleep(0.5)  # let the last agent be reaped, so its CPU time is counted
    own1, children1 = proc_cpu(daemon.pid)
    errors = daemon.api.get("/api/sessions?status=error")
    result.update(
        {
            "sessions": n,
            "submit_s": t_submitted - t0,
            "drain_s": t_idle - t0,
            "sessions_per_s": n / (t_idle - t0),
            "errors": len(errors),
            # daemon's own CPU, and CPU of the reaped agent processes (acpx/node, the agent, git)
            "daemon_cpu_ms_per_session": (own1 - own0) * 1000 / n,
            "agents_cpu_ms_per_session": (children1 - children0) * 1000 / n,
            "peak_rss_during": max(s[1] for s in samples) if samples else None,
            "peak_tree_rss_during": max(s[2] for s in samples) if samples else None,
        }
    )
    time.sleep(2)
    result["after"] = daemon.footprint()
    result["after"]["list_ms"] = timed_get(daemon.api, "/api/sessions")
    result["after"]["inbox_ms"] = timed_get(daemon.api, "/api/inbox?limit=200")
    if len(ids) != n:
        raise BenchError("submitted %d of %d sessions" % (len(ids), n))
    seed_to = profile["footprint_seed_to"]
    if seed_to:
        daemon.stop()
        seeded = seed_finished_sessions(os.path.join(daemon.data_dir, "telecoder.sqlite"), seed_to)
        log("c: seeded %d finished sessions directly into SQLite (total %d); restarting" % (seeded, seed_to))
        daemon = Daemon(workdir, "footprint", acpx, data_dir=daemon.data_dir).start()
        time.sleep(2)
        restarted = daemon.footprint()
        restarted["startup_ms"] = daemon.startup_ms
        restarted["list_ms"] = timed_get(daemon.api, "/api/sessions")
        restarted["inbox_ms"] = timed_get(daemon.api, "/api/inbox?limit=200")
        for _ in range(20):
            daemon.api.create(repo, "@mock say x")
        daemon.api.wait_idle(period=0.25)
        time.sleep(2)
        after_more = daemon.footprint()
        result["seeded"] = {
            "rows_inserted": seeded,
            "total_sessions": seed_to,
            "restarted_idle": restarted,
            "after_20_more": after_more,
        }
    daemon.stop()
    return result


def timed_get(api, path):
    t0 = time.perf_counter()
    api.get(path)
    return (time.perf_counter() - t0) * 1000


def release_burst(daemon, repo, prompt, n):
    """Submits n sessions at once (n threads released by one barrier) while a Sampler follows
    the daemon's process tree. Returns (release time, all submitted time, ids, sampler)."""
    barrier = threading.Barrier(n + 1)
    ids, errors = [None] * n, []

    def submit(i):
        barrier.wait()
        try:
            ids[i] = daemon.api.create(repo, prompt)["id"]
        except Exception as err:  # reported below
            errors.append(str(err))

    threads = [threading.Thread(target=submit, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    sampler = Sampler(daemon.pid, period=0.05)
    sampler.start()
    t0 = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join(60)
    t_submitted = time.perf_counter()
    if errors:
        sampler.stop()
        raise BenchError("burst submission failed: %s" % errors[0])
    return t0, t_submitted, ids, sampler


def bench_burst(workdir, acpx, repo, n, limit_label, extra_env):
    log("d: burst of %d '@mock sleep 1', concurrency %s" % (n, limit_label))
    daemon = Daemon(workdir, "burst-%d-%s" % (n, limit_label), acpx, extra_env)
    limit = daemon.config().get("TELECODER_MAX_CONCURRENT_SESSIONS")
    daemon.start()
    time.sleep(1)
    idle = daemon.footprint()
    t0, t_submitted, ids, sampler = release_burst(daemon, repo, "@mock sleep 1", n)
    t_done = daemon.api.wait_idle(period=0.05, timeout=600)
    samples = sampler.stop()
    sessions = [daemon.api.get("/api/sessions/%s" % sid) for sid in ids]
    clones = []
    for sid in ids:
        phases = server_phases(daemon.api, sid)
        if phases["clone"] is not None:
            clones.append(phases["clone"])
    created = [parse_ts(s["createdAt"]) for s in sessions]
    finished = [parse_ts(s["finishedAt"]) for s in sessions if s.get("finishedAt")]
    queued = [parse_ts(s["startedAt"]) - parse_ts(s["createdAt"]) for s in sessions if s.get("startedAt")]
    wall = t_done - t0
    result = {
        "sessions": n,
        "limit": limit_label,
        "max_concurrent": int(limit) if limit else None,
        "complete": sum(1 for s in sessions if s["status"] == "complete"),
        "failed": sum(1 for s in sessions if s["status"] != "complete"),
        "submit_s": t_submitted - t0,
        "wall_s": wall,
        "server_wall_s": (max(finished) - min(created)) / 1000 if finished else None,
        "sessions_per_s": n / wall,
        "queued_ms": summary(queued),
        "clone_ms": summary(clones),
        "idle": idle,
        "peak_rss": max(s[1] for s in samples),
        "peak_tree_rss": max(s[2] for s in samples),
        "peak_processes": max(s[3] for s in samples),
        "peak_threads": max(s[4] for s in samples),
        "hwm_after": proc_status(daemon.pid).get("VmHWM"),
        "samples": [[round(s[0], 3), s[1], s[2], s[3], s[4]] for s in samples],
    }
    daemon.stop()
    return result


# ---------------------------------------------------------------------------------------------
# i. runtimes: native vs acpx vs the bare mock agent

RUNTIMES = ("native", "acpx")
# The issue's targets (2-core machine): native / acpx wall of a 20-burst, native overhead over
# the bare agent (p50), CPU per session (daemon + everything it started), native / acpx peak
# RSS of the process tree during the 20-burst.
TARGETS = {"burst20_wall_ratio": 0.15, "overhead_ms": 20.0, "cpu_ms": 300.0, "burst20_rss_ratio": 0.2}


def daemon_cpu_s(daemon):
    """(daemon's own CPU s, CPU s of the processes it reaped: agents, acpx/node, git)."""
    return proc_cpu(daemon.pid)


def runtime_session(daemon, repo):
    """One '@mock say hi' through `daemon`, with the CPU it cost (the daemon is otherwise idle,
    and it reaps the agent and git before it reports the session done)."""
    own0, kids0 = daemon_cpu_s(daemon)
    run = run_session(daemon.api, repo, "@mock say hi", fetch_events=False)
    if run["terminal"] != "done":
        raise BenchError("session %s ended with %s" % (run["id"], run["terminal"]))
    own1, kids1 = daemon_cpu_s(daemon)
    run["daemon_cpu_ms"] = (own1 - own0) * 1000
    run["cpu_ms"] = ((own1 - own0) + (kids1 - kids0)) * 1000
    return run


def runtime_burst_daemon(workdir, acpx, repo, runtime, n):
    """n sessions '@mock say hi' at once (default concurrency limit) on a fresh daemon."""
    daemon = Daemon(workdir, "i-burst-%d-%s" % (n, runtime), acpx, {"TELECODER_RUNTIME": runtime}).start()
    try:
        time.sleep(0.5)
        own0, kids0 = daemon_cpu_s(daemon)
        t0, _, ids, sampler = release_burst(daemon, repo, "@mock say hi", n)
        t_done = daemon.api.wait_idle(period=0.02, timeout=900)
        samples = sampler.stop()
        own1, kids1 = daemon_cpu_s(daemon)
        sessions = [daemon.api.get("/api/sessions/%s" % sid) for sid in ids]
    finally:
        daemon.stop()
    return {
        "kind": runtime,
        "sessions": n,
        "complete": sum(1 for s in sessions if s["status"] == "complete"),
        "wall_s": t_done - t0,
        "cpu_ms_per_session": ((own1 - own0) + (kids1 - kids0)) * 1000 / n,
        "peak_tree_rss": max(s[2] for s in samples),
        "peak_processes": max(s[3] for s in samples),
    }


def runtime_burst_bare(clone, n, width):
    """n bare mock agent runs, `width` at a time (the daemon's default limit), from threads of
    this script; the tree sampled is this script's children (its own RSS left out)."""
    sampler = Sampler(os.getpid(), period=0.05)
    sampler.start()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    todo = list(range(n))
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            try:
                BareAgent(clone).run("@mock say hi")
            except Exception as err:  # reported below
                errors.append(str(err))

    t0 = time.perf_counter()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(width)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(600)
    wall = time.perf_counter() - t0
    samples = sampler.stop()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if errors:
        raise BenchError("bare burst failed: %s" % errors[0])
    return {
        "kind": "bare",
        "sessions": n,
        "complete": n,
        "wall_s": wall,
        "cpu_ms_per_session": (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) * 1000 / n,
        "peak_tree_rss": max(s[2] - s[1] for s in samples),
        "peak_processes": max(s[3] - 1 for s in samples),
    }


def bench_runtimes(workdir, acpx, repo, clone, profile):
    n = profile["runtimes_n"]
    kinds = ("bare",) + RUNTIMES
    log("i: %d x bare mock agent / native / acpx, interleaved (+1 warm-up each)" % n)
    daemons = {}
    try:
        for runtime in RUNTIMES:
            daemons[runtime] = Daemon(workdir, "i-" + runtime, acpx, {"TELECODER_RUNTIME": runtime}).start()
        width = int(daemons["native"].config()["maxConcurrentSessions"])
        time.sleep(0.5)

        def one(kind):
            if kind == "bare":
                return BareAgent(clone).run("@mock say hi")
            return runtime_session(daemons[kind], repo)

        for kind in kinds:
            one(kind)
        runs = {kind: [] for kind in kinds}
        for i in range(n):
            # rotate the order so that no kind always runs first (or on a warmer machine)
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
            for kind in order:
                runs[kind].append(one(kind))
    finally:
        for daemon in daemons.values():
            daemon.stop()
    latency = {kind: summary([r["end_to_end_ms"] for r in runs[kind]]) for kind in kinds}
    cpu = {kind: summary([r["cpu_ms"] for r in runs[kind]]) for kind in kinds}
    result = {
        "n": n,
        "width": width,
        "latency_ms": latency,
        "first_output_ms": {
            kind: summary([r["first_output_ms"] for r in runs[kind] if r.get("first_output_ms")]) for kind in kinds
        },
        "cpu_ms": cpu,
        "daemon_cpu_ms": {kind: summary([r["daemon_cpu_ms"] for r in runs[kind]]) for kind in RUNTIMES},
        "overhead_ms": {kind: latency[kind]["p50"] - latency["bare"]["p50"] for kind in RUNTIMES},
        "runs": runs,
        "bursts": [],
    }
    for size in profile["runtimes_bursts"]:
        log("i: burst of %d '@mock say hi': bare (%d at a time), native, acpx" % (size, width))
        result["bursts"].append(runtime_burst_bare(clone, size, width))
        for runtime in RUNTIMES:
            result["bursts"].append(runtime_burst_daemon(workdir, acpx, repo, runtime, size))
    by = {(b["kind"], b["sessions"]): b for b in result["bursts"]}
    native20, acpx20 = by.get(("native", 20)), by.get(("acpx", 20))
    checks = {
        "overhead_ms": result["overhead_ms"]["native"],
        "cpu_ms": cpu["native"]["p50"],
    }
    if native20 and acpx20:
        checks["burst20_wall_ratio"] = native20["wall_s"] / acpx20["wall_s"]
        checks["burst20_rss_ratio"] = native20["peak_tree_rss"] / acpx20["peak_tree_rss"]
    result["targets"] = {
        key: {"value": value, "target": TARGETS[key], "met": value <= TARGETS[key]}
        for key, value in checks.items()
    }
    return result


# ---------------------------------------------------------------------------------------------
# l. approvals (policy ask)


def timing_entries(path):
    """The mock agent's MOCK_AGENT_TIMING lines."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def bench_approvals(workdir, acpx, repo, profile):
    """One approval per session (policy ask), answered as soon as it is seen; each hop timed."""
    n = profile["approvals_n"]
    timing = os.path.join(workdir, "l-timing.jsonl")
    log("l: %d approvals under policy ask (native runtime), answered at once" % n)
    daemon = Daemon(workdir, "l-approvals", acpx, {"TELECODER_RUNTIME": "native", "MOCK_AGENT_TIMING": timing})
    daemon.start()
    api = daemon.api
    hops = {key: [] for key in ("asked_to_visible", "post", "sent_to_resumed", "asked_to_resumed", "pending_server")}
    try:
        for i in range(n):
            status, session = api.call("POST", "/api/sessions", {
                "repo": repo, "prompt": "@mock write l%d.txt x" % i, "agent": "mock", "policy": "ask"})
            if status != 201:
                raise BenchError("POST /api/sessions (ask) -> %s %s" % (status, session))
            deadline = time.monotonic() + 60
            while True:
                pending = api.get("/api/approvals?status=pending&session=%s" % session["id"])
                if pending:
                    approval, seen = pending[0], time.time() * 1000.0
                    break
                if time.monotonic() > deadline:
                    raise BenchError("no approval for session %s within 60 s" % session["id"])
                time.sleep(0.002)
            sent, t0 = time.time() * 1000.0, time.perf_counter()
            status, decided = api.call("POST", "/api/approvals/%s" % approval["id"], {"decision": "allow"})
            post_ms = (time.perf_counter() - t0) * 1000
            if status != 200:
                raise BenchError("POST /api/approvals/%s -> %s %s" % (approval["id"], status, decided))
            while api.get("/api/sessions/%s" % session["id"])["status"] in ("pending", "running"):
                time.sleep(0.01)
            entries = timing_entries(timing)
            request = [e for e in entries if e["event"] == "request" and e["method"] == "session/request_permission"][-1]
            response = [e for e in entries if e["event"] == "response" and e["id"] == request["id"]
                        and e["pid"] == request["pid"]][-1]
            # The mock's timestamps and the driver's are the same wall clock (time.time()).
            asked, heard = request["ts"] * 1000.0, response["ts"] * 1000.0
            hops["asked_to_visible"].append(seen - asked)
            hops["post"].append(post_ms)
            hops["sent_to_resumed"].append(heard - sent)
            hops["asked_to_resumed"].append(heard - asked)
            hops["pending_server"].append(parse_ts(decided["decidedAt"]) - parse_ts(approval["createdAt"]))
    finally:
        daemon.stop()
    return {"n": n, "hops_ms": {key: summary(values) for key, values in hops.items()}}


def approval_rows(add, approvals):
    """Rows of section l."""
    labels = (
        ("asked_to_visible", "l agent asks -> approval stored, seen by GET", "polled every 2 ms: an upper bound"),
        ("post", "POST /api/approvals/:id round trip", "answer stored, then the agent told"),
        ("sent_to_resumed", "answer sent -> agent hears it", "includes the POST's own work"),
        ("pending_server", "createdAt -> decidedAt (server)", "the 'person' is the poller; 1 ms resolution"),
        ("asked_to_resumed", "l whole round trip, answered at once", "agent asks -> agent resumes"),
    )
    for key, label, note in labels:
        s = approvals["hops_ms"][key]
        add(0 if label.startswith("l ") else 1, label, ms(s["p50"]), ms(s["p99"]), "n=%d; %s" % (approvals["n"], note))


# ---------------------------------------------------------------------------------------------
# f. ingestion under wrk

WEBHOOK_SECRET = "bench-webhook-secret"
# The watches name a GitHub repository (webhook payloads only carry owner/name). Sessions clone
# it from GitHub, so the daemon of (f) gets a git `insteadOf` rule (GIT_CONFIG_* variables)
# that points this URL at the local bench repository: nothing leaves the machine.
GITHUB_REPO = "octo-org/octo-repo"
GITHUB_CLONE_URL = "https://github.com/octo-org/octo-repo.git"
WEBHOOK_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "github", "workflow_run_failure.json")

# Rotates through pre-built requests; an entry with `fresh` gets a new X-GitHub-Delivery per
# request (the signature covers the body only, so the header may change). Counts the status
# codes per thread and prints one JSON line at the end.
WRK_SCRIPT = r"""
-- generated by bench/bench.py
local entries = {
__ENTRIES__
}
local threads = {}
local next_tid = 0
function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end
function init(args)
  n = 0
  codes = {}
  prebuilt = {}
  for i, e in ipairs(entries) do
    if not e.fresh then prebuilt[i] = wrk.format("POST", e.path, e.headers, e.body) end
  end
end
function request()
  n = n + 1
  local i = (n - 1) % #entries + 1
  local e = entries[i]
  if e.fresh then
    e.headers["X-GitHub-Delivery"] = e.fresh .. "-" .. tid .. "-" .. n
    return wrk.format("POST", e.path, e.headers, e.body)
  end
  return prebuilt[i]
end
function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    if c then
      for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%d": %d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %.0f, "p50": %.0f, "p90": %.0f, "p99": %.0f, "p999": %.0f, ' ..
    '"max": %.0f, "mean": %.1f, "stdev": %.1f}, "codes": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, latency.stdev,
    table.concat(parts, ", ")))
end
"""


def lua_string(text):
    """A Lua string literal for any text (decimal escapes for everything unusual)."""
    out = []
    for byte in text.encode():
        if byte in (0x22, 0x5C) or byte < 0x20 or byte > 0x7E:
            out.append("\\%03d" % byte)
        else:
            out.append(chr(byte))
    return '"' + "".join(out) + '"'


def write_wrk_script(path, entries):
    """entries: [{path, headers, body, fresh?}] -> a wrk Lua script rotating through them."""
    lines = []
    for e in entries:
        headers = ", ".join("[%s] = %s" % (lua_string(k), lua_string(v)) for k, v in e["headers"].items())
        fresh = lua_string(e["fresh"]) if e.get("fresh") else "nil"
        lines.append("  {path = %s, headers = {%s}, body = %s, fresh = %s}," % (
            lua_string(e["path"]), headers, lua_string(e["body"]), fresh))
    with open(path, "w") as f:
        f.write(WRK_SCRIPT.replace("__ENTRIES__", "\n".join(lines)))
    return path


def ci_entries():
    """Bodies for POST /api/watch-events/ci: 3 distinct matching failures (each sent again and
    again: duplicates after the first), other repositories, another workflow, a success."""

    def body(repo, workflow, run_id, conclusion="failure", branch="main"):
        return json.dumps({
            "repo": repo, "workflow": workflow, "branch": branch, "runId": run_id,
            "runUrl": "https://github.com/%s/actions/runs/%d" % (repo, run_id),
            "sha": "%040x" % run_id, "status": "completed", "conclusion": conclusion,
            "summary": "bench: %s %s run %d %s" % (repo, workflow, run_id, conclusion),
        })

    kinds = {
        "m1": body(GITHUB_REPO, "Build", 9100001),
        "m2": body(GITHUB_REPO, "Build", 9100002),
        "m3": body(GITHUB_REPO, "Build", 9100003),
        "o1": body("other-org/api", "Build", 9100101),
        "o2": body("other-org/web", "Build", 9100102),
        "o3": body("/srv/git/other", "Build", 9100103),
        "w1": body(GITHUB_REPO, "Lint", 9100201),
        "w2": body(GITHUB_REPO, "Docs", 9100202),
        "s1": body(GITHUB_REPO, "Build", 9100301, conclusion="success"),
    }
    order = ["m1", "o1", "m2", "w1", "m3", "o2", "m1", "s1", "m2", "o3", "m3", "w2"]
    headers = {"Content-Type": "application/json"}
    entries = [{"path": "/api/watch-events/ci", "headers": dict(headers), "body": kinds[k], "kind": k} for k in order]
    return entries, 3


def webhook_entries(run_tag):
    """Signed workflow_run deliveries: 3 distinct matching failures with fixed delivery ids
    (redeliveries after the first), a fixed-id redelivery of an unwatched event, and unwatched
    events with a fresh delivery id per request (another repository, another workflow, a
    success, an action that is not `completed`)."""
    with open(WEBHOOK_FIXTURE) as f:
        base = json.load(f)

    def payload(run_id, repo=GITHUB_REPO, workflow="Build", conclusion="failure", action="completed"):
        p = json.loads(json.dumps(base))
        owner, name = repo.split("/")
        p["action"] = action
        run = p["workflow_run"]
        run.update({"id": run_id, "name": workflow, "conclusion": conclusion,
                    "html_url": "https://github.com/%s/actions/runs/%d" % (repo, run_id)})
        if action != "completed":
            run.update({"status": "in_progress", "conclusion": None})
        run["repository"]["full_name"] = repo
        p["workflow"]["name"] = workflow
        p["repository"].update({"name": name, "full_name": repo,
                                "html_url": "https://github.com/" + repo,
                                "clone_url": "https://github.com/%s.git" % repo})
        p["repository"]["owner"]["login"] = owner
        return json.dumps(p, separators=(",", ":"))

    kinds = {
        # kind: (body, fixed delivery id or None for a fresh one per request)
        "A": (payload(9200001), "%s-match-1" % run_tag),
        "B": (payload(9200002), "%s-match-2" % run_tag),
        "C": (payload(9200003), "%s-match-3" % run_tag),
        "G": (payload(9200101, repo="other-org/api"), "%s-unwatched-redelivered" % run_tag),
        "D": (payload(9200102, repo="other-org/web"), None),
        "E": (payload(9200201, workflow="Lint"), None),
        "H": (payload(9200301, conclusion="success"), None),
        "F": (payload(9200401, action="requested"), None),
    }
    order = ["A", "D", "B", "G", "E", "C", "F", "A", "G", "H", "B", "D"]
    entries = []
    for k in order:
        body, delivery = kinds[k]
        signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": delivery or "",
            "X-Hub-Signature-256": signature,
        }
        entries.append({"path": "/webhooks/github", "headers": headers, "body": body, "kind": k,
                        "fresh": None if delivery else "%s-%s" % (run_tag, k)})
    return entries, 3


def run_wrk(script, url, seconds, threads=2, connections=16):
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--timeout", "10s",
            "--latency", "-s", script, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise BenchError("wrk failed (%s): %s" % (out.returncode, (out.stderr or out.stdout)[-1000:]))
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON "):])
            result["text"] = out.stdout.replace(line, "").strip()
            result["argv"] = " ".join(argv[:-1])
            return result
    raise BenchError("wrk printed no summary: %s" % out.stdout[-1000:])


def delivery_states(db_path):
    """{state: count} of the stored webhook deliveries (read-only, beside the running daemon)."""
    conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state").fetchall())
    finally:
        conn.close()


def bench_ingestion(workdir, acpx, repo, profile):
    seconds = profile["ingest_s"]
    if not shutil.which("wrk"):
        message = "f skipped: wrk is not installed (apt-get install wrk; scripts/bench installs it when run as root)"
        log(message)
        ANOMALIES.append(message)
        return {"skipped": message}
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"(\d+)\.(\d+)", git_version)
    if not found or (int(found.group(1)), int(found.group(2))) < (2, 31):
        # GIT_CONFIG_COUNT/KEY/VALUE (the insteadOf rule below) need git 2.31; without it the
        # watch sessions would try to clone from GitHub.
        message = "f skipped: needs git >= 2.31 (GIT_CONFIG_* variables), found %r" % git_version.strip()
        log(message)
        ANOMALIES.append(message)
        return {"skipped": message}
    log("f: ingestion under wrk, %d s per route (2 threads, 16 connections)" % seconds)
    extra = {
        "TELECODER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "url.%s.insteadOf" % repo,
        "GIT_CONFIG_VALUE_0": GITHUB_CLONE_URL,
    }
    daemon = Daemon(workdir, "ingestion", acpx, extra).start()
    db_path = os.path.join(daemon.data_dir, "telecoder.sqlite")
    watches = {}
    for kind, body in (
        ("ci", {"kind": "ci_failure", "repo": GITHUB_REPO, "workflow": "Build", "agent": "mock",
                "instructions": "@mock say investigated"}),
        ("pr", {"kind": "pr_review", "repo": GITHUB_REPO, "agent": "mock",
                "instructions": "@mock say reviewed"}),
    ):
        status, payload = daemon.api.call("POST", "/api/watches", body)
        if status != 201:
            raise BenchError("POST /api/watches -> %s %s" % (status, payload))
        watches[kind] = payload["id"]
    time.sleep(1)
    result = {"seconds": seconds, "threads": 2, "connections": 16, "watches": watches,
              "idle": daemon.footprint(), "runs": {}}
    run_tag = "bench-%s" % secrets.token_hex(4)
    for name, (entries, distinct), path in (
        ("ci", ci_entries(), "/api/watch-events/ci"),
        ("webhook", webhook_entries(run_tag), "/webhooks/github"),
    ):
        script = write_wrk_script(os.path.join(daemon.dir, "%s.lua" % name), entries)
        sessions_before = len(daemon.api.get("/api/sessions"))
        sampler = Sampler(daemon.pid, period=0.25, tree=False)
        sampler.start()
        own0, children0 = proc_cpu(daemon.pid)
        run = run_wrk(script, "http://127.0.0.1:%d%s" % (daemon.api.port, path), seconds)
        t_end = time.perf_counter()
        # Webhooks are routed in the background after the answer: wait for the backlog.
        drain_s, stuck = None, 0
        if name == "webhook":
            deadline = time.monotonic() + 60
            last, last_change = None, time.perf_counter()
            while time.monotonic() < deadline:
                pending = delivery_states(db_path).get("pending", 0)
                now = time.perf_counter()
                if pending != last:
                    last, last_change = pending, now
                if not pending:
                    drain_s = now - t_end
                    break
                if now - last_change > 5:
                    # Not draining any more: deliveries whose request was in flight when wrk
                    # closed its connections can stay stored-but-unrouted (see bench/README.md).
                    stuck = pending
                    ANOMALIES.append(
                        "f webhook: %d deliveries stored by requests in flight when wrk closed its "
                        "connections are still 'pending' (never routed) %.0f s later: a delivery whose "
                        "sender hangs up once it is stored is routed only after a restart"
                        % (pending, now - t_end))
                    log("warning: " + ANOMALIES[-1])
                    break
                time.sleep(0.05)
        samples = sampler.stop()
        daemon.api.wait_idle(period=0.1, timeout=120)  # the sessions the matching events started
        time.sleep(0.3)
        own1, children1 = proc_cpu(daemon.pid)
        sessions = daemon.api.get("/api/sessions")
        ci_runs = daemon.api.get("/api/watches/%s/runs" % watches["ci"])
        requests = run["requests"]
        codes = {int(k): v for k, v in run["codes"].items()}
        run.update({
            "entries": [e["kind"] for e in entries],
            "distinct_matching": distinct,
            "requests_per_s": requests / (run["duration_us"] / 1e6),
            "non_2xx": sum(v for k, v in codes.items() if not 200 <= k < 300),
            "sessions_created": len(sessions) - sessions_before,
            "session_statuses": sorted(s["status"] for s in sessions[: len(sessions) - sessions_before]),
            "ci_watch_runs": {
                "started": sum(1 for r in ci_runs if r.get("sessionId")),
                "skipped": sum(1 for r in ci_runs if not r.get("sessionId")),
            },
            "daemon_cpu_s": own1 - own0,
            "daemon_cpu_us_per_request": (own1 - own0) * 1e6 / requests if requests else None,
            "agents_cpu_s": children1 - children0,
            "peak_rss": max((s[1] for s in samples), default=None),
            "routing_drain_s": drain_s,
            "deliveries_stuck_pending": stuck,
        })
        if name == "webhook":
            run["deliveries"] = delivery_states(db_path)
        if run["non_2xx"] or any(run["errors"][k] for k in ("connect", "read", "write", "timeout")):
            ANOMALIES.append("f %s: non-2xx %s, socket errors %s, codes %s" % (
                name, run["non_2xx"], run["errors"], run["codes"]))
        result["runs"][name] = run
        log("f %s: %.0f req/s, p99 %.1f ms, codes %s, %d sessions created" % (
            name, run["requests_per_s"], run["latency_us"]["p99"] / 1000, run["codes"], run["sessions_created"]))
    result["after"] = daemon.footprint()
    daemon.stop()
    return result


# ---------------------------------------------------------------------------------------------
# g. scale: a large history generated in SQLite


def iso_ms(epoch_s):
    at = datetime.datetime.fromtimestamp(epoch_s, datetime.timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (at.microsecond // 1000)


def generate_history(db_path, data_dir, repo, templates, n_sessions, n_events, big_events, pending):
    """Fills the (stopped) daemon's database with `n_sessions` sessions and `n_events` events.

    Every column of a generated row comes from a real session of the same outcome (templates:
    {"complete"|"error": (row dict, [(type, data)])}), with a fresh id, branch, work dir, prompt
    and timestamps. Sessions are one every ~30 s going back from now, oldest first (so rowid order
    is creation order, as in a real database); ~85 % complete, ~14 % error, ~1 % cancelled;
    the newest `pending` ones are pending '@mock hang' (the daemon runs them when it starts);
    the one in the middle has `big_events` events. Events per session: the template's events,
    padded with output events (or cut) to the session's share, terminal event last."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA foreign_keys = ON")
        cols = [row[1] for row in conn.execute("PRAGMA table_info(sessions)")]
        existing = {row[0] for row in conn.execute("SELECT id FROM sessions")}
        big_index = n_sessions // 2
        finished = n_sessions - pending - 1
        base, extra = divmod(max(0, n_events - big_events), max(1, finished))
        now = time.time()
        start = now - 30.0 * n_sessions - 600
        rng = random.Random(8)
        plan = []  # (id, status, created, finished, n_events)
        for i in range(n_sessions):
            sid = secrets.token_hex(4)
            while sid in existing:
                sid = secrets.token_hex(4)
            existing.add(sid)
            created = start + 30.0 * i + rng.random() * 20
            if i >= n_sessions - pending:
                plan.append((sid, "pending", now - 1 - (n_sessions - i) * 0.01, None, 0))
                continue
            if i == big_index:
                status, count = "complete", big_events
            else:
                roll = rng.random()
                status = "complete" if roll < 0.85 else ("error" if roll < 0.99 else "cancelled")
                k = i if i < big_index else i - 1
                count = base + (1 if k < extra else 0)
            plan.append((sid, status, created, created + 20 + rng.random() * 280, count))

        work_root = os.path.join(data_dir, "workspaces")
        filler = ("line %d of the agent's answer: looked at src/mod%d.py, the function returns the "
                  "expected value; nothing else to change here.\n")

        def session_rows():
            for n, (sid, status, created, done_at, _count) in enumerate(plan):
                template = templates["error" if status in ("error", "cancelled") else "complete"][0]
                row = dict(template)
                row.update({"id": sid, "branch": "telecoder/" + sid,
                            "work_dir": os.path.join(work_root, sid), "agent_pid": None,
                            "prompt": "bench history session %d: tidy up the helpers in src/mod%d.py "
                                      "and explain what changed" % (n, n % 10)})
                if status == "pending":
                    row.update({"repo": repo, "prompt": "@mock hang", "status": "pending",
                                "owner_id": "", "branch": "", "work_dir": "", "result_text": "",
                                "outcome_headline": "Session is pending.", "outcome_changed": "",
                                "outcome_verified": "", "outcome_uncertain": "", "outcome_next": "",
                                "error": "", "failure_kind": "", "claimed_at": "", "heartbeat_at": "",
                                "started_at": "", "finished_at": "", "created_at": iso_ms(created),
                                "updated_at": iso_ms(created)})
                else:
                    row.update({"status": status, "claimed_at": iso_ms(created + 0.002),
                                "started_at": iso_ms(created + 0.002), "heartbeat_at": iso_ms(done_at),
                                "finished_at": iso_ms(done_at), "created_at": iso_ms(created),
                                "updated_at": iso_ms(done_at)})
                    if status == "cancelled":
                        row.update({"failure_kind": "cancelled", "error": "cancelled by the user"})
                yield [row[c] for c in cols]

        def event_rows():
            for sid, status, created, done_at, count in plan:
                if not count:
                    continue
                events = templates["error" if status in ("error", "cancelled") else "complete"][1]
                body, terminal = events[:-1], events[-1]
                if count - 1 <= len(body):
                    chosen = body[: count - 1]
                else:
                    pad = count - 1 - len(body)
                    chosen = body + [("output", filler % (j, j % 10)) for j in range(pad)]
                chosen.append(terminal)
                step = (done_at - created) / (len(chosen) + 1)
                for j, (kind, data) in enumerate(chosen):
                    yield (sid, kind, data, iso_ms(created + step * (j + 1)))

        with conn:
            conn.executemany("INSERT INTO sessions (%s) VALUES (%s)" % (
                ", ".join(cols), ", ".join("?" for _ in cols)), session_rows())
            conn.executemany("INSERT INTO events (session_id, type, data, created_at) VALUES (?, ?, ?, ?)",
                             event_rows())
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = {
            "sessions": conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0],
            "events": conn.execute("SELECT COUNT(*) FROM events").fetchone()[0],
            "by_status": dict(conn.execute("SELECT status, COUNT(*) FROM sessions GROUP BY status").fetchall()),
        }
        return plan[big_index][0], [p[0] for p in plan if p[1] == "pending"], counts
    finally:
        conn.close()


class KeepAliveClient:
    """One persistent HTTP/1.1 connection for timing many small GETs."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path, timeout=300):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                t0 = time.perf_counter()
                self.conn.request("GET", path, headers={"Accept": "application/json"})
                resp = self.conn.getresponse()
                body = resp.read()
                elapsed = (time.perf_counter() - t0) * 1000
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                if resp.status != 200:
                    raise BenchError("GET %s -> %s %s" % (path, resp.status, body[:300]))
                return elapsed, body
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def history_daemon(workdir, acpx, repo, name, n_sessions, n_events, big_events, pending):
    """A daemon restarted on a generated history (see generate_history), with what was made:
    (daemon, big session id, pending ids, result dict)."""
    daemon = Daemon(workdir, name, acpx).start()
    # Two real sessions: every column and event of the generated rows is copied from them.
    ids = {"complete": daemon.api.create(repo, "@mock say seeded history")["id"],
           "error": daemon.api.create(repo, "@mock error")["id"]}
    daemon.api.wait_idle(period=0.05, timeout=120)
    data_dir = daemon.data_dir
    daemon.stop()
    db_path = os.path.join(data_dir, "telecoder.sqlite")
    conn = sqlite3.connect(db_path, timeout=30)
    conn.row_factory = sqlite3.Row
    templates = {}
    for kind, sid in ids.items():
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone()
        if row is None or row["status"] != kind:
            raise BenchError("template session %s is %s, expected %s" % (sid, row and row["status"], kind))
        events = [(e["type"], e["data"]) for e in conn.execute(
            "SELECT type, data FROM events WHERE session_id = ? ORDER BY id", (sid,))]
        templates[kind] = (dict(row), events)
    conn.execute("DELETE FROM events")
    conn.execute("DELETE FROM sessions")
    conn.commit()
    conn.close()
    t0 = time.perf_counter()
    big_id, pending_ids, counts = generate_history(
        db_path, data_dir, repo, templates, n_sessions, n_events, big_events, pending)
    generate_s = time.perf_counter() - t0
    log("%s: generated %s in %.1f s; restarting the daemon on it" % (name, counts, generate_s))
    result = {"generate_s": generate_s, "counts": counts, "big_session": big_id,
              "db_bytes_generated": file_size(db_path)}
    daemon = Daemon(workdir, name, acpx, data_dir=data_dir).start(timeout=120)
    result["startup_ms"] = daemon.startup_ms
    return daemon, big_id, pending_ids, result


def bench_scale(workdir, acpx, repo, profile):
    n_sessions, n_events = profile["scale_sessions"], profile["scale_events"]
    reps, reps_all = profile["scale_reps"], profile["scale_reps_all"]
    pending = 3
    log("g: scale, %d sessions / %d events generated in SQLite" % (n_sessions, n_events))
    daemon, big_id, pending_ids, result = history_daemon(
        workdir, acpx, repo, "scale", n_sessions, n_events, 1000, pending)
    db_path = os.path.join(daemon.data_dir, "telecoder.sqlite")
    # The pending '@mock hang' sessions start at once: wait until their agents are up, so
    # `?status=running` has rows and no agent start-up competes with the measurement.
    deadline = time.monotonic() + 120
    while True:
        running = [s["id"] for s in daemon.api.get("/api/sessions?status=running")]
        up = [sid for sid in running
              if any(e["type"] == "output" for e in daemon.api.get("/api/sessions/%s/events" % sid))]
        if len(up) >= len(pending_ids):
            break
        if time.monotonic() > deadline:
            raise BenchError("the %d generated pending sessions did not start: running %s" % (len(pending_ids), running))
        time.sleep(0.1)
    time.sleep(1)
    result["idle"] = daemon.footprint()
    client = KeepAliveClient(daemon.api.port)
    show_id = big_id
    queries = [
        ("running", "/api/sessions?status=running", reps),
        ("inbox", "/api/inbox?limit=20", reps),
        ("events", "/api/sessions/%s/events" % big_id, reps),
        ("show", "/api/sessions/%s" % show_id, reps),
        ("list_all", "/api/sessions", reps_all),
    ]
    result["queries"] = {}
    for name, path, n in queries:
        client.get(path)  # warm-up (page cache, prepared statement)
        times, size, rows = [], 0, None
        for i in range(n):
            elapsed, body = client.get(path)
            times.append(elapsed)
            size = len(body)
            if rows is None:
                payload = json.loads(body)
                rows = len(payload) if isinstance(payload, list) else 1
        result["queries"][name] = {"path": path, "ms": summary(times), "bytes": size, "rows": rows}
        log("g: %s: p50 %.1f ms, %d rows, %d bytes" % (path, pct(times, 50), rows, size))
        if name == "show":  # the selective queries are done; the unfiltered list is next
            result["after_selective"] = daemon.footprint()
    client.close()
    time.sleep(1)
    result["after"] = daemon.footprint()
    result["db_bytes"] = file_size(db_path)
    result["wal_bytes"] = file_size(db_path + "-wal")
    result["shm_bytes"] = file_size(db_path + "-shm")
    for sid in pending_ids:
        daemon.api.call("POST", "/api/sessions/%s/cancel" % sid)
    daemon.api.wait_idle(period=0.1, timeout=60)
    daemon.stop()
    return result


# ---------------------------------------------------------------------------------------------
# h. SSE fan-out


class SseReader:
    """A raw-socket SSE client driven by a selector. While streaming it only receives and stamps
    each recv() with time.time() in ms (so one slow parse cannot delay the other clients'
    stamps); parse() then decodes the recorded stream offline, giving each event the stamp of
    the recv() that completed it."""

    TERMINATOR = b"\r\n0\r\n\r\n"  # the last chunk of a chunked body: the stream is over

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                           "Connection: keep-alive\r\n\r\n" % path).encode())
        self.sock.setblocking(False)
        self.received = []  # [(recv_ms, bytes)]
        self.tail = b""
        self.bytes = 0
        self.finished = False  # saw the end of the chunked body
        self.closed = False  # the server closed the connection
        self.status = None
        self.connected_ms = None
        self.events = []  # [recv_ms, id, type, data], filled by parse()

    def fileno(self):
        return self.sock.fileno()

    def on_readable(self):
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        now_ms = time.time() * 1000
        if not data:
            self.closed = True
            return
        self.received.append((now_ms, data))
        self.bytes += len(data)
        self.tail = (self.tail + data)[-16:]
        if self.tail.endswith(self.TERMINATOR):
            self.finished = True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def parse(self):
        raw, body, head, chunked = b"", b"", None, False
        for now_ms, data in self.received:
            raw += data
            if head is None:
                end = raw.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = raw[:end].decode("latin-1")
                raw = raw[end + 4:]
                self.status = int(head.split()[1])
                chunked = "transfer-encoding: chunked" in head.lower()
                self.connected_ms = now_ms
            if chunked:
                while True:
                    line_end = raw.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(raw[:line_end].split(b";")[0], 16)
                    if size == 0:
                        raw = b""
                        break
                    if len(raw) < line_end + 2 + size + 2:
                        break
                    body += raw[line_end + 2: line_end + 2 + size]
                    raw = raw[line_end + 2 + size + 2:]
            else:
                body, raw = body + raw, b""
            while True:
                end = body.find(b"\n\n")
                if end < 0:
                    break
                block, body = body[:end].decode("utf-8", "replace"), body[end + 2:]
                kind, lines, event_id = "message", [], None
                for line in block.split("\n"):
                    kind, event_id = sse_line(line, kind, lines, event_id)
                if lines or event_id is not None:
                    self.events.append([now_ms, int(event_id) if event_id else None, kind, "\n".join(lines)])
        self.received = []
        return self.events


def bench_streaming(workdir, acpx, repo, profile):
    chunks, n_clients = profile["stream_chunks"], profile["stream_clients"]
    log("h: '@mock stream %d 0' to %d SSE clients" % (chunks, n_clients))
    daemon = Daemon(workdir, "streaming", acpx).start()
    time.sleep(1)
    idle = daemon.footprint()
    sampler = Sampler(daemon.pid, period=0.02, tree=False)
    sampler.start()
    t_post = time.time() * 1000
    session = daemon.api.create(repo, "@mock stream %d 0" % chunks)
    path = "/api/sessions/%s/events" % session["id"]
    selector = selectors.DefaultSelector()
    readers = []
    for _ in range(n_clients):
        reader = SseReader(daemon.api.port, path)
        readers.append(reader)
        selector.register(reader, selectors.EVENT_READ)
    t_connected = time.time() * 1000
    deadline = time.monotonic() + 60 + chunks * 0.01
    open_readers = len(readers)
    while open_readers and time.monotonic() < deadline:
        for key, _mask in selector.select(timeout=1):
            reader = key.fileobj
            reader.on_readable()
            if reader.finished or reader.closed:
                selector.unregister(reader)
                reader.close()
                open_readers -= 1
    samples = sampler.stop()
    timed_out = [r for r in readers if not (r.finished or r.closed)]
    for reader in timed_out:
        selector.unregister(reader)
        reader.close()
    selector.close()
    for reader in readers:
        reader.parse()
    hwm = proc_status(daemon.pid).get("VmHWM")
    daemon.api.wait_idle(period=0.05, timeout=120)
    stored = daemon.api.get(path)
    stored_session = daemon.api.get("/api/sessions/%s" % session["id"])
    expected = [(e["id"], e["type"], e["data"]) for e in stored]
    created_ms = {e["id"]: parse_ts(e["createdAt"]) for e in stored}
    complete, problems, lags, live_counts = 0, [], [], []
    spread = {}
    for n, reader in enumerate(readers):
        got = [(e[1], e[2], e[3]) for e in reader.events]
        if got == expected:
            complete += 1
        else:
            missing = [e[0] for e in expected if e not in got]
            problems.append("client %d (HTTP %s, %s): %d of %d events, %d missing/different (first %s)%s" % (
                n, reader.status, "ended" if reader.finished else ("closed early" if reader.closed else "timed out"),
                len(got), len(expected), len(missing), missing[:3],
                "" if len(got) <= len(expected) else ", %d extra" % (len(got) - len(expected))))
        live = 0
        for recv_ms, event_id, _kind, _data in reader.events:
            created = created_ms.get(event_id)
            # live only: created after this client's stream was open (1 ms resolution)
            if created is None or reader.connected_ms is None or created <= reader.connected_ms:
                continue
            live += 1
            lags.append(recv_ms - created)
            spread.setdefault(event_id, []).append(recv_ms)
        live_counts.append(live)
    outputs = [e for e in stored if e["type"] == "output"]
    text = "".join(e["data"] for e in outputs)
    wanted = "".join("chunk %d\n" % i for i in range(1, chunks + 1))
    first_output = parse_ts(outputs[0]["createdAt"]) if outputs else None
    last = parse_ts(stored[-1]["createdAt"]) if stored else None
    for line in problems[:5]:
        ANOMALIES.append("h: " + line)
    result = {
        "chunks": chunks,
        "clients": n_clients,
        "session": session["id"],
        "status": stored_session["status"],
        "events": len(stored),
        "output_events": len(outputs),
        "output_bytes": len(text),
        "chunks_intact": text == wanted,
        "clients_complete": complete,
        "clients_timed_out": len(timed_out),
        "problems": problems,
        "connect_all_ms": t_connected - t_post,
        "first_output_after_connect_ms": (first_output - t_connected) if first_output else None,
        "stream_ms": (last - first_output) if first_output and last else None,
        "live_events_per_client": summary(live_counts),
        "lag_ms": summary(lags),
        "fanout_spread_ms": summary([max(v) - min(v) for v in spread.values() if len(v) > 1]),
        "bytes_per_client": summary([r.bytes for r in readers]),
        # per stored event: when it was stored, its size, and how late the first and the last
        # client that had it live received it
        "per_event": [
            {"id": e["id"], "type": e["type"], "bytes": len(e["data"].encode()), "createdAt": e["createdAt"],
             "clients_live": len(spread.get(e["id"], [])),
             "lag_first_ms": (min(spread[e["id"]]) - created_ms[e["id"]]) if spread.get(e["id"]) else None,
             "lag_last_ms": (max(spread[e["id"]]) - created_ms[e["id"]]) if spread.get(e["id"]) else None}
            for e in stored
        ],
        "idle": idle,
        "peak_rss": max((s[1] for s in samples), default=None),
        "peak_threads": max((s[4] for s in samples), default=None),
        "hwm": hwm,
    }
    daemon.stop()
    return result


# ---------------------------------------------------------------------------------------------
# i. workspaces: clone time and disk per session for a big repository

# The generated repository: ~2,000 source-like text files at HEAD, and a history of commits that
# each edit some of them and replace a few large binary assets (how real repositories grow:
# build outputs, models, screenshots, vendored archives). Its object store is ~200 MB while the
# files checked out at HEAD are ~15 MB, which every workspace needs as its own writable copy.
BIG_TEXT_FILES = 2000
BIG_TEXT_BYTES = 5000
BIG_COMMITS = 40
BIG_EDITS_PER_COMMIT = 100
BIG_ASSETS_PER_COMMIT = 4
BIG_ASSET_BYTES = 1250 * 1024
WORDS = ("self", "return", "value", "items", "config", "result", "index", "count", "buffer", "error",
         "handle", "request", "session", "update", "state", "parse", "write", "read", "close", "open")


def fake_source(rng, size):
    lines, total = [], 0
    while total < size:
        line = "    %s = %s(%s, %d)\n" % (rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS), rng.randrange(10 ** 6))
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def generate_big_repo(path):
    """A bare repository written with `git fast-import`, then repacked."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", path], check=True)
    rng = random.Random(16)
    proc = subprocess.Popen(["git", "-C", path, "fast-import", "--quiet"], stdin=subprocess.PIPE)
    out = proc.stdin

    def blob(mark, data):
        out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)))
        out.write(data)
        out.write(b"\n")

    mark = 0
    assets = []
    for commit in range(BIG_COMMITS):
        changes = []
        paths = range(BIG_TEXT_FILES) if commit == 0 else rng.sample(range(BIG_TEXT_FILES), BIG_EDITS_PER_COMMIT)
        for i in paths:
            mark += 1
            blob(mark, fake_source(rng, BIG_TEXT_BYTES))
            changes.append(b"M 100644 :%d src/pkg%02d/mod%04d.py\n" % (mark, i % 50, i))
        for old in assets:
            changes.append(b"D %s\n" % old)
        assets = []
        for k in range(BIG_ASSETS_PER_COMMIT):
            mark += 1
            blob(mark, os.urandom(BIG_ASSET_BYTES))
            name = b"assets/build-%02d-%d.bin" % (commit, k)
            changes.append(b"M 100644 :%d %s\n" % (mark, name))
            assets.append(name)
        message = b"commit %d" % commit
        out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n" % (1700000000 + commit * 3600))
        # Later commits continue the branch (fast-import's own tip, no `from` needed).
        out.write(b"data %d\n%s\n" % (len(message), message))
        out.write(b"".join(changes))
        out.write(b"\n")
    out.close()
    if proc.wait() != 0:
        raise BenchError("git fast-import failed")
    subprocess.run(["git", "-C", path, "repack", "-a", "-d", "-q"], check=True)
    subprocess.run(["git", "-C", path, "prune-packed"], check=True)


def unique_blocks(root, seen):
    """Allocated bytes of the files and directories under root whose inodes are not in `seen`
    (which it extends): what they add to the disk."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    return total


def dir_bytes(path):
    return unique_blocks(path, set())


def replay(commands):
    """Runs git commands in sequence; returns wall and CPU (user + sys of the reaped children)
    in ms. CPU hardly depends on what else the machine runs; wall does."""
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for argv in commands:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - t0) * 1000
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) * 1000
    return {"wall_ms": wall, "cpu_ms": cpu}


def clone_commands(kind, source, url, dest):
    """The git commands of a session's clone, as the daemon runs them (without its hardening
    options): through the mirror, from a local path, or (before mirrors) a plain clone."""
    branch = ["git", "-C", dest, "checkout", "--quiet", "--force", "-b", "telecoder/replay"]
    base = ["git", "-C", dest, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"]
    if kind == "mirror":
        return [
            ["git", "-C", source, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", url,
             "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            ["git", "clone", "--quiet", "--shared", "--no-checkout", "--", source, dest],
            ["git", "-C", dest, "remote", "set-url", "origin", url],
            branch,
            base,
        ]
    if kind == "local":
        return [["git", "clone", "--quiet", "--", source, dest], branch, base]
    return [["git", "clone", "--quiet", "--", url, dest], branch]


def bench_workspaces(workdir, acpx, profile):
    n = profile["workspace_sessions"]
    upstream = os.path.join(workdir, "big.git")
    log("i: generating a ~200 MB repository (%d files, %d commits)" % (BIG_TEXT_FILES, BIG_COMMITS))
    t0 = time.perf_counter()
    generate_big_repo(upstream)
    result = {"generate_s": time.perf_counter() - t0}
    objects = dir_bytes(os.path.join(upstream, "objects"))
    tree = subprocess.run(["git", "-C", upstream, "ls-tree", "-r", "-l", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    head_tree = sum(int(line.split()[3]) for line in tree)
    files = len(tree)
    result["repo"] = {"object_bytes": objects, "head_tree_bytes": head_tree, "files": files, "commits": BIG_COMMITS}
    url = "file://" + upstream

    # Without the mirror: what a session's clone of a remote repository cost before it (a full
    # `git clone` of the URL, then the branch), timed here with git itself.
    plain = []
    for k in range(profile["plain_clones"]):
        dest = os.path.join(workdir, "plain-%d" % k)
        timed = replay(clone_commands("plain", None, url, dest))
        plain.append({"clone_ms": timed["wall_ms"], "cpu_ms": timed["cpu_ms"], "disk_bytes": dir_bytes(dest)})
        shutil.rmtree(dest, ignore_errors=True)
    result["plain"] = plain

    for kind, repo in (("mirror", url), ("local", upstream)):
        log("i: %d sessions on the %s (%s)" % (n, "URL, through the mirror" if kind == "mirror" else "local path", repo))
        daemon = Daemon(workdir, "workspaces-" + kind, acpx, {"TELECODER_WORKSPACE_RETENTION": "0",
                                                             "TELECODER_WORKSPACE_GC_INTERVAL": "1h"}).start()
        seen = set()
        unique_blocks(upstream, seen)  # hard links into the source add nothing
        runs = []
        for _ in range(n):
            run = run_session(daemon.api, repo, "@mock say hi")
            if run["server"]["status"] != "complete":
                raise BenchError("workspace session %s ended %s" % (run["id"], run["server"]["status"]))
            session = daemon.api.get("/api/sessions/%s" % run["id"])
            work = session["workDir"]
            added_mirror = unique_blocks(os.path.join(daemon.data_dir, "mirrors"), seen)
            added_git = unique_blocks(os.path.join(work, ".git"), seen)
            added_tree = unique_blocks(work, seen)
            runs.append({"id": run["id"], "clone_ms": run["server"]["clone"], "mirror_bytes": added_mirror,
                         "git_bytes": added_git, "tree_bytes": added_tree,
                         "added_bytes": added_mirror + added_git + added_tree})
        replays = []
        for k in range(profile["plain_clones"]):
            dest = os.path.join(workdir, "replay-%s-%d" % (kind, k))
            mirrors = [os.path.join(d, name) for d, dirs, _ in os.walk(os.path.join(daemon.data_dir, "mirrors"))
                       for name in dirs if name.endswith(".git")]
            source = mirrors[0] if kind == "mirror" and mirrors else upstream
            replays.append(replay(clone_commands(kind, source, url, dest)))
            shutil.rmtree(dest, ignore_errors=True)
        t = time.perf_counter()
        status, report = daemon.api.call("POST", "/admin/gc", {}, timeout=600)
        gc = {"status": status, "wall_ms": (time.perf_counter() - t) * 1000,
              "removed": len(report.get("removed", [])) if isinstance(report, dict) else None,
              "bytes_freed": report.get("bytesFreed") if isinstance(report, dict) else None}
        daemon.stop()
        following = runs[1:]
        result[kind] = {
            "first": runs[0],
            "following_clone_ms": summary([r["clone_ms"] for r in following if r["clone_ms"] is not None]),
            "following_added_bytes": summary([r["added_bytes"] for r in following]),
            "following_git_bytes": summary([r["git_bytes"] for r in following]),
            "following_tree_bytes": summary([r["tree_bytes"] for r in following]),
            "runs": runs,
            "gc": gc,
            "replayed": {"wall_ms": summary([r["wall_ms"] for r in replays]),
                         "cpu_ms": summary([r["cpu_ms"] for r in replays])},
        }
    m = result["mirror"]
    worst_added = max(r["added_bytes"] for r in m["runs"][1:]) if n > 1 else None
    worst_clone = max(r["clone_ms"] for r in m["runs"][1:] if r["clone_ms"] is not None) if n > 1 else None
    worst_git = max(r["git_bytes"] for r in m["runs"][1:]) if n > 1 else None
    result["target"] = {
        "max_added_share": worst_added / objects if worst_added is not None else None,
        "max_git_share": worst_git / objects if worst_git is not None else None,
        "max_clone_ms": worst_clone,
        "replayed_cpu_ms": m["replayed"]["cpu_ms"].get("max"),
        "met": worst_added is not None and worst_added <= 0.10 * objects and worst_clone <= 1000,
    }
    return result


# ---------------------------------------------------------------------------------------------
# m. notifications: event committed -> receiver got it

NOTIFY_SECRET = "bench-notify-secret-0123456789abcdef"


class NotifyReceiver:
    """A loopback HTTP receiver (http.server) that records when each delivery arrived (wall
    clock, as the daemon's createdAt), whether its HMAC verified, and answers 500 to the first
    attempt of any delivery whose session prompt asked for it."""

    def __init__(self):
        import http.server

        receiver = self
        self.lock = threading.Lock()
        self.arrivals = []  # (arrived epoch ms, delivery id, body dict, signature ok, answered)
        self.fail_first = set()  # session ids whose first attempt gets a 500

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                arrived = time.time() * 1000.0
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(NOTIFY_SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(expected, self.headers.get("X-TeleCoder-Signature-256", ""))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                delivery = self.headers.get("X-TeleCoder-Delivery", "")
                session = (payload.get("session") or {}).get("id")
                with receiver.lock:
                    seen = any(a[1] == delivery for a in receiver.arrivals)
                    status = 500 if session in receiver.fail_first and not seen else 200
                    receiver.arrivals.append((arrived, delivery, payload, signed, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self):
        with self.lock:
            return [a for a in self.arrivals if a[4] == 200]

    def wait(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise BenchError("only %d of %d notifications arrived within %d s" % (len(self.accepted()), count, timeout))
            time.sleep(0.01)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def notify_latencies(arrivals):
    """Receiver arrival - createdAt (the commit of the session's terminal event), in ms."""
    return [a[0] - parse_ts(a[2].get("createdAt")) for a in arrivals if a[2].get("createdAt")]


def bench_notify(workdir, acpx, repo, profile):
    n, burst = profile["notify_n"], profile["notify_burst"]
    log("m: notifications: %d sessions one at a time, a burst of %d, one retried delivery" % (n, burst))
    receiver = NotifyReceiver()
    daemon = Daemon(workdir, "notify", acpx, {
        "TELECODER_NOTIFY": receiver.url + "?events=finished",
        "TELECODER_NOTIFY_SECRET": NOTIFY_SECRET,
    })
    try:
        daemon.start()
        time.sleep(0.5)
        for _ in range(n):
            # Counted before the session starts: its notification may well arrive before
            # run_session has read the end of the event stream.
            before = len(receiver.accepted())
            run_session(daemon.api, repo, "@mock say hi", fetch_events=False)
            receiver.wait(before + 1)
        sequential = receiver.accepted()
        t0, _, ids, sampler = release_burst(daemon, repo, "@mock say hi", burst)
        sampler.stop()
        receiver.wait(n + burst)
        burst_arrivals = [a for a in receiver.accepted() if (a[2].get("session") or {}).get("id") in set(ids)]
        # One delivery refused once (HTTP 500): the retry's backoff is in its latency.
        retried = api_session_with_retry(daemon, receiver, repo)
        status = daemon.api.get("/admin/status").get("notifications", {})
    except BenchError as err:
        raise BenchError("%s; the daemon's log ends with:\n%s" % (err, daemon.log_tail(20))) from None
    finally:
        daemon.stop()
        receiver.close()
    deliveries = [a[1] for a in receiver.accepted()]
    return {
        "sessions": n,
        "burst": burst,
        "sequential_ms": summary(notify_latencies(sequential)),
        "burst_ms": summary(notify_latencies(burst_arrivals)),
        "retried_ms": retried,
        "signatures_ok": all(a[3] for a in receiver.arrivals),
        "duplicates_accepted": len(deliveries) - len(set(deliveries)),
        "outbox": status,
    }


def api_session_with_retry(daemon, receiver, repo):
    """A session whose notification's first attempt is refused: commit -> accepted, in ms."""
    before = len(receiver.accepted())
    session = daemon.api.create(repo, "@mock say retried")
    with receiver.lock:
        receiver.fail_first.add(session["id"])
    receiver.wait(before + 1)
    arrivals = [a for a in receiver.accepted() if (a[2].get("session") or {}).get("id") == session["id"]]
    return notify_latencies(arrivals)[0] if arrivals else None


# ---------------------------------------------------------------------------------------------
# set-up, machine, report


# ---------------------------------------------------------------------------------------------
# k. dashboard: the first page over a large history

DASHBOARD_PAGE_TARGET_MS = 200
DASHBOARD_WEIGHT_TARGET = 100 * 1024


def bench_dashboard(workdir, acpx, repo, profile):
    """What the daemon spends to render the dashboard's first page with 10,000 sessions stored:
    the HTML shell, /ui/whoami and the first page of /ui/sessions (50 rows), each timed on one
    keep-alive connection (loopback, so the time is the daemon's); their sum is the figure the
    target is about. Also a deep page (keyset cursor near the oldest session), a filtered first
    page, the public API's first page for comparison, and the bytes of a first load (the shell
    and every embedded file, uncompressed)."""
    n_sessions, reps = profile["dashboard_sessions"], profile["dashboard_reps"]
    log("k: dashboard, %d sessions generated in SQLite" % n_sessions)
    daemon, _big, _pending, result = history_daemon(
        workdir, acpx, repo, "dashboard", n_sessions, n_sessions * 5, 100, 0)
    client = KeepAliveClient(daemon.api.port)
    deep_cursor = daemon.api.get("/api/sessions?limit=1&offset=%d" % (n_sessions - 60))[0]["id"]
    parts = [("shell", "/"), ("whoami", "/ui/whoami"), ("first_page", "/ui/sessions?limit=50")]
    others = [("deep_page", "/ui/sessions?limit=50&before=%s" % deep_cursor),
              ("filtered_page", "/ui/sessions?limit=50&status=error"),
              ("api_first_page", "/api/sessions?limit=50")]
    for _name, path in parts + others:
        client.get(path)  # warm-up
    times = {name: [] for name, _ in parts + others}
    totals, rows = [], {}
    for _ in range(reps):
        total = 0.0
        for name, path in parts + others:
            elapsed, body = client.get(path)
            times[name].append(elapsed)
            if name in dict(parts):
                total += elapsed
            if name not in rows and path.startswith("/ui/sessions"):
                rows[name] = len(json.loads(body)["sessions"])
        totals.append(total)
    weight, files = 0, 0
    _, shell = client.get("/")
    weight += len(shell)
    for name in sorted(set(re.findall(r'/assets/([A-Za-z0-9_.-]+)', shell.decode()) +
                           re.findall(r"from '\./([A-Za-z0-9_.-]+)'",
                                      client.get("/assets/app.js")[1].decode()))):
        weight += len(client.get("/assets/" + name)[1])
        files += 1
    client.close()
    result["queries"] = {name: {"ms": summary(values), "rows": rows.get(name)} for name, values in times.items()}
    result["first_page_ms"] = summary(totals)
    result["first_load_bytes"] = weight
    result["first_load_files"] = files + 1
    p99 = result["first_page_ms"]["p99"]
    result["targets"] = {
        "first_page_ms": {"value": p99, "target": DASHBOARD_PAGE_TARGET_MS, "met": p99 < DASHBOARD_PAGE_TARGET_MS},
        "first_load_bytes": {"value": weight, "target": DASHBOARD_WEIGHT_TARGET, "met": weight < DASHBOARD_WEIGHT_TARGET},
    }
    log("k: first page p50 %.1f ms, p99 %.1f ms; first load %d bytes in %d files" % (
        result["first_page_ms"]["p50"], p99, weight, files + 1))
    daemon.stop()
    return result


def make_repo(path):
    os.makedirs(path)
    git = ["git", "-C", path, "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(git + ["init", "-q"], check=True)
    with open(os.path.join(path, "README.md"), "w") as f:
        f.write("# bench repo\n")
    os.makedirs(os.path.join(path, "src"))
    for i in range(10):
        with open(os.path.join(path, "src", "mod%d.py" % i), "w") as f:
            f.write("".join("def f%d_%d():\n    return %d\n\n" % (i, j, j) for j in range(50)))
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "bench repository"], check=True)
    return path


def machine():
    info = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": None,
        "mem_total_bytes": None,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return info


def versions(acpx):
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    commit = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "telecoder_commit": (commit or "?") + ("+dirty" if dirty else ""),
        "acpx": out([acpx, "--version"]),
    }


def mib(value):
    return "-" if value is None else "%.1f MiB" % (value / 1048576.0)


def kib(value):
    if value is None:
        return "-"
    return "%.1f MiB" % (value / 1048576.0) if value >= 1048576 else "%.1f KiB" % (value / 1024.0)


def ms(value):
    return "-" if value is None else ("%.1f ms" % value if value < 100 else "%.0f ms" % value)


def table_rows(results):
    """[(level, figure, p50/value, p99/second value, note)]; level 1 rows are details."""
    rows = []
    a, b, c = results.get("a"), results.get("b"), results.get("c")

    def add(level, figure, first, second="", note=""):
        rows.append((level, figure, first, second, note))

    if a:
        add(0, "a POST /api/sessions", ms(a["post_ms"]["p50"]), ms(a["post_ms"]["p99"]), "n=%d" % a["n"])
        add(0, "a start latency: POST -> 1st event", ms(a["first_event_ms"]["p50"]), ms(a["first_event_ms"]["p99"]), "SSE, client clock")
        s = a["server_created_to_first_event_ms"]
        add(1, "server: created -> 1st event", ms(s["p50"]), ms(s["p99"]), "createdAt, 1 ms resolution")
        add(0, "a session end-to-end (say hi)", ms(a["end_to_end_ms"]["p50"]), ms(a["end_to_end_ms"]["p99"]), "POST -> done seen")
        for key, label in (
            ("running_to_first_output", "'running <runtime>' -> 1st output"),
            ("first_output_to_done", "1st output -> done"),
        ):
            s = a["phases_ms"][key]
            add(1, label, ms(s["p50"]), ms(s["p99"]), "server timestamps")
    if b:
        add(0, "b " + b.get("baseline", "bare acpx exec"), ms(b["bare_ms"]["p50"]), ms(b["bare_ms"]["p99"]), "n=%d, interleaved" % b["n"])
        add(0, "b through the daemon", ms(b["daemon_ms"]["p50"]), ms(b["daemon_ms"]["p99"]), "POST -> done seen")
        add(0, "b overhead: median diff, ratio", "%+.0f ms" % b["overhead_ms"], "x%.3f" % b["ratio"], "daemon / bare")
        add(1, "1st output: bare, daemon", ms(b["bare_first_output_ms"]["p50"]), ms(b["daemon_first_output_ms"]["p50"]), "p50, p50")
        add(1, "CPU of one bare run", ms(b["bare_cpu_ms"]["p50"]), ms(b["bare_cpu_ms"]["p99"]), "(acpx +) agent, user+sys")
    if c:
        add(0, "c daemon start-up (spawn -> /health)", ms(c["startup_ms"]))
        add(0, "c idle RSS, threads", mib(c["idle"]["rss"]), "%s thr" % c["idle"]["threads"], "after 2 s idle")
        add(0, "c RSS, threads after %d sessions" % c["sessions"], mib(c["after"]["rss"]), "%s thr" % c["after"]["threads"],
            "2 s idle; HWM %s; %d errors" % (mib(c["after"]["hwm"]), c["errors"]))
        add(1, "%d sessions drained in" % c["sessions"], "%.1f s" % c["drain_s"], "%.2f/s" % c["sessions_per_s"], "default limit")
        add(1, "CPU per session: daemon, agents", ms(c["daemon_cpu_ms_per_session"]), ms(c["agents_cpu_ms_per_session"]), "agents = (acpx+node+)agent+git")
        add(1, "GET /api/sessions, /api/inbox", ms(c["after"]["list_ms"]), ms(c["after"]["inbox_ms"]), "%d sessions stored" % c["sessions"])
        seeded = c.get("seeded")
        if seeded:
            r = seeded["restarted_idle"]
            add(0, "c RSS, threads at %d sessions" % seeded["total_sessions"], mib(r["rss"]), "%s thr" % r["threads"],
                "restarted; %d rows seeded via SQLite" % seeded["rows_inserted"])
            add(1, "GET /api/sessions, /api/inbox", ms(r["list_ms"]), ms(r["inbox_ms"]), "%d sessions stored" % seeded["total_sessions"])
            r = seeded["after_20_more"]
            add(1, "after 20 more real sessions", mib(r["rss"]), "%s thr" % r["threads"], "HWM %s" % mib(r["hwm"]))
    bursts = {}
    for d in results.get("d", []):
        bursts.setdefault(d["sessions"], {})[d["limit"]] = d
        add(0, "d burst %d, limit %s: wall, rate" % (d["sessions"], d["max_concurrent"]), "%.2f s" % d["wall_s"],
            "%.2f/s" % d["sessions_per_s"], "%d ok; server %.2f s" % (d["complete"], d["server_wall_s"] or 0))
        add(1, "peak RSS: daemon, tree", mib(d["peak_rss"]), mib(d["peak_tree_rss"]),
            "%d procs, %d daemon threads" % (d["peak_processes"], d["peak_threads"]))
        add(1, "queued (created -> started)", ms(d["queued_ms"]["p50"]), ms(d["queued_ms"]["p99"]))
        add(1, "clone under the burst", ms(d["clone_ms"]["p50"]), ms(d["clone_ms"]["p99"]))
    for n, pair in sorted(bursts.items()):
        if "default" in pair and "1000" in pair:
            lo, hi = pair["default"], pair["1000"]
            add(0, "d burst %d: limit 1000 vs default" % n, "x%.2f wall" % (hi["wall_s"] / lo["wall_s"]),
                "x%.2f tree" % (hi["peak_tree_rss"] / lo["peak_tree_rss"]), "ratios 1000 / default")
    if a:
        add(0, "e clone: 'setting up' -> 'running'", ms(a["clone_ms"]["p50"]), ms(a["clone_ms"]["p99"]), "sessions of (a)")
    f = results.get("f")
    if f and f.get("skipped"):
        add(0, "f ingestion", "skipped", "", f["skipped"].split(": ", 1)[-1][:70])
    elif f:
        for name, label in (("ci", "f POST /api/watch-events/ci"), ("webhook", "f POST /webhooks/github (signed)")):
            r = f["runs"].get(name)
            if not r:
                continue
            codes = ", ".join("%s x%d" % (k, v) for k, v in sorted(r["codes"].items()))
            add(0, label + ": rate", "%.0f req/s" % r["requests_per_s"], "",
                "wrk %d s, %d thr, %d conn; %d requests" % (f["seconds"], f["threads"], f["connections"], r["requests"]))
            add(1, "latency", ms(r["latency_us"]["p50"] / 1000), ms(r["latency_us"]["p99"] / 1000),
                "p99.9 %s, max %s" % (ms(r["latency_us"]["p999"] / 1000), ms(r["latency_us"]["max"] / 1000)))
            socket_errors = sum(r["errors"][k] for k in ("connect", "read", "write", "timeout"))
            add(1, "non-2xx, socket errors", str(r["non_2xx"]), str(socket_errors), codes)
            add(1, "sessions created", str(r["sessions_created"]), "of %d" % r["distinct_matching"],
                "distinct matching events; %s" % (", ".join(sorted(set(r["session_statuses"]))) or "-"))
            add(1, "daemon CPU per request, peak RSS", "%.0f us" % r["daemon_cpu_us_per_request"], mib(r["peak_rss"]),
                "daemon %.1f CPU-s; agents %.1f CPU-s" % (r["daemon_cpu_s"], r["agents_cpu_s"]))
            if name == "webhook":
                d = r.get("deliveries", {})
                stored = ", ".join("%s %d" % kv for kv in sorted(d.items()))
                if r.get("deliveries_stuck_pending"):
                    add(1, "background routing: never routed", "%d stuck" % r["deliveries_stuck_pending"], "",
                        "pending: in flight when wrk hung up; stored: %s" % stored)
                else:
                    add(1, "background routing drained", ms((r["routing_drain_s"] or 0) * 1000)
                        if r["routing_drain_s"] is not None else "-", "", "after wrk ended; stored: %s" % stored)
        ci, hook = f["runs"].get("ci"), f["runs"].get("webhook")
        if ci and hook:
            add(0, "f webhook vs CI events: rate, p99", "x%.2f" % (hook["requests_per_s"] / ci["requests_per_s"]),
                "x%.2f" % (hook["latency_us"]["p99"] / ci["latency_us"]["p99"]), "ratios webhook / CI")
    g = results.get("g")
    if g:
        c = g["counts"]
        add(0, "g generated history", "%d sess" % c["sessions"], "%d ev" % c["events"],
            "SQLite, %.1f s; %s" % (g["generate_s"], ", ".join("%s %d" % kv for kv in sorted(c["by_status"].items()))))
        add(1, "daemon start-up on it", ms(g["startup_ms"]), "", "spawn -> /health")
        for key, label in (("running", "GET /api/sessions?status=running"), ("inbox", "GET /api/inbox?limit=20"),
                           ("events", "GET /api/sessions/:id/events"), ("show", "GET /api/sessions/:id"),
                           ("list_all", "GET /api/sessions (unfiltered)")):
            q = g["queries"][key]
            add(0 if key != "list_all" else 0, "g " + label, ms(q["ms"]["p50"]), ms(q["ms"]["p99"]),
                "%d rows, %s; n=%d" % (q["rows"], kib(q["bytes"]), q["ms"]["n"]))
        add(0, "g database file, WAL", mib(g["db_bytes"]), mib(g["wal_bytes"]), "after the queries")
        add(0, "g RSS idle, after the queries", mib(g["idle"]["rss"]), mib(g["after"]["rss"]),
            "HWM %s, %s threads" % (mib(g["after"]["hwm"]), g["after"]["threads"]))
    j = results.get("j")
    if j:
        r = j["repo"]
        add(0, "j generated repository: objects, HEAD files", mib(r["object_bytes"]), mib(r["head_tree_bytes"]),
            "%d files at HEAD, %d commits; generated in %.0f s" % (r["files"], r["commits"], j["generate_s"]))
        plain = j["plain"]
        add(0, "j no mirror: plain clone of the URL", ms(statistics.median(p["clone_ms"] for p in plain)),
            mib(statistics.median(p["disk_bytes"] for p in plain)), "n=%d; wall, disk per clone (before this change)" % len(plain))
        add(1, "CPU of that clone", ms(statistics.median(p["cpu_ms"] for p in plain)), "", "git's user + sys")
        for kind, label in (("mirror", "j mirror (URL)"), ("local", "j local path (hard links)")):
            k = j[kind]
            first = k["first"]
            add(0, label + ": 1st session clone, disk", ms(first["clone_ms"]), mib(first["added_bytes"]),
                "mirror %s + .git %s + files %s" % (mib(first["mirror_bytes"]), mib(first["git_bytes"]), mib(first["tree_bytes"])))
            add(1, "following sessions: clone", ms(k["following_clone_ms"].get("p50")), ms(k["following_clone_ms"].get("max")),
                "p50, max; n=%d" % k["following_clone_ms"]["n"])
            add(1, "following sessions: disk added", mib(k["following_added_bytes"].get("p50")), mib(k["following_added_bytes"].get("max")),
                "p50, max; .git %s, files %s (p50)" % (mib(k["following_git_bytes"].get("p50")), mib(k["following_tree_bytes"].get("p50"))))
            add(1, "same clone replayed with git: wall, CPU", ms(k["replayed"]["wall_ms"].get("p50")),
                ms(k["replayed"]["cpu_ms"].get("p50")), "p50, p50; n=%d; CPU = git's user + sys" % k["replayed"]["cpu_ms"]["n"])
            add(1, "collect all (POST /admin/gc)", ms(k["gc"]["wall_ms"]), mib(k["gc"]["bytes_freed"]),
                "%s removed (workspaces%s)" % (k["gc"]["removed"], " and the mirror" if kind == "mirror" else ""))
        t = j["target"]
        if t["max_added_share"] is not None:
            add(0, "j target: later sessions <= 10% objects, <= 1 s", "%.1f%%" % (100 * t["max_added_share"]),
                ms(t["max_clone_ms"]), "worst following mirror session (files + .git): %s" % ("met" if t["met"] else "NOT met"))
            add(1, ".git alone; clone CPU (replayed)", "%.2f%%" % (100 * t["max_git_share"]), ms(t["replayed_cpu_ms"]),
                "what cloning adds beside the checked-out files; max")
    h = results.get("h")
    if h:
        add(0, "h %d chunks to %d SSE clients" % (h["chunks"], h["clients"]), "%d/%d ok" % (h["clients_complete"], h["clients"]),
            "%d events" % h["events"], "%d output events (coalesced), chunks %s" % (
                h["output_events"], "intact" if h["chunks_intact"] else "NOT intact"))
        add(1, "delivery lag, live events", ms(h["lag_ms"]["p50"]), ms(h["lag_ms"]["p99"]),
            "n=%d; recv vs createdAt (1 ms res.), max %s" % (h["lag_ms"]["n"], ms(h["lag_ms"].get("max"))))
        add(1, "fan-out spread per event", ms(h["fanout_spread_ms"].get("p50")), ms(h["fanout_spread_ms"].get("p99")),
            "last - first client to receive it")
        add(1, "peak RSS streaming, idle", mib(h["peak_rss"]), mib(h["idle"]["rss"]),
            "HWM %s; %s threads at peak; stream %s" % (mib(h["hwm"]), h["peak_threads"], ms(h["stream_ms"])))
    i = results.get("i")
    if i:
        runtime_rows(add, i)
    k = results.get("k")
    if k:
        add(0, "k dashboard 1st page, %d sessions" % k["counts"]["sessions"], ms(k["first_page_ms"]["p50"]),
            ms(k["first_page_ms"]["p99"]), "shell + whoami + 50 rows; target p99 < %d ms: %s" % (
                DASHBOARD_PAGE_TARGET_MS, "met" if k["targets"]["first_page_ms"]["met"] else "MISSED"))
        for key, label in (("shell", "GET / (HTML shell)"), ("whoami", "GET /ui/whoami"),
                           ("first_page", "GET /ui/sessions?limit=50"), ("deep_page", "... a page near the oldest"),
                           ("filtered_page", "... ?status=error"), ("api_first_page", "GET /api/sessions?limit=50")):
            q = k["queries"][key]
            add(1, label, ms(q["ms"]["p50"]), ms(q["ms"]["p99"]),
                "n=%d%s" % (q["ms"]["n"], "" if q["rows"] is None else ", %d rows" % q["rows"]))
        add(0, "k dashboard first load", kib(k["first_load_bytes"]), "%d files" % k["first_load_files"],
            "uncompressed; target < 100 KiB: %s" % ("met" if k["targets"]["first_load_bytes"]["met"] else "MISSED"))
    approvals = results.get("l")
    if approvals:
        approval_rows(add, approvals)
    m = results.get("m")
    if m:
        add(0, "m notification: commit -> receiver, one at a time", ms(m["sequential_ms"]["p50"]), ms(m["sequential_ms"]["p99"]),
            "n=%d; receiver clock vs createdAt (1 ms res.)" % m["sequential_ms"]["n"])
        add(0, "m notification: burst of %d sessions" % m["burst"], ms(m["burst_ms"]["p50"]), ms(m["burst_ms"]["p99"]),
            "max %s" % ms(m["burst_ms"].get("max")))
        add(1, "retried once (500 first)", ms(m["retried_ms"]), "", "includes the backoff (0.5-1 s)")
        add(1, "signatures, duplicates accepted", "ok" if m["signatures_ok"] else "BAD", str(m["duplicates_accepted"]),
            "outbox after: %s" % ", ".join("%s %s" % kv for kv in sorted(m["outbox"].items())))
    return rows


def runtime_rows(add, i):
    """Rows of section i."""
    names = {"bare": "bare mock agent", "native": "native runtime", "acpx": "acpx runtime"}
    for kind in ("bare", "native", "acpx"):
        lat = i["latency_ms"][kind]
        add(0 if kind == "bare" else 1, "i end-to-end: " + names[kind], ms(lat["p50"]), ms(lat["p99"]),
            "n=%d, interleaved; %s" % (i["n"], "spawn -> exit" if kind == "bare" else "POST -> done seen"))
    add(0, "i overhead over the bare agent: native, acpx", "%+.0f ms" % i["overhead_ms"]["native"],
        "%+.0f ms" % i["overhead_ms"]["acpx"], "difference of the medians (includes the workspace clone)")
    add(0, "i CPU per session: native, acpx", ms(i["cpu_ms"]["native"]["p50"]), ms(i["cpu_ms"]["acpx"]["p50"]),
        "p50; daemon + agent + git (+ acpx/node); bare agent %s" % ms(i["cpu_ms"]["bare"]["p50"]))
    add(1, "daemon's own CPU: native, acpx", ms(i["daemon_cpu_ms"]["native"]["p50"]), ms(i["daemon_cpu_ms"]["acpx"]["p50"]), "p50")
    bursts = {}
    for b in i["bursts"]:
        bursts.setdefault(b["sessions"], {})[b["kind"]] = b
    for size, by in sorted(bursts.items()):
        for kind in ("bare", "native", "acpx"):
            b = by.get(kind)
            if b:
                add(0 if kind == "bare" else 1, "i burst %d: %s wall, peak tree RSS" % (size, names[kind]), "%.2f s" % b["wall_s"],
                    mib(b["peak_tree_rss"]), "%d ok, %d procs at peak, CPU %s/session" % (
                        b["complete"], b["peak_processes"], ms(b["cpu_ms_per_session"])))
    labels = {
        "burst20_wall_ratio": ("i target: burst 20 wall, native / acpx", "x%.3f"),
        "overhead_ms": ("i target: native overhead p50", "%.0f ms"),
        "cpu_ms": ("i target: native CPU per session", "%.0f ms"),
        "burst20_rss_ratio": ("i target: burst 20 tree RSS, native / acpx", "x%.3f"),
    }
    for key, (label, fmt) in labels.items():
        t = i["targets"].get(key)
        if t:
            add(0, label, fmt % t["value"], ("<= " + fmt) % t["target"], "met" if t["met"] else "MISSED")


HEADER = ("figure", "p50/value", "p99/2nd", "note")


def table(results):
    rows = [(r[1] if r[0] == 0 else "    " + r[1],) + r[2:] for r in table_rows(results)]
    widths = [max(len(str(r[i])) for r in rows + [HEADER]) for i in range(4)]
    lines = []
    for i, row in enumerate([HEADER] + rows):
        cells = [str(v).ljust(widths[j]) if j in (0, 3) else str(v).rjust(widths[j]) for j, v in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results):
    """The same table as Markdown, for bench/README.md."""
    out = ["| " + " | ".join(HEADER) + " |", "|---|---:|---:|---|"]
    for level, *cells in table_rows(results):
        cells = [str(c).replace("|", "\\|") for c in cells]
        if level:
            cells[0] = "&nbsp;&nbsp;" + cells[0]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="profile", action="store_const", const="quick", help="about 2-3 minutes (default)")
    mode.add_argument("--full", dest="profile", action="store_const", const="full", help="larger N, bursts of 20 and 100, 10,000 stored sessions; about 15-25 minutes")
    parser.add_argument("--acpx", default=os.path.join(ROOT, "node_modules", ".bin", "acpx"),
                        help="acpx executable (default node_modules/.bin/acpx)")
    parser.add_argument("--only", default="abcdefghijklm", help="sections to run, e.g. 'ad' (default abcdefghijklm)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="native",
                        help="runtime of the daemons of sections a-h (default native); i runs both")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args()
    profile_name = args.profile or "quick"
    profile = PROFILES[profile_name]
    RUNTIME["name"] = args.runtime

    acpx = shutil.which(args.acpx) or args.acpx
    if not (os.path.isfile(acpx) and os.access(acpx, os.X_OK)):
        raise BenchError("acpx not found at %s: run scripts/setup (npm ci) or pass --acpx" % args.acpx)
    if not os.access(BINARY, os.X_OK):
        raise BenchError("%s missing: run cargo build --release (scripts/bench does)" % BINARY)
    for tool in ("git", "python3"):
        if not shutil.which(tool):
            raise BenchError("%s is required" % tool)

    started = datetime.datetime.now(datetime.timezone.utc)
    busy0, own0, wall0 = machine_busy_s(), own_cpu_s(), time.monotonic()
    workdir = tempfile.mkdtemp(prefix="telecoder-bench-")
    CLEANUP.dirs.append(workdir)
    repo = make_repo(os.path.join(workdir, "repo"))
    clone = os.path.join(workdir, "clone")
    subprocess.run(["git", "clone", "-q", "--local", repo, clone], check=True)

    results = {
        "profile": profile_name,
        "profile_settings": profile,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg_start": loadavg(),
        "machine": machine(),
        "versions": versions(acpx),
        "runtime": args.runtime,
    }
    log("profile %s, work dir %s" % (profile_name, workdir))
    sections = args.only
    if "a" in sections or "b" in sections or "e" in sections:
        daemon = Daemon(workdir, "latency", acpx)
        results["default_max_concurrent"] = int(daemon.config()["maxConcurrentSessions"])
        daemon.start()
        time.sleep(0.5)
        if "a" in sections or "e" in sections:
            results["a"] = bench_start_latency(daemon.api, repo, profile["start_n"])
        if "b" in sections:
            results["b"] = bench_overhead(daemon.api, acpx, repo, clone, profile["overhead_n"])
        daemon.stop()
    if "c" in sections:
        results["c"] = bench_footprint(workdir, acpx, repo, profile)
    if "d" in sections:
        results["d"] = []
        for n in profile["burst_sizes"]:
            results["d"].append(bench_burst(workdir, acpx, repo, n, "default", {}))
            results["d"].append(bench_burst(workdir, acpx, repo, n, "1000", {"TELECODER_MAX_CONCURRENT_SESSIONS": "1000"}))
    # The sections that start their own daemons, in the order they run.
    own_daemons = {
        "f": lambda: bench_ingestion(workdir, acpx, repo, profile),
        "g": lambda: bench_scale(workdir, acpx, repo, profile),
        "h": lambda: bench_streaming(workdir, acpx, repo, profile),
        "i": lambda: bench_runtimes(workdir, acpx, repo, clone, profile),
        "j": lambda: bench_workspaces(workdir, acpx, profile),
        "k": lambda: bench_dashboard(workdir, acpx, repo, profile),
        "l": lambda: bench_approvals(workdir, acpx, repo, profile),
        "m": lambda: bench_notify(workdir, acpx, repo, profile),
    }
    for section, run in own_daemons.items():
        if section in sections:
            results[section] = run()
    finished = datetime.datetime.now(datetime.timezone.utc)
    results["duration_s"] = (finished - started).total_seconds()
    results["loadavg_end"] = loadavg()
    # Everything the bench started has been stopped and reaped by now, so the rest of the
    # machine's busy time belongs to other processes: the noise floor of this run.
    busy, own, wall = machine_busy_s() - busy0, own_cpu_s() - own0, time.monotonic() - wall0
    results["cpu"] = {
        "machine_busy_s": busy,
        "bench_s": own,
        "other_s": max(0.0, busy - own),
        "other_share": max(0.0, busy - own) / (wall * results["machine"]["nproc"]),
    }
    results["anomalies"] = ANOMALIES
    results["daemon_warnings"] = DAEMON_WARNINGS[:200]

    os.makedirs(RESULTS_DIR, exist_ok=True)
    out_path = os.path.join(RESULTS_DIR, started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)
    m = results["machine"]
    print()
    print("TeleCoder bench (%s) %s  commit %s  runtime %s (a-h)  acpx %s" % (
        profile_name, results["started_at"], results["versions"]["telecoder_commit"], args.runtime,
        results["versions"]["acpx"]))
    print("%d CPUs (%s), %s RAM, kernel %s, took %.0f s, load average %s -> %s" % (
        m["nproc"], m["cpu_model"], "%.1f GiB" % (m["mem_total_bytes"] / 2.0 ** 30), m["kernel"], results["duration_s"],
        results["loadavg_start"], results["loadavg_end"]))
    print("CPU: bench %.0f s, other processes %.0f s (%.0f%% of the machine's capacity during the run)" % (
        results["cpu"]["bench_s"], results["cpu"]["other_s"], 100 * results["cpu"]["other_share"]))
    print()
    print(table(results))
    if args.markdown:
        print()
        print(markdown_table(results))
    if ANOMALIES or DAEMON_WARNINGS:
        print()
        print("%d anomalies, %d daemon WARN/ERROR log lines (see the JSON):" % (len(ANOMALIES), len(DAEMON_WARNINGS)))
        for line in (ANOMALIES + DAEMON_WARNINGS)[:10]:
            print("  " + line[:300])
    print()
    print("results: %s" % os.path.relpath(out_path, os.getcwd()))


def on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    # A shell without job control starts background jobs with SIGINT ignored; take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    try:
        main()
    except BenchError as err:
        log("error: %s" % err)
        code = 1
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        CLEANUP.run()
    sys.exit(code)
