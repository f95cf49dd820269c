"""A one-shot program: run with its streams apart and capped, its time limit enforced, its files sent back,
and its Python buffered and flushed from a thread (kernels/sitecustomize.py)."""
import os
import shutil
import signal
import subprocess
import selectors
import sys
import time

from protocol import *  # noqa: F401,F403
from output import *  # noqa: F401,F403
from hardening import *  # noqa: F401,F403
from displays import *  # noqa: F401,F403


HOME_SKELETON = "/usr/share/durable-sandbox/home"


def seed_home(home):
    """Copies the image's home skeleton (caches built with the image, e.g. matplotlib's fonts) into HOME, and makes
    the user's site-packages: Python puts it on sys.path only when it exists at start, so a package `pip install
    --user` puts there (through the egress gateway) imports in the session's next run."""
    if not home:
        return
    try:
        os.makedirs(os.path.join(home, ".local", "lib", "python%d.%d" % sys.version_info[:2], "site-packages"),
                    exist_ok=True)
    except OSError:
        pass
    if not os.path.isdir(HOME_SKELETON):
        return
    try:
        shutil.copytree(HOME_SKELETON, home, symlinks=True, dirs_exist_ok=True)
    except (OSError, shutil.Error):
        pass


# The program's Python processes import this first (see program_helpers): stdout and stderr stay buffered, and a
# thread flushes them every FLUSH_EVERY seconds. Around a fork the thread is stopped, so that no flush in progress
# leaves the child's stream locked and Python 3.12 does not warn about forking a multi-threaded process (3.13 counts
# threads after the parent's hooks, and still does), then started again in both processes. At exit it is stopped
# before Python's own last flush, which a thread still flushing would abort. And `display` (kernels/display.py).
SITECUSTOMIZE = kernel_source("sitecustomize.py") + "\n\n" + kernel_source("display.py")
# The program's Node.js processes load this first: `display`, TypeScript, top-level await (kernels/node-preload.js).
NODE_PRELOAD = (kernel_source("node-display.js") + "\n" + kernel_source("node-typescript.js") + "\n"
                + kernel_source("node-preload.js"))


def program_helpers(env):
    """Writes SITECUSTOMIZE and NODE_PRELOAD into a directory of the launcher's under TMPDIR (the program's scratch
    space: /sandbox may be read-only), puts it first on the program's PYTHONPATH and the preload in its NODE_OPTIONS;
    returns the directory. Where it cannot be written, Python runs unbuffered instead (slow, but live), Node.js
    without the preload, and this returns None."""
    where = os.path.join(env.get("TMPDIR") or "/tmp", ".durable-sandbox-python-%d" % os.getpid())
    try:
        shutil.rmtree(where, ignore_errors=True)
        os.mkdir(where, 0o755)
        with open(os.path.join(where, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(SITECUSTOMIZE + "\n_flush_periodically(%r)\n_display_from_env()\n_run_hidden_sitecustomize()\n"
                    % FLUSH_EVERY)
        with open(os.path.join(where, "node-preload.js"), "w", encoding="utf-8") as f:
            f.write(NODE_PRELOAD)
    except OSError:
        env.setdefault("PYTHONUNBUFFERED", "1")
        return None
    env["PYTHONPATH"] = os.pathsep.join(p for p in (where, env.get("PYTHONPATH")) if p)
    env["NODE_OPTIONS"] = " ".join(o for o in ("--require=" + os.path.join(where, "node-preload.js"),
                                              env.get("NODE_OPTIONS")) if o)
    return where


def run(timeout, stdout_cap, stderr_cap, command, env, files):
    seed_home(env.get("HOME"))
    python_dir = program_helpers(env)
    streams = {}
    state = {"terminated": None}

    def on_term(signum, _frame):
        state["terminated"] = signum

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    # The program's display data comes on a pipe of its own (kernels/display.py, set up by its sitecustomize).
    displays = Displays(files.displays_max, files.displays_cap)
    display_r = display_w = None
    if files.displays_max > 0:
        display_r, display_w = os.pipe()
        env = dict(env, DS_DISPLAY_FD=str(display_w), DS_DISPLAY_CAP=str(files.displays_cap))
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
            pass_fds=(display_w,) if display_w is not None else (),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        error = "could not start %s: %s" % (command[0], exc)
        child = None
    finally:
        if display_w is not None:
            os.close(display_w)

    timed_out = False
    if child is not None:
        sel = selectors.DefaultSelector()
        streams[child.stdout.fileno()] = Stream(TAG_STDOUT, stdout_cap)
        streams[child.stderr.fileno()] = Stream(TAG_STDERR, stderr_cap)
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        if display_r is not None:
            os.set_blocking(display_r, False)
            sel.register(display_r, selectors.EVENT_READ)
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
            wait = min(wait, until_due(streams, now))
            largest = 0
            for key, _ in sel.select(timeout=wait):
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if key.fd == display_r:
                    if data:
                        displays.feed(data)
                    else:
                        sel.unregister(key.fd)
                    continue
                if not data:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    streams[key.fd].flush()
                    continue
                streams[key.fd].feed(data, time.monotonic())
                largest = max(largest, len(data))
            now = time.monotonic()
            for stream in streams.values():
                if stream.due is not None and stream.due <= now:
                    stream.flush()
            if 0 < largest < SMALL_READ:
                time.sleep(min(LINGER, until_due(streams, now), max(0.0, deadline - now)))
        # Whatever the program left behind goes with it (as PID 1: in any session).
        kill_group(child.pid)
        child.wait()
        for stream in streams.values():
            stream.flush()
        sel.close()
    if display_r is not None:
        # What the program displayed last is all in the pipe now (its every writer is gone).
        drain_displays(display_r, displays)
        os.close(display_r)
    finished = now_ms()
    if python_dir:
        shutil.rmtree(python_dir, ignore_errors=True)

    code = child.returncode if child is not None else 127
    exit_code, sig = (code, None) if code >= 0 else (128 - code, -code)
    if timed_out:
        exit_code, sig = 124, signal.SIGKILL.value
    if state["terminated"] is not None:
        exit_code, sig = 128 + state["terminated"], state["terminated"]
    out = streams.get(child.stdout.fileno()) if child else None
    err = streams.get(child.stderr.fileno()) if child else None
    # The program's files go back with its output, unless the sandbox is being stopped (then: quickly out).
    sent, skipped = send_files(files) if state["terminated"] is None else (0, 0)
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
        "files": sent,
        "filesSkipped": skipped,
        "displays": displays.sent,
        "displaysDropped": displays.dropped,
    }
    write_trailer(trailer)
    return exit_code


def drain_displays(fd, displays):
    while True:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        displays.feed(data)
