#!/usr/bin/env python3
"""Run Connect's official extension runner (cextrun) against the connect-usage sandbox.

usage: run.py [VENV] [CONNECT_USAGE]   (defaults: /tmp/cextrun/venv ./target/debug/connect-usage)
       run.py --help                   (more options)

VENV must hold `connect-extension-runner` (it provides bin/cextrun). The script makes a
throwaway CA and certificate, starts the sandbox with TLS on a free port, installs the probe
extension next to this script into VENV, starts `cextrun -n` against the sandbox and checks,
through the sandbox's /sandbox/platform records, that every event kind connect-usage relies on
works end to end: interactive custom events, a live variable change, usage file background
tasks (from real `connect-usage report` runs and explicit submissions, including the runner's
own `skip`), a fired schedule, and a clean shutdown. It needs only the Python standard library.

Exit status: 0 all checks passed, 1 a check failed, 2 the check could not run.
"""
import argparse
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROBE_DIR = os.path.join(HERE, "probe")
PROBE_DIST = "cextrun-probe"

# The default dataset's extension and vendor (see `connect-usage sandbox --dump-data`).
EXTENSION_KEY = "ApiKey SU-391-274-002:d3d9446802a44259755d38e6d163e820"
VENDOR_KEY = "ApiKey SU-391-274-001:8f14e45fceea167a5a36dedd4bea2543"
ENVIRONMENT_ID = "ENV-7391-2740-03"
SERVICE_ID = "SRVC-7391-2740"
SCHEDULE_ID = "EFS-7391-2740-001"
USAGE_TOKEN = "sandbox-usage-token-4f0b2c9d71e8"
DEFAULT_BINARY = "target/debug/connect-usage"

# What the probe declares (probe/cextrun_probe/app.py).
GREETING, GREETING_INITIAL = "PROBE_GREETING", "hello from the probe"
SECRET, SECRET_INITIAL = "PROBE_SECRET", "probe-secret-initial"
STATUSES = ["ready", "pending"]
# The official runner's answer when the object is no longer in a subscribed status.
SKIP_MESSAGE = f"The request status does not match the supported statuses: {','.join(STATUSES)}."

FINAL = {"succeeded", "failed", "skipped"}


class CannotRun(Exception):
    """The check could not be set up (exit 2), as opposed to a failed check (exit 1)."""


# ----------------------------------------------------------------------------- reporting

RESULTS = []  # (ok, what, detail)


def check(ok, what, detail=""):
    ok = bool(ok)
    RESULTS.append((ok, what, detail))
    print(f"  {'ok  ' if ok else 'FAIL'} {what}" + ("" if ok or not detail else f"\n         -> {detail}"),
          flush=True)
    return ok


def section(title):
    print(f"\n{title}", flush=True)


def short(value, limit=400):
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------- http

class Api:
    def __init__(self, origin, cafile):
        self.origin = origin
        self.ctx = ssl.create_default_context(cafile=cafile)

    def call(self, method, path, body=None, key=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.origin + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", key)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def ok(self, method, path, body=None, key=None, timeout=30):
        status, data = self.call(method, path, body, key, timeout)
        if status // 100 != 2:
            raise AssertionError(f"{method} {path} answered {status}: {short(data)}")
        return data

    def platform(self):
        return self.ok("GET", "/sandbox/platform")

    def tasks(self):
        return self.platform()["tasks"]


def wait_for(what, probe, timeout, interval=0.25):
    """Call probe() until it returns something truthy; None after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            print(f"  .... gave up waiting for {what} after {timeout}s", flush=True)
            return None
        time.sleep(interval)


def wait_final(api, task_ids, timeout=60):
    """Wait until every task in task_ids is final; returns {id: task}."""
    task_ids = set(task_ids)

    def done():
        by_id = {t["id"]: t for t in api.tasks() if t["id"] in task_ids}
        if len(by_id) == len(task_ids) and all(t["status"] in FINAL for t in by_id.values()):
            return by_id
        return None

    found = wait_for(f"tasks {sorted(task_ids)} to finish", done, timeout)
    if found is None:
        return {t["id"]: t for t in api.tasks() if t["id"] in task_ids}
    return found


def task_message(task):
    out = task.get("final_output") or {}
    return out.get("message")


def background_ok(task):
    """A usage file task is right when the runner processed it or skipped it for its status."""
    if task["status"] == "succeeded":
        return (task.get("final_output") or {}).get("result") == "success"
    if task["status"] == "skipped":
        return task_message(task) == SKIP_MESSAGE
    return False


def describe(task):
    out = task.get("final_output") or {}
    return (f"{task['id']} {task['object']['id']} status={task['status']} result={out.get('result')} "
            f"message={short(out.get('message') or task.get('output') or '', 200)!r}")


# ----------------------------------------------------------------------------- processes

class Proc:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def send(self, sig, group=False):
        if not self.alive():
            return
        try:
            if group:
                os.killpg(self.p.pid, sig)  # the group this script created for it
            else:
                self.p.send_signal(sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGINT, timeout=20):
        """Stop it and anything it started in its group; returns its exit code."""
        if self.alive():
            self.send(sig, group=True)
            if self.wait(timeout) is None:
                self.send(signal.SIGKILL, group=True)
                self.wait(5)
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        return self.p.returncode

    def leftovers(self):
        """Processes still in the group created for this child (workers of a dead cextrun)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.p.pid:  # the process group id
                found.append(int(entry))
        return found


def run_quiet(argv, env=None, cwd=None, timeout=600):
    r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def clean_env(**extra):
    """This process's environment without proxies or certificate overrides, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")
           and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- the check

class Check:
    def __init__(self, args):
        self.args = args
        self.venv = os.path.abspath(args.venv)
        self.binary = os.path.abspath(args.connect_usage)
        if args.connect_usage == DEFAULT_BINARY and not os.path.exists(self.binary):
            self.binary = os.path.join(REPO, DEFAULT_BINARY)  # run from outside the repository
        self.python = os.path.join(self.venv, "bin", "python")
        self.cextrun = os.path.join(self.venv, "bin", "cextrun")
        self.tmp = tempfile.mkdtemp(prefix="cextrun_check.")
        self.tls = os.path.join(self.tmp, "tls")
        self.cafile = os.path.join(self.tls, "ca.pem")
        self.sandbox = None
        self.runner = None
        self.runner_rc = None
        self.probe_installed = False
        self.instance = f"cextrun-check-{os.getpid()}"

    # -- setup

    def preflight(self):
        for path, what in ((self.binary, "connect-usage binary"), (self.cextrun, "cextrun in the venv"),
                           (self.python, "python in the venv")):
            if not os.access(path, os.X_OK):
                raise CannotRun(f"{what} not found: {path}")
        if not shutil.which("openssl"):
            raise CannotRun("openssl is needed to make the test certificates")
        rc, out, err = run_quiet([self.python, "-c",
                                  "import importlib.metadata as m;"
                                  "print(m.version('connect-extension-runner'), m.version('connect-eaas-core'))"])
        if rc != 0:
            raise CannotRun(f"the venv has no connect-extension-runner: {err.strip()}")
        runner_version, core_version = out.split()
        print(f"connect-extension-runner {runner_version}, connect-eaas-core {core_version} in {self.venv}")
        print(f"sandbox binary {self.binary}")
        print(f"scratch directory {self.tmp}")

    def make_certs(self):
        rc, out, err = run_quiet(["sh", os.path.join(REPO, "scripts", "sandbox-tls-cert.sh"), self.tls])
        if rc != 0:
            raise CannotRun(f"sandbox-tls-cert.sh failed: {err or out}")

    def start_sandbox(self):
        self.sandbox = Proc("sandbox", [self.binary, "sandbox", "--listen", "127.0.0.1:0",
                                        "--tls-cert", os.path.join(self.tls, "cert.pem"),
                                        "--tls-key", os.path.join(self.tls, "key.pem")],
                            os.path.join(self.tmp, "sandbox.log"), env=clean_env(), cwd=self.tmp)

        def address():
            if not self.sandbox.alive():
                raise CannotRun(f"the sandbox exited at start:\n{self.sandbox.text()[-2000:]}")
            m = re.search(r"Connect API\s+https://(127\.0\.0\.1:\d+)/public/v1", self.sandbox.text())
            return m.group(1) if m else None

        self.address = wait_for("the sandbox to listen", address, 30)
        if not self.address:
            raise CannotRun(f"the sandbox did not print its address:\n{self.sandbox.text()[-2000:]}")
        self.origin = f"https://{self.address}"
        self.api = Api(self.origin, self.cafile)
        info = self.api.ok("GET", "/sandbox/info")
        self.keys = info["keys"]
        print(f"sandbox (pid {self.sandbox.pid}) listening on {self.origin}")

    def install_probe(self):
        # Build from a copy so that no build/ or *.egg-info lands in the source tree.
        src = os.path.join(self.tmp, "probe")
        shutil.copytree(PROBE_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        rc, out, err = run_quiet([self.python, "-m", "pip", "install", "--quiet", "--no-deps",
                                  "--force-reinstall", src], env=clean_env(), cwd=self.tmp)
        if rc != 0:
            raise CannotRun(f"pip install of the probe failed (it needs setuptools from PyPI the first "
                            f"time):\n{out}{err}")
        self.probe_installed = True
        rc, out, err = run_quiet([self.python, "-c",
                                  "from importlib.metadata import entry_points;"
                                  "print([e.value for e in entry_points(group='connect.eaas.ext')])"],
                                 env=clean_env(), cwd=self.tmp)
        print(f"probe installed into the venv, connect.eaas.ext entry points: {out.strip()}")

    def start_runner(self):
        env = clean_env(
            API_KEY=EXTENSION_KEY, ENVIRONMENT_ID=ENVIRONMENT_ID, INSTANCE_ID=self.instance,
            SERVER_ADDRESS=self.address, API_ADDRESS=self.address,
            SSL_CERT_FILE=self.cafile, REQUESTS_CA_BUNDLE=self.cafile,
            PYTHONUNBUFFERED="1", COLUMNS="160",
        )
        self.runner = Proc("cextrun", [self.cextrun, "-n", "-d", "--no-rich-logging"],
                           os.path.join(self.tmp, "cextrun.log"), env=env, cwd=self.tmp)
        print(f"cextrun (pid {self.runner.pid}) started as instance {self.instance}")

    # -- phases

    def phase_connect(self):
        section("connection and setup")

        def sessions():
            if not self.runner.alive():
                return "dead"
            conns = [c for c in self.api.platform()["connections"] if c.get("instance") == self.instance]
            ready = {c.get("runner_type") for c in conns if c.get("setup_done")}
            return conns if {"interactive", "background"} <= ready else None

        conns = wait_for("both cextrun sessions to be set up", sessions, 60)
        if conns == "dead" or not conns:
            check(False, "cextrun opens an interactive and a background session and completes the setup",
                  "cextrun exited" if conns == "dead" else "not both sessions set up within 60 s")
            return False
        check(True, "cextrun opens an interactive and a background session and completes the setup "
                    f"({', '.join(sorted(c['runner_type'] for c in conns))})")
        platform = self.api.platform()
        subs = platform.get("subscriptions") or {}
        check(subs.get("usage_file_request_processing") == STATUSES
              and "product_custom_event_processing" in subs,
              "the sandbox took the probe's event subscriptions from the setup request", short(subs))
        names = {v["name"]: v for v in platform.get("variables") or []}
        check(names.get(GREETING, {}).get("value") == GREETING_INITIAL
              and names.get(SECRET, {}).get("secure") is True,
              "the probe's declared variables were created with their initial values "
              "(the secure one masked in /sandbox/platform)", short(platform.get("variables")))
        return True

    def interactive(self, payload):
        status, task = self.api.call("POST", "/sandbox/platform/tasks?wait_ms=15000", {
            "category": "interactive", "event_type": "product_custom_event_processing",
            "object_id": "PR-276-377-545", "data": payload}, timeout=30)
        if status // 100 != 2:
            raise AssertionError(f"POST /sandbox/platform/tasks answered {status}: {short(task)}")
        return task

    def phase_interactive(self):
        section("interactive: product_custom_event_processing")
        payload = {"method": "POST", "path": "/probe", "body": {"ping": 1, "tags": ["a", "b"]},
                   "headers": {"x-probe": "yes"}}
        task = self.interactive(payload)
        data = (task.get("final_output") or {}).get("data") or {}
        body = data.get("body") or {}
        check(task.get("status") == "succeeded" and len(task.get("deliveries", [])) == 1,
              "the custom event is delivered once and succeeds", describe(task))
        check(data.get("http_status") == 200, "the response carries http_status 200", short(data))
        check(body.get("echo") == payload, "the handler got the event payload unchanged", short(body))
        check(body.get("greeting") == GREETING_INITIAL and body.get("secret") == SECRET_INITIAL,
              "the handler reads the normal and the secure variable from its config", short(body))

    def phase_variables(self):
        section("a variable change pushed live")
        changed = {GREETING: "changed while running", SECRET: "rotated secret"}
        result = self.api.ok("PUT", "/sandbox/platform/setup", {"variables": changed})
        check((result or {}).get("sessions_updated") == 2,
              "the new setup_response went to both sessions", short(result))
        task = self.interactive({"after": "push"})
        body = ((task.get("final_output") or {}).get("data") or {}).get("body") or {}
        check(task.get("status") == "succeeded" and body.get("greeting") == changed[GREETING],
              "the next interactive task sees the new value", short(body))
        check(body.get("secret") == changed[SECRET], "the secure variable changed too", short(body))
        check(body.get("echo") == {"after": "push"}, "and its own payload", short(body))

    def report(self, period, extra, log_name):
        env = clean_env(API_KEY=VENDOR_KEY, USAGE_SOURCE=f"{self.origin}/vendor/v1/usage",
                        USAGE_SOURCE_TOKEN=USAGE_TOKEN, SSL_CERT_FILE=self.cafile)
        rc, out, err = run_quiet([self.binary, "report", "--period", period, "--api-address", self.origin,
                                  "--json", *extra], env=env, cwd=self.tmp, timeout=300)
        with open(os.path.join(self.tmp, log_name), "w") as f:
            f.write(err)
        try:
            return rc, json.loads(out)
        except ValueError:
            raise AssertionError(f"connect-usage report printed no summary (exit {rc}): {err[-1500:]}")

    def usage_tasks(self, file_ids, known=()):
        return [t for t in self.api.tasks()
                if t["object"]["type"] == "usage_file_request_processing"
                and t["object"]["id"] in file_ids and t["id"] not in known]

    def phase_report_submitted(self):
        section("background: usage files from `connect-usage report` (ready, then submitted: pending)")
        rc, summary = self.report("2024-04", [], "report-2024-04.log")
        files = [f["file_id"] for f in summary["files"] if f.get("file_id")]
        check(rc == 0 and files and all(f["status"] == "pending" for f in summary["files"]),
              f"connect-usage report created, uploaded and submitted {len(files)} files", short(summary))
        if not files:
            return []

        def arrived():
            tasks = self.usage_tasks(set(files))
            return tasks if {t["object"]["id"] for t in tasks} == set(files) else None

        wait_for("a task for every file", arrived, 30)
        tasks = wait_final(self.api, [t["id"] for t in self.usage_tasks(set(files))])
        tasks = list(tasks.values())
        per_file = {f: [t for t in tasks if t["object"]["id"] == f] for f in files}
        check(all(per_file.values()), "every file's status change produced a background task "
              f"({len(tasks)} tasks for {len(files)} files)",
              short({f: len(v) for f, v in per_file.items()}))
        bad = [describe(t) for t in tasks if not background_ok(t)]
        counts = {s: sum(t["status"] == s for t in tasks) for s in ("succeeded", "skipped")}
        check(not bad, "each one succeeded, or was skipped with the runner's exact status message "
              f"({counts['succeeded']} succeeded, {counts['skipped']} skipped)", "; ".join(bad[:5]))
        return files

    def phase_report_ready(self):
        section("background: usage files left in `ready` (processing delay, report not waiting)")
        self.api.ok("PUT", "/sandbox/config", {"processing_delay_ms": 3000})
        try:
            rc, summary = self.report("2024-05", ["--poll-timeout-secs", "1", "--poll-interval-ms", "200"],
                                      "report-2024-05.log")
        finally:
            self.api.ok("PUT", "/sandbox/config", {"processing_delay_ms": 0})
        files = [f["file_id"] for f in summary["files"] if f.get("file_id")]
        check(files and summary["groups"].get("waiting") == len(files),
              f"connect-usage report uploaded {len(files)} files and left them to the ready event "
              f"(exit {rc}, as expected when nothing was submitted)", short(summary["groups"]))
        if not files:
            return []

        def ready():
            states = {f["id"]: f["status"] for f in self.api.ok("GET", "/sandbox/state")["files"]}
            return all(states.get(f) == "ready" for f in files)

        check(wait_for("the files to become ready", ready, 30), "the sandbox made them ready")
        wait_for("a task for every ready file",
                 lambda: {t["object"]["id"] for t in self.usage_tasks(set(files))} == set(files), 30)
        tasks = list(wait_final(self.api, [t["id"] for t in self.usage_tasks(set(files))]).values())
        check(len(tasks) == len(files) and all(t["status"] == "succeeded" for t in tasks),
              f"each ready file got one task and the runner processed it ({len(tasks)} tasks)",
              "; ".join(describe(t) for t in tasks if t["status"] != "succeeded")[:1500])
        return files

    def submit_background(self, file_id):
        task = self.api.ok("POST", "/sandbox/platform/tasks", {
            "category": "background", "event_type": "usage_file_request_processing", "object_id": file_id})
        return task["id"]

    def phase_explicit(self, pending_files, ready_files):
        section("background: explicit submissions")
        states = {f["id"]: f for f in self.api.ok("GET", "/sandbox/state")["files"]}
        provider_keys = {k["account"]: k["key"] for k in self.keys if k.get("role") == "provider"}
        pending = [f for f in pending_files if states.get(f, {}).get("status") == "pending"]
        # One pending file is accepted by its provider, so it leaves the subscribed statuses.
        accepted = None
        for f in pending:
            key = provider_keys.get(((states[f].get("provider") or {}).get("id")))
            if key is None:
                status, data = self.api.call("GET", f"/public/v1/usage/files/{f}", key=VENDOR_KEY)
                key = provider_keys.get(((data or {}).get("provider") or {}).get("id"))
            if key:
                data = self.api.ok("POST", f"/public/v1/usage/files/{f}/accept",
                                   {"acceptance_note": "accepted by the cextrun check"}, key=key)
                if data.get("status") == "accepted":
                    accepted = f
                    break
        check(accepted, "a provider accepted one pending file", "no pending file could be accepted")
        cases = []
        if ready_files:
            cases.append(("ready", ready_files[0], "succeeded"))
        still_pending = [f for f in pending if f != accepted]
        if still_pending:
            cases.append(("pending", still_pending[0], "succeeded"))
        if accepted:
            cases.append(("accepted", accepted, "skipped"))
        ids = {self.submit_background(f): (status, f, expected) for status, f, expected in cases}
        done = wait_final(self.api, ids)
        for task_id, (status, f, expected) in ids.items():
            t = done.get(task_id)
            if expected == "succeeded":
                check(t and t["status"] == "succeeded" and (t.get("final_output") or {}).get("result") == "success",
                      f"a task for a {status} file ({f}) succeeds", t and describe(t))
            else:
                check(t and t["status"] == "skipped" and task_message(t) == SKIP_MESSAGE,
                      f"a task for an {status} file ({f}) is skipped with \"{SKIP_MESSAGE}\"",
                      t and describe(t))

    def phase_schedule(self):
        section("scheduled: report_monthly_usage")
        task = self.api.ok("POST", f"/sandbox/platform/schedules/{SCHEDULE_ID}/fire")
        t = wait_final(self.api, [task["id"]]).get(task["id"])
        check(t and t["object"]["type"] == "scheduled_execution" and t["status"] == "succeeded"
              and (t.get("final_output") or {}).get("result") == "success",
              f"firing {SCHEDULE_ID} runs report_monthly_usage and it succeeds", t and describe(t))

    def phase_shutdown(self):
        sig = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}[self.args.stop_signal]
        section(f"shutdown: SIG{self.args.stop_signal} to cextrun's "
                + ("process group (as Ctrl-C does)" if self.args.stop_target == "group" else "master process"))
        before = {c["id"] for c in self.api.platform()["connections"] if c.get("instance") == self.instance}
        self.runner.send(sig, group=self.args.stop_target == "group")
        rc = self.runner.wait(60)
        self.runner_rc = rc
        check(rc == 0, "cextrun exits by itself with status 0", f"exit status {rc}" if rc is not None
              else "still running after 60 s")
        platform = self.api.platform()
        log = [e for e in platform.get("connection_log", []) if e.get("connection") in before]
        shutdown = {e["connection"] for e in log if e.get("event") == "runner_shutdown"}
        disconnected = {e["connection"]: e for e in log if e.get("event") == "disconnected"}
        check(shutdown == before, "the sandbox got the runner's shutdown frame on both sessions",
              short(log))
        check(set(disconnected) == before
              and all("closed by the runner" in (e.get("reason") or "") for e in disconnected.values()),
              "both sessions were then closed by the runner", short(log))
        check(not [c for c in platform["connections"] if c.get("instance") == self.instance],
              "no session of this instance is left connected", short(platform["connections"]))

    def phase_final(self):
        section("platform records")
        platform = self.api.platform()
        errors = platform.get("protocol_errors") or []
        check(not errors, "the sandbox recorded no protocol errors", short(errors, 3000))
        tasks = platform.get("tasks") or []
        open_tasks = [describe(t) for t in tasks if t["status"] not in FINAL]
        check(tasks and not open_tasks, f"all {len(tasks)} tasks reached a final status",
              "; ".join(open_tasks[:10]))
        failed = [describe(t) for t in tasks if t["status"] == "failed"]
        check(not failed, "none of them failed", "; ".join(failed[:10]))
        dupes = [t["id"] for t in tasks if t.get("duplicate_results") or t.get("conflicting_results")]
        check(not dupes, "no task got a duplicate or conflicting result", short(dupes))
        by_status = {}
        for t in tasks:
            key = f"{t['object']['category']} {t['status']}"
            by_status[key] = by_status.get(key, 0) + 1
        print(f"  tasks: {', '.join(f'{v} {k}' for k, v in sorted(by_status.items()))}")
        log = self.runner.text() if self.runner else ""
        tracebacks = log.count("Traceback (most recent call last)")
        check(tracebacks == 0, "cextrun logged no exception", f"{tracebacks} tracebacks in {self.runner.log_path}")

    # -- driver

    def run(self):
        self.preflight()
        self.make_certs()
        self.start_sandbox()
        self.install_probe()
        self.start_runner()
        if self.phase_connect():
            for phase in (self.phase_interactive, self.phase_variables):
                self.guard(phase)
            pending = self.guard(self.phase_report_submitted) or []
            ready = self.guard(self.phase_report_ready) or []
            self.guard(lambda: self.phase_explicit(pending, ready))
            self.guard(self.phase_schedule)
            self.guard(self.phase_shutdown)
        self.guard(self.phase_final)

    def guard(self, phase):
        try:
            return phase()
        except (AssertionError, urllib.error.URLError, OSError, KeyError, TypeError, ValueError) as e:
            check(False, f"{getattr(phase, '__name__', 'phase')} ran to its end", f"{type(e).__name__}: {e}")
            return None

    def cleanup(self):
        if self.runner and self.runner.alive():
            self.runner.stop(signal.SIGTERM, timeout=20)
        elif self.runner:
            self.runner.stop()
        if self.sandbox:
            self.sandbox.stop(signal.SIGINT, timeout=10)
        if self.probe_installed and not self.args.keep_probe:
            run_quiet([self.python, "-m", "pip", "uninstall", "--quiet", "--yes", PROBE_DIST], env=clean_env())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("venv", nargs="?", default="/tmp/cextrun/venv",
                        help="venv with connect-extension-runner (default /tmp/cextrun/venv)")
    parser.add_argument("connect_usage", nargs="?", default=DEFAULT_BINARY,
                        help="the connect-usage binary (default target/debug/connect-usage in the current directory, else in this repository)")
    parser.add_argument("--stop-signal", choices=["INT", "TERM"], default="INT",
                        help="signal that stops cextrun (default INT)")
    parser.add_argument("--stop-target", choices=["group", "master"], default="group",
                        help="send it to cextrun's whole process group, as Ctrl-C does, or only to its "
                             "master process, as `docker stop` does (default group)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs) on success")
    parser.add_argument("--keep-probe", action="store_true", help="leave the probe installed in the venv")
    args = parser.parse_args()

    check_run = Check(args)
    rc = 2
    try:
        check_run.run()
        rc = 0 if all(ok for ok, _, _ in RESULTS) else 1
    except CannotRun as e:
        print(f"\nCANNOT RUN: {e}")
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        check_run.cleanup()

    failed = [what for ok, what, _ in RESULTS if not ok]
    print("\n" + "=" * 78)
    if rc == 2:
        print("cextrun check: CANNOT RUN (see above)")
    elif failed:
        print(f"cextrun check: FAIL ({len(failed)} of {len(RESULTS)} checks failed)")
        for what in failed:
            print(f"  FAIL {what}")
    else:
        print(f"cextrun check: PASS (all {len(RESULTS)} checks) -- the official runner "
              "(cextrun) works against the sandbox unchanged")
    if rc != 0 or args.keep:
        print(f"logs: {check_run.tmp} (sandbox.log, cextrun.log, report-*.log)")
    else:
        shutil.rmtree(check_run.tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
