"""Session mode: one interpreter (a kernel, launcher/kernels/) for all of a session's runs."""
import json
import os
import select
import selectors
import signal
import subprocess
import time

from protocol import *  # noqa: F401,F403
from output import *  # noqa: F401,F403
from hardening import *  # noqa: F401,F403
from delivery import *  # noqa: F401,F403
from egress import *  # noqa: F401,F403
from walk import *  # noqa: F401,F403
from program import *  # noqa: F401,F403
from displays import *  # noqa: F401,F403


# Session mode: how long an interrupted cell has to come back before its interpreter is restarted (seconds).
INTERRUPT_GRACE = 2.0


# --- Session mode ----------------------------------------------------------------------------------------------------
# A session's sandbox runs one task after another in one interpreter that lives as long as the sandbox: variables,
# imports, the working directory and files persist between runs. Each task arrives framed on stdin as in warm mode
# (stdin stays open for the next), with "code" and a "seq" (the run's number in the session); the launcher answers
# each with "a" (accepted, with the seq), the run's "o"/"e" frames, the files it wrote under the out directory, an
# "s" line (the interpreter: "started", "kept" or "restarted", and why) and its trailer. A run that outlives its
# time limit is interrupted as a notebook would be (KeyboardInterrupt); an interpreter that does not come back
# within INTERRUPT_GRACE seconds, or that died, is restarted for the next run, the files kept.

# The kernels: a program each, run in the session's interpreter (Python's, or bash).
PYTHON_KERNEL = kernel_source("display.py") + "\n\n" + kernel_source("python.py")
# A bash session's shell: each cell is eval'd in the one shell, so the working directory, variables, exported ones and
# functions persist. An interrupt (sent to the shell's whole process group) ends the running command, not the shell;
# a cell's `exit` ends the shell, which is restarted for the next run.
BASH_KERNEL = kernel_source("bash.sh")
# A JavaScript or TypeScript session's: Node's, each run a script in one context (kernels/node.js).
NODE_KERNEL = (kernel_source("node-display.js") + "\n" + kernel_source("node-typescript.js") + "\n"
               + kernel_source("node.js"))
KERNELS = {"python": PYTHON_KERNEL, "bash": BASH_KERNEL, "javascript": NODE_KERNEL, "typescript": NODE_KERNEL}
# The kernels that send display data (on a pipe of their own).
DISPLAY_KERNELS = ("python", "javascript", "typescript")
# The kernels whose state is checkpointed after each run (and restored on a new pod from that, not by replay).
STATE_KERNELS = ("python", "bash")
# How long a checkpoint or a restore may take before the session goes on without it.
STATE_TIMEOUT = 120.0
# The output a run leaves behind (a thread still printing) between runs: counted, the first of it kept to be said.
LEFTOVER_SAMPLE = 2048


def state_path(workspace, kind):
    """The file a kernel's state is checkpointed to, in the session's workspace."""
    return os.path.join(workspace or os.environ.get("HOME") or "/tmp", WORKSPACE_STATE_DIR, kind + ".state")


def kernel_command(interpreter, kind, cells_r, done_w, displays_w, display_cap):
    """The command line that starts a kernel of this kind on its pipes."""
    pipes = [str(cells_r), str(done_w)]
    shown = [str(displays_w), str(display_cap)] if displays_w is not None else []
    if kind == "bash":
        return [interpreter, "-c", BASH_KERNEL, "ds-kernel"] + pipes
    if kind in ("javascript", "typescript"):
        return [interpreter, "-e", NODE_KERNEL, "ds-kernel"] + pipes + (shown or ["-1", "0"]) + [kind]
    return [interpreter, "-c", PYTHON_KERNEL] + pipes + shown


class Kernel:
    """The session's interpreter: a process that runs one cell at a time, sent on a pipe, and says on another pipe
    when each is done and how it ended."""

    def __init__(self, interpreter, env, kind="python", display_cap=0):
        cells_r, self.cells = os.pipe()
        self.done, done_w = os.pipe()
        # Display data (kernels/display.py, kernels/node-display.js) comes on a pipe of its own.
        self.displays, displays_w = os.pipe() if kind in DISPLAY_KERNELS and display_cap > 0 else (None, None)
        self.kind = kind
        self.process = subprocess.Popen(
            kernel_command(interpreter, kind, cells_r, done_w, displays_w, display_cap),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
            pass_fds=tuple(fd for fd in (cells_r, done_w, displays_w) if fd is not None),
        )
        for fd in (cells_r, done_w, displays_w):
            if fd is not None:
                os.close(fd)
        self.streams = {self.process.stdout.fileno(): TAG_STDOUT, self.process.stderr.fileno(): TAG_STDERR}
        for fd in list(self.streams) + [self.done] + ([self.displays] if self.displays is not None else []):
            os.set_blocking(fd, False)
        # A cell that closed or redirected the interpreter's output (its status line says so): not heard any more.
        self.unheard = False
        # Output that came between runs (a thread a run left printing): counted, the first of it kept.
        self.leftover = {"bytes": 0, "text": b""}

    def take_leftover(self, fd):
        """Reads what is in one of the kernel's output pipes between runs; False when the pipe has ended."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.leftover["bytes"] += len(data)
            if len(self.leftover["text"]) < LEFTOVER_SAMPLE:
                self.leftover["text"] += data[:LEFTOVER_SAMPLE - len(self.leftover["text"])]

    def leftover_note(self):
        """What came between runs, once (then counted afresh)."""
        left, self.leftover = self.leftover, {"bytes": 0, "text": b""}
        if not left["bytes"]:
            return None
        return {"bytes": left["bytes"], "text": left["text"].decode("utf-8", "replace")}

    def request(self, op, path, max_bytes=0):
        """Asks the kernel (a run numbered 0) to checkpoint its state to path or restore it from there; returns its
        answer, or {"error"}. Its output meanwhile counts as left over."""
        if not self.alive():
            return {"error": "the interpreter has exited"}
        if self.kind == "bash":
            source = "%s %s %d" % (op, path, max_bytes) if op == "checkpoint" else "%s %s" % (op, path)
        else:
            source = json.dumps({"op": op, "path": path, "maxBytes": max_bytes})
        try:
            self.send(0, source)
        except OSError as exc:
            return {"error": "the interpreter could not be asked: %s" % exc}
        deadline = time.monotonic() + STATE_TIMEOUT
        answer = b""
        while not answer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                return {"error": "the interpreter did not answer within %g s" % STATE_TIMEOUT}
            ready, _, _ = select.select([self.done] + list(self.streams), [], [], min(left, 0.5))
            for fd in ready:
                if fd == self.done:
                    try:
                        answer += os.read(self.done, 65536)
                    except BlockingIOError:
                        pass
                elif not self.take_leftover(fd):
                    self.unheard = True
        line = answer.decode("utf-8", "replace").strip()
        try:
            if not line.startswith("c "):
                raise ValueError(line)
            return json.loads(line[2:])
        except ValueError:
            return {"error": "the interpreter answered %r" % line[:120]}

    def send(self, number, source):
        data = source.encode("utf-8")
        os.set_blocking(self.cells, True)
        # Runs are numbered from 1 (0 is the launcher's own requests).
        number = number % 10**8 or (1 if number else 0)
        os.write(self.cells, b"%08d%08d" % (number, len(data)) + data)

    def alive(self):
        return self.process.poll() is None

    def interrupt(self):
        """Python: a KeyboardInterrupt in the cell, as a notebook's; Node: the run's script stopped, or its wait
        abandoned. bash: the running command and its children."""
        try:
            if self.kind == "bash":
                os.killpg(self.process.pid, signal.SIGINT)
            else:
                os.kill(self.process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def stop(self):
        kill_group(self.process.pid)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.cells, self.done, self.displays):
            if fd is None:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self.process.stdout.close()
        self.process.stderr.close()


def run_cell(kernel, number, code, timeout, caps, state, displays=None):
    """Runs one cell in the kernel, framing its output (and display data) as it comes. Returns (status, timed_out,
    stuck, totals)."""
    streams = {fd: Stream(tag, caps[tag]) for fd, tag in kernel.streams.items()}
    sel = selectors.DefaultSelector()
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(kernel.done, selectors.EVENT_READ)
    if kernel.displays is not None and displays is not None:
        sel.register(kernel.displays, selectors.EVENT_READ)
    kernel.send(number, code)
    deadline = time.monotonic() + timeout
    interrupted_at = None
    status = None
    status_buf = b""
    timed_out = stuck = False

    def drain(fd):
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                return False
            streams[fd].feed(data, time.monotonic())

    try:
        while status is None:
            if state["terminated"] is not None:
                break
            now = time.monotonic()
            if not kernel.alive():
                break
            if interrupted_at is None and now >= deadline:
                timed_out = True
                interrupted_at = now
                kernel.interrupt()
            if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE:
                stuck = True
                break
            limit = deadline if interrupted_at is None else interrupted_at + INTERRUPT_GRACE
            wait = min(0.1, max(0.0, limit - now), until_due(streams, now))
            for key, _ in sel.select(timeout=wait):
                if key.fd == kernel.done:
                    try:
                        status_buf += os.read(kernel.done, 64)
                    except BlockingIOError:
                        continue
                    if status_buf.endswith(b"\n"):
                        words = status_buf.split()
                        status = int(words[0]) if words and words[0].lstrip(b"-").isdigit() else 1
                        kernel.unheard = b"unheard" in words[1:]
                elif key.fd == kernel.displays:
                    drain_displays(kernel.displays, displays)
                elif not drain(key.fd):
                    sel.unregister(key.fd)
                    # The interpreter's stdout or stderr ended while it lives: it cannot be heard any more.
                    kernel.unheard = True
            now = time.monotonic()
            for stream in streams.values():
                if stream.due is not None and stream.due <= now:
                    stream.flush()
        # The kernel flushes its streams before it says done: what is in the pipes now belongs to this cell.
        for fd in streams:
            if kernel.alive() or status is not None:
                try:
                    drain(fd)
                except OSError:
                    pass
        if kernel.displays is not None and displays is not None:
            drain_displays(kernel.displays, displays)
    finally:
        sel.close()
        for stream in streams.values():
            stream.flush()
    out = streams[kernel.process.stdout.fileno()]
    err = streams[kernel.process.stderr.fileno()]
    return status, timed_out, stuck, (out.total, err.total)


def await_next(max_idle, kernel):
    """Whether a task started to arrive on stdin within max_idle seconds (None: wait for ever). Meanwhile what the
    kernel writes (a thread a run left printing) is read and counted, so that it never blocks the kernel."""
    deadline = None if max_idle is None else time.monotonic() + max_idle
    watched = list(kernel.streams) if kernel is not None and kernel.alive() else []
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        try:
            ready, _, _ = select.select([0] + watched, [], [], left)
        except InterruptedError:
            continue
        if 0 in ready:
            return True
        for fd in ready:
            if not kernel.take_leftover(fd):
                watched.remove(fd)
                kernel.unheard = True


def replay(kernel, task, caps, state, displays_max):
    """Runs a session's earlier runs again, in order, in one task (the state rebuilt where no checkpoint holds it):
    their output goes to the log as this task's (within its caps), how many failed is said."""
    failed = 0
    out_total = err_total = 0
    codes = task.get("codes") or []
    for i, code in enumerate(codes):
        status, timed_out, stuck, (out_bytes, err_bytes) = run_cell(
            kernel, i + 1, code, float(task["timeoutSeconds"]), caps, state, Displays(displays_max, 0))
        out_total += out_bytes
        err_total += err_bytes
        if status != 0 or timed_out:
            failed += 1
        if stuck or not kernel.alive() or state["terminated"] is not None:
            return {"runs": i + 1, "of": len(codes), "failed": failed, "error": "the interpreter was lost"}, (
                out_total, err_total)
    return {"runs": len(codes), "of": len(codes), "failed": failed}, (out_total, err_total)


def session(max_bytes, task_dir, max_idle, first=None, env=None):
    """Serves a session's runs until its idle limit, a stop request or the end of stdin. `first`: a run already read
    (a warm pod a session claimed, whose launcher had started in warm mode: hardened, its format line written).
    Besides runs, a task may ask to restore the session's state from its checkpoint ("op": "restore") or to run its
    earlier runs again ("op": "replay", "codes"); after a run whose task asks for it ("checkpoint"), the kernel's
    state is checkpointed into the workspace and a "k" line says how that went (after the run's trailer: the answer
    does not wait for it)."""
    if env is None:
        env = harden()
        write_line(FORMAT)
    seed_home(env.get("HOME"))
    workspace = env.get("HOME")
    program_helpers(env)
    # The workspace as the sandbox starts (its image's home skeleton): nothing of the session's own to keep yet.
    base = workspace_digest(workspace)["sig"] if workspace else None
    state = {"terminated": None}

    def on_term(signum, _frame):
        state["terminated"] = signum

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    kernel = None
    why_restart = None
    runs = 0
    # The highest run number accepted: a run handed again (a worker that died after writing it retries the
    # handover) is not run again; its lines are already in the log, where the retry reads them.
    accepted_seq = None
    while state["terminated"] is None:
        if first is None and not await_next(max_idle, kernel):
            note_termination("idle: no run arrived within %g s" % max_idle)
            break
        if state["terminated"] is not None:
            break
        try:
            task, digest = first if first is not None else receive_task(max_bytes, last=False)
            first = None
            if task.get("idleSeconds") is not None:
                # The session's own idle limit (a claimed warm pod started with its pool's).
                max_idle = float(task["idleSeconds"])
            timeout, stdout_cap, stderr_cap, command, extra_env, files = program_of(task)
            code = task["code"]
            number = int(task["seq"])
            if accepted_seq is not None and number <= accepted_seq:
                continue
            kind = task.get("kernel") or "python"
            op = task.get("op") or "run"
            if kind not in KERNELS:
                raise DeliveryError("no session kernel %r" % kind)
            if op not in ("run", "restore", "replay"):
                raise DeliveryError("no session task %r" % op)
            materialize_files(task, task_dir)
        except NoMoreTasks:
            note_termination("ended: no more runs (stdin closed)")
            break
        except (DeliveryError, KeyError, TypeError, ValueError, OSError) as exc:
            # The stream of tasks can no longer be trusted: the session's sandbox ends, and says why.
            if kernel is not None:
                kernel.stop()
            return failed_delivery(str(exc))
        accepted = {"executionId": task.get("executionId"), "attempt": task.get("attempt"), "seq": number,
                    "sha256": digest}
        write_line(TAG_ACCEPTED + " " + json.dumps(accepted, separators=(",", ":")))
        accepted_seq = number
        if kernel is not None and not kernel.alive():
            why_restart = why_restart or "the interpreter had exited (code %s)" % kernel.process.returncode
        if kernel is not None and (not kernel.alive() or kernel.unheard):
            why_restart = why_restart or "the interpreter's stdout or stderr was closed between runs"
            kernel.stop()
            kernel = None
        how = "kept"
        leftover = kernel.leftover_note() if kernel is not None else None
        restored_state = None
        saved_state = state_path(workspace, kind)
        if kernel is None:
            run_env = dict(env)
            run_env.update(extra_env)
            kernel = Kernel(command[0], run_env, kind, files.displays_cap if files.displays_max > 0 else 0)
            how = "restarted" if runs > 0 else "started"
            if runs > 0 and op == "run" and kind in STATE_KERNELS and os.path.exists(saved_state):
                # The interpreter was restarted in this pod: it gets the state of the last checkpoint back.
                restored_state = kernel.request("restore", saved_state)
        if runs == 0:
            # The session's first run on this pod: its egress (claimed pods get it with the claim) is open first.
            await_gateway(egress_of(task))
        started = now_ms()
        before = out_dir_state(files.out_dir) if files.out_dir and files.max_count > 0 else {}
        displays = Displays(files.displays_max, files.displays_cap)
        caps = {TAG_STDOUT: stdout_cap, TAG_STDERR: stderr_cap}
        stuck = timed_out = False
        replayed = None
        if op == "restore":
            if kind not in STATE_KERNELS:
                restored_state = {"error": "a %s session keeps no state between pods" % kind}
            elif not os.path.exists(saved_state):
                restored_state = {"error": "the workspace holds no saved state"}
            else:
                restored_state = kernel.request("restore", saved_state)
            status, out_bytes, err_bytes = (1 if "error" in restored_state else 0), 0, 0
        elif op == "replay":
            replayed, (out_bytes, err_bytes) = replay(kernel, task, caps, state, files.displays_max)
            status = 0 if not replayed.get("error") else None
        else:
            status, timed_out, stuck, (out_bytes, err_bytes) = run_cell(
                kernel, number, code, timeout, caps, state, displays)
        finished = now_ms()
        runs += 1
        lost = status is None and not timed_out and state["terminated"] is None
        if stuck or lost or kernel.unheard:
            why_restart = ("the interpreter did not come back from the interrupt within %g s" % INTERRUPT_GRACE
                           if stuck else "the interpreter exited (code %s)" % kernel.process.poll() if lost
                           else "the run before closed or redirected the interpreter's stdout or stderr")
            kernel.stop()
            kernel = None
        sent, skipped = send_files(files, before) if state["terminated"] is None and op == "run" else (0, 0)
        note = {"seq": number, "interpreter": how, "why": why_restart if how == "restarted" else None,
                "next": "restart" if kernel is None else "keep"}
        if leftover:
            note["leftover"] = leftover
        if restored_state is not None:
            note["state"] = restored_state
        if replayed is not None:
            note["replayed"] = replayed
        if workspace is not None and state["terminated"] is None:
            note["workspace"] = dict(workspace_digest(workspace), base=base)
        write_line(TAG_SESSION + " " + json.dumps(note, separators=(",", ":")))
        if how == "restarted":
            why_restart = None
        exit_code = status if status is not None else (124 if timed_out else 137)
        if timed_out:
            exit_code = 124
        if state["terminated"] is not None:
            exit_code = 128 + state["terminated"]
        write_trailer({
            "exitCode": exit_code,
            "signal": signal.SIGKILL.value if (timed_out and stuck) or lost else None,
            "timedOut": timed_out,
            "terminated": state["terminated"] is not None,
            "stdoutBytes": out_bytes,
            "stderrBytes": err_bytes,
            "startedAt": started,
            "finishedAt": finished,
            "error": None if (status is not None or timed_out) else "the interpreter exited during the run",
            "files": sent,
            "filesSkipped": skipped,
            "displays": displays.sent,
            "displaysDropped": displays.dropped,
        })
        checkpoint = task.get("checkpoint")
        if checkpoint and op == "run" and state["terminated"] is None:
            # After the answer: the state as the run left it (a failed run's assignments too), for a new pod. The
            # worker waits for this line: it always comes, with an error when there is nothing to checkpoint.
            if kind not in STATE_KERNELS:
                report = {"error": "a %s session keeps no state between pods" % kind}
            elif kernel is None:
                report = {"error": "the interpreter is to be restarted: its state after this run is not kept"}
            else:
                try:
                    os.makedirs(os.path.dirname(saved_state), exist_ok=True)
                    report = kernel.request("checkpoint", saved_state, int(checkpoint.get("maxBytes") or 1 << 40))
                except (OSError, AttributeError, ValueError) as exc:
                    report = {"error": "the state could not be checkpointed: %s" % exc}
            write_line(TAG_CHECKPOINT + " " + json.dumps(dict(report, seq=number), separators=(",", ":")))
    if kernel is not None:
        kernel.stop()
    return IDLE_EXIT if state["terminated"] is None else 128 + state["terminated"]
