"""durable-sandbox launcher: runs the user's program inside the sandbox pod and keeps its streams apart.

The pod-logs API merges stdout and stderr, so the program never writes to the container's own streams. Its stdout
and stderr are pipes read here; each chunk is written to the container's stdout as one line, "o <base64>" or
"e <base64>", up to a per-stream cap (bytes past the cap are counted, not kept, so the pod log stays small). The last
line, "x <json>", reports byte totals, the program's exit status, whether the time limit killed it and its run time.
The container exits with the program's exit code (128 + signal when a signal ended it), so the exit code the worker
reports comes from the container status.

The program runs as the same user as the launcher, so the launcher guards itself and the pod:
- it makes itself non-dumpable, so the program cannot open /proc/<launcher>/fd/1 (and write frames or a trailer into
  the container log past the caps) nor read /proc/<launcher>/environ;
- the program's environment lacks the KUBERNETES_SERVICE_* / KUBERNETES_PORT* variables that the kubelet always
  injects (enableServiceLinks: false does not drop the master service's);
- as the container's first process (PID 1) it kills every other process in the container, not only the program's
  process group, when the program ends or its time is up (children that called setsid() included);
- as PID 1 under gVisor it caps the sandbox user's processes and threads (RLIMIT_NPROC), so a fork bomb gets EAGAIN
  instead of exhausting the pod's host PIDs (which crashes the whole sandbox). Not under runc: there the host kernel
  counts RLIMIT_NPROC per user across all containers, and the pod's PID limit already makes fork fail cleanly.

Usage: launcher.py --timeout SECONDS --stdout-cap BYTES --stderr-cap BYTES -- COMMAND...
"""

import base64
import ctypes
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time

FORMAT = "durable-sandbox-launcher 1"
CHUNK = 8192  # raw bytes per frame: a frame line stays under the runtime's 16 KiB log line size
DRAIN_AFTER_EXIT = 0.5  # seconds to keep reading after the program exits (children may still hold the pipes)
# Processes + threads the sandbox user may have (RLIMIT_NPROC, set only as PID 1 under gVisor, which counts them per
# sandbox). Every process of the program costs the pod about two host PIDs there (threads cost none): this keeps a
# fork bomb well inside a podPidsLimit of 512.
MAX_TASKS = 128
PR_SET_DUMPABLE = 4
# Variables the kubelet injects for the cluster's own API service even with enableServiceLinks: false.
SERVICE_ENV_PREFIXES = ("KUBERNETES_SERVICE_", "KUBERNETES_PORT")


def write_line(line):
    data = line.encode("ascii") + b"\n"
    while data:
        written = os.write(1, data)
        data = data[written:]


def now_ms():
    return int(time.time() * 1000)


def parse_args(argv):
    opts = {"--timeout": None, "--stdout-cap": None, "--stderr-cap": None}
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] not in opts or i + 1 >= len(argv):
            raise SystemExit("launcher: bad argument %r" % argv[i])
        opts[argv[i]] = int(argv[i + 1])
        i += 2
    command = argv[i + 1:]
    if not command or None in opts.values():
        raise SystemExit("launcher: usage: launcher.py --timeout S --stdout-cap N --stderr-cap N -- COMMAND...")
    return opts["--timeout"], opts["--stdout-cap"], opts["--stderr-cap"], command


class Stream:
    def __init__(self, tag, cap):
        self.tag = tag
        self.cap = cap
        self.total = 0
        self.kept = 0

    def feed(self, data):
        self.total += len(data)
        room = self.cap - self.kept
        if room <= 0:
            return
        data = data[:room]
        self.kept += len(data)
        write_line(self.tag + " " + base64.b64encode(data).decode("ascii"))


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if os.getpid() == 1:
        # The container's init: every other process in the container is the program's, whatever its session.
        try:
            os.kill(-1, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def harden():
    """Guards the launcher against the program (same user) and returns the program's environment."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getpid() == 1 and "gvisor" in os.uname().release.lower():
        def capped(v):
            return MAX_TASKS if v == resource.RLIM_INFINITY else min(v, MAX_TASKS)

        soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (capped(soft), capped(hard)))
        except (ValueError, OSError):
            pass
    return {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}


def main():
    timeout, stdout_cap, stderr_cap, command = parse_args(sys.argv[1:])
    env = harden()
    write_line(FORMAT)
    streams = {}
    state = {"terminated": None}

    def on_term(signum, _frame):
        state["terminated"] = signum

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    started = now_ms()
    error = None
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
    except OSError as exc:
        error = "could not start %s: %s" % (command[0], exc)
        child = None

    timed_out = False
    if child is not None:
        sel = selectors.DefaultSelector()
        streams[child.stdout.fileno()] = Stream("o", stdout_cap)
        streams[child.stderr.fileno()] = Stream("e", stderr_cap)
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        exited_at = None
        open_fds = set(streams)
        while True:
            if state["terminated"] is not None:
                kill_group(child.pid)
                break
            now = time.monotonic()
            if exited_at is None and child.poll() is not None:
                exited_at = now
            if exited_at is None and now >= deadline:
                timed_out = True
                kill_group(child.pid)
                exited_at = now
            if exited_at is not None and (not open_fds or now - exited_at > DRAIN_AFTER_EXIT):
                break
            wait = min(0.1, max(0.0, deadline - now)) if exited_at is None else 0.05
            if not open_fds:
                # The program closed both streams but still runs: wait for it (or for the time limit).
                time.sleep(wait)
                continue
            for key, _ in sel.select(timeout=wait):
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    continue
                for i in range(0, len(data), CHUNK):
                    streams[key.fd].feed(data[i:i + CHUNK])
        # Whatever the program left behind goes with it (as PID 1: in any session).
        kill_group(child.pid)
        child.wait()
    finished = now_ms()

    code = child.returncode if child is not None else 127
    exit_code, sig = (code, None) if code >= 0 else (128 - code, -code)
    if timed_out:
        exit_code, sig = 124, signal.SIGKILL.value
    if state["terminated"] is not None:
        exit_code, sig = 128 + state["terminated"], state["terminated"]
    out = streams.get(child.stdout.fileno()) if child else None
    err = streams.get(child.stderr.fileno()) if child else None
    trailer = {
        "exitCode": exit_code,
        "signal": sig,
        "timedOut": timed_out,
        "terminated": state["terminated"] is not None,
        "stdoutBytes": out.total if out else 0,
        "stderrBytes": err.total if err else 0,
        "startedAt": started,
        "finishedAt": finished,
        "error": error,
    }
    write_line("x " + json.dumps(trailer, separators=(",", ":")))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
