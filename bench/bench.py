#!/usr/bin/env python3
"""TeleCoder benchmark driver (python3 stdlib only).

Starts `target/release/telecoder serve` daemons on free ports with throwaway data directories,
drives them over HTTP with the project's mock ACP agent, and measures:

  a. start latency   POST /api/sessions latency, and POST returned -> first event (SSE)
  b. overhead        bare `acpx exec` vs the same prompt through the daemon (interleaved)
  c. footprint       daemon RSS / threads idle at start-up and after N finished sessions
  d. burst           N sessions submitted at once, default vs unlimited concurrency
  e. clone cost      "setting up workspace" -> "running acpx" event gap

Nothing is asserted: figures are printed as a table and written to
bench/results/<UTC timestamp>.json. Usually run through scripts/bench, which installs acpx and
builds the release binary first. See bench/README.md.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
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

PROFILES = {
    "quick": {
        "start_n": 20,
        "overhead_n": 10,
        "footprint_n": 200,
        "footprint_seed_to": 0,
        "burst_sizes": [20],
    },
    "full": {
        "start_n": 50,
        "overhead_n": 30,
        # 1,000 real sessions through the API, then the database is seeded with copies of
        # finished rows up to 10,000 (see seed_finished_sessions) and the daemon restarted.
        "footprint_n": 1000,
        "footprint_seed_to": 10000,
        "burst_sizes": [20, 100],
    },
}


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

    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.samples = []  # (t, daemon_rss, tree_rss, processes, threads)
        self._halt = threading.Event()

    def run(self):
        t0 = time.perf_counter()
        while not self._halt.is_set():
            rss, tree, procs = tree_rss(self.pid)
            threads = proc_status(self.pid).get("Threads", 0)
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
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "event":
                    kind = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = value
        finally:
            conn.close()

    def wait_idle(self, expected_ids=None, period=0.05, timeout=600):
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
        self.children = []  # Popen of bare acpx runs
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


def kill_group(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
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
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            if self.proc.poll() is not None:
                raise BenchError(
                    "telecoder serve exited with code %s:\n%s" % (self.proc.returncode, self.log_tail())
                )
            if time.monotonic() > deadline:
                raise BenchError("telecoder serve did not log its address within %d s" % timeout)
            with open(self.log_path, errors="replace") as f:
                found = self.LISTEN_RE.search(f.read())
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
        stored = api.get("/api/sessions/%s/events" % session["id"])
        raise BenchError(
            "SSE for %s ended without done/error after %s; stored events: %s"
            % (session["id"], kinds, [(e["id"], e["type"]) for e in stored])
        )
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
        "acpx_to_first_output": gap(at.get("running"), at.get("output")),
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
        if rc != 0:
            err.seek(0)
            raise BenchError("bare acpx exited %s: %s" % (rc, err.read().decode()[-2000:]))
    return {
        "end_to_end_ms": (t1 - t0) * 1000,
        "first_output_ms": (first_output - t0) * 1000 if first_output else None,
    }


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
            for key in ("clone", "acpx_to_first_output", "first_output_to_done", "created_to_done")
        },
        "clone_ms": summary(server_col("clone")),
        "runs": runs,
    }


def bench_overhead(api, acpx, repo, clone, n):
    log("b: %d x bare acpx vs daemon, interleaved (+1 warm-up each)" % n)
    run_bare_acpx(acpx, clone, "@mock say hi")
    run_session(api, repo, "@mock say hi", fetch_events=False)
    bare, daemon = [], []
    for i in range(n):
        # alternate which kind goes first so neither always runs on a "warmer" machine
        order = ("bare", "daemon") if i % 2 == 0 else ("daemon", "bare")
        for kind in order:
            if kind == "bare":
                bare.append(run_bare_acpx(acpx, clone, "@mock say hi"))
            else:
                daemon.append(run_session(api, repo, "@mock say hi", fetch_events=False))
    bare_med = statistics.median(r["end_to_end_ms"] for r in bare)
    daemon_med = statistics.median(r["end_to_end_ms"] for r in daemon)
    return {
        "n": n,
        "bare_ms": summary([r["end_to_end_ms"] for r in bare]),
        "daemon_ms": summary([r["end_to_end_ms"] for r in daemon]),
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
    t0 = time.perf_counter()
    ids = [daemon.api.create(repo, "@mock say x")["id"] for _ in range(n)]
    t_submitted = time.perf_counter()
    t_idle = daemon.api.wait_idle(period=0.25, timeout=max(600, n * 3))
    samples = sampler.stop()
    errors = daemon.api.get("/api/sessions?status=error")
    result.update(
        {
            "sessions": n,
            "submit_s": t_submitted - t0,
            "drain_s": t_idle - t0,
            "sessions_per_s": n / (t_idle - t0),
            "errors": len(errors),
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


def bench_burst(workdir, acpx, repo, n, limit_label, extra_env):
    log("d: burst of %d '@mock sleep 1', concurrency %s" % (n, limit_label))
    daemon = Daemon(workdir, "burst-%d-%s" % (n, limit_label), acpx, extra_env)
    limit = daemon.config().get("TELECODER_MAX_CONCURRENT_SESSIONS")
    daemon.start()
    time.sleep(1)
    idle = daemon.footprint()
    barrier = threading.Barrier(n + 1)
    ids, errors = [None] * n, []

    def submit(i):
        barrier.wait()
        try:
            ids[i] = daemon.api.create(repo, "@mock sleep 1")["id"]
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
# set-up, machine, report


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


def ms(value):
    return "-" if value is None else ("%.1f ms" % value if value < 100 else "%.0f ms" % value)


def table(results):
    rows = []  # (figure, p50/value, p99, note)
    a, b, c, e = results.get("a"), results.get("b"), results.get("c"), results.get("a")
    if a:
        rows.append(("a POST /api/sessions", ms(a["post_ms"]["p50"]), ms(a["post_ms"]["p99"]), "n=%d" % a["n"]))
        rows.append(("a start latency: POST -> 1st event (SSE)", ms(a["first_event_ms"]["p50"]), ms(a["first_event_ms"]["p99"]), "client clock"))
        s = a["server_created_to_first_event_ms"]
        rows.append(("a   server: created -> 1st event", ms(s["p50"]), ms(s["p99"]), "createdAt, 1 ms res."))
        rows.append(("a session end-to-end (say hi)", ms(a["end_to_end_ms"]["p50"]), ms(a["end_to_end_ms"]["p99"]), "POST -> done seen"))
        for key, label in (
            ("acpx_to_first_output", "a   'running acpx' -> 1st output"),
            ("first_output_to_done", "a   1st output -> done"),
        ):
            s = a["phases_ms"][key]
            rows.append((label, ms(s["p50"]), ms(s["p99"]), "server timestamps"))
    if b:
        rows.append(("b bare acpx exec", ms(b["bare_ms"]["p50"]), ms(b["bare_ms"]["p99"]), "n=%d, interleaved" % b["n"]))
        rows.append(("b through daemon", ms(b["daemon_ms"]["p50"]), ms(b["daemon_ms"]["p99"]), "POST -> done seen"))
        rows.append(("b overhead (median diff / ratio)", "%+.0f ms" % b["overhead_ms"], "x%.3f" % b["ratio"], ""))
        rows.append(("b   1st output: bare / daemon", ms(b["bare_first_output_ms"]["p50"]), ms(b["daemon_first_output_ms"]["p50"]), "p50 / p50"))
    if c:
        rows.append(("c daemon start-up (spawn -> /health)", ms(c["startup_ms"]), "", ""))
        rows.append(("c idle RSS / threads", mib(c["idle"]["rss"]), "%s thr" % c["idle"]["threads"], "after 2 s idle"))
        rows.append(("c RSS / threads after %d sessions" % c["sessions"], mib(c["after"]["rss"]), "%s thr" % c["after"]["threads"],
                     "HWM %s, %d errors" % (mib(c["after"]["hwm"]), c["errors"])))
        rows.append(("c   %d sessions drained in" % c["sessions"], "%.1f s" % c["drain_s"], "%.2f/s" % c["sessions_per_s"], "default limit"))
        rows.append(("c   GET /api/sessions | /api/inbox", ms(c["after"]["list_ms"]), ms(c["after"]["inbox_ms"]), ""))
        seeded = c.get("seeded")
        if seeded:
            r = seeded["restarted_idle"]
            rows.append(("c RSS / threads at %d (seeded, restarted)" % seeded["total_sessions"], mib(r["rss"]), "%s thr" % r["threads"],
                         "%d rows inserted" % seeded["rows_inserted"]))
            rows.append(("c   GET /api/sessions | /api/inbox", ms(r["list_ms"]), ms(r["inbox_ms"]), "%d sessions" % seeded["total_sessions"]))
            r = seeded["after_20_more"]
            rows.append(("c   after 20 more real sessions", mib(r["rss"]), "%s thr" % r["threads"], "HWM %s" % mib(r["hwm"])))
    for d in results.get("d", []):
        label = "d burst %d, limit %s" % (d["sessions"], d["max_concurrent"])
        rows.append((label + ": wall", "%.2f s" % d["wall_s"], "%.2f/s" % d["sessions_per_s"],
                     "%d ok, server %.2f s" % (d["complete"], d["server_wall_s"] or 0)))
        rows.append(("d   peak RSS daemon | tree", mib(d["peak_rss"]), mib(d["peak_tree_rss"]),
                     "%d procs, %d thr" % (d["peak_processes"], d["peak_threads"])))
        rows.append(("d   queued (created -> started)", ms(d["queued_ms"]["p50"]), ms(d["queued_ms"]["p99"]), ""))
        rows.append(("d   clone under burst", ms(d["clone_ms"]["p50"]), ms(d["clone_ms"]["p99"]), ""))
    bursts = {}
    for d in results.get("d", []):
        bursts.setdefault(d["sessions"], {})[d["limit"]] = d
    for n, pair in sorted(bursts.items()):
        if "default" in pair and "1000" in pair:
            lo, hi = pair["default"], pair["1000"]
            rows.append(("d burst %d: limit 1000 vs default" % n, "x%.2f wall" % (hi["wall_s"] / lo["wall_s"]),
                         "x%.2f tree" % (hi["peak_tree_rss"] / lo["peak_tree_rss"]), "ratios (1000 / default)"))
    if e:
        rows.append(("e clone (setting up -> running acpx)", ms(e["clone_ms"]["p50"]), ms(e["clone_ms"]["p99"]), "sessions of (a)"))
    header = ("figure", "p50/value", "p99/2nd", "note")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    lines = []
    for i, row in enumerate([header] + rows):
        lines.append("  ".join(str(v).ljust(widths[j]) if j in (0, 3) else str(v).rjust(widths[j]) for j, v in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results):
    """The same table as Markdown, for bench/README.md."""
    lines = table(results).splitlines()
    out = []
    for i, line in enumerate(lines):
        if i == 1:
            out.append("|---|---:|---:|---|")
            continue
        cells = re.split(r"\s{2,}", line.strip())
        while len(cells) < 4:
            cells.append("")
        out.append("| " + " | ".join(cells[:4]) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="profile", action="store_const", const="quick", help="about 2-3 minutes (default)")
    mode.add_argument("--full", dest="profile", action="store_const", const="full", help="larger N; tens of minutes")
    parser.add_argument("--acpx", default=os.environ.get("TELECODER_ACPX_COMMAND") or os.path.join(ROOT, "node_modules", ".bin", "acpx"),
                        help="acpx executable (default node_modules/.bin/acpx)")
    parser.add_argument("--only", default="abcde", help="sections to run, e.g. 'ad' (default abcde)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args()
    profile_name = args.profile or "quick"
    profile = PROFILES[profile_name]

    acpx = shutil.which(args.acpx) or args.acpx
    if not (os.path.isfile(acpx) and os.access(acpx, os.X_OK)):
        raise BenchError("acpx not found at %s: run scripts/setup (npm ci) or pass --acpx" % args.acpx)
    if not os.access(BINARY, os.X_OK):
        raise BenchError("%s missing: run cargo build --release (scripts/bench does)" % BINARY)
    for tool in ("git", "python3"):
        if not shutil.which(tool):
            raise BenchError("%s is required" % tool)

    started = datetime.datetime.now(datetime.timezone.utc)
    workdir = tempfile.mkdtemp(prefix="telecoder-bench-")
    CLEANUP.dirs.append(workdir)
    repo = make_repo(os.path.join(workdir, "repo"))
    clone = os.path.join(workdir, "clone")
    subprocess.run(["git", "clone", "-q", "--local", repo, clone], check=True)

    results = {
        "profile": profile_name,
        "profile_settings": profile,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "versions": versions(acpx),
    }
    log("profile %s, work dir %s" % (profile_name, workdir))
    sections = args.only
    if "a" in sections or "b" in sections or "e" in sections:
        daemon = Daemon(workdir, "latency", acpx)
        results["default_max_concurrent"] = int(daemon.config()["TELECODER_MAX_CONCURRENT_SESSIONS"])
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
    finished = datetime.datetime.now(datetime.timezone.utc)
    results["duration_s"] = (finished - started).total_seconds()

    os.makedirs(RESULTS_DIR, exist_ok=True)
    out_path = os.path.join(RESULTS_DIR, started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)
    m = results["machine"]
    print()
    print("TeleCoder bench (%s) %s  commit %s  acpx %s" % (
        profile_name, results["started_at"], results["versions"]["telecoder_commit"], results["versions"]["acpx"]))
    print("%d CPUs (%s), %s RAM, kernel %s, took %.0f s" % (
        m["nproc"], m["cpu_model"], "%.1f GiB" % (m["mem_total_bytes"] / 2.0 ** 30), m["kernel"], results["duration_s"]))
    print()
    print(table(results))
    if args.markdown:
        print()
        print(markdown_table(results))
    print()
    print("results: %s" % os.path.relpath(out_path, os.getcwd()))


def on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
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
