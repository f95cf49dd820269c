"""durable-sandbox launcher: runs the user's program inside the sandbox pod and keeps its streams apart.

The pod-logs API merges stdout and stderr, so the program never writes to the container's own streams. Its stdout
and stderr are pipes read here; what arrives is written to the container's stdout in lines "o <base64>" or
"e <base64>", up to a per-stream cap (bytes past the cap are counted, not kept, so the pod log stays small). The last
line, "x <json>", reports byte totals, the program's exit status, whether the time limit killed it and its run time.
The container exits with the program's exit code (128 + signal when a signal ended it), so the exit code the worker
reports comes from the container status.

Output is batched on both sides of the pipe, and stays live: a program that writes many small pieces would otherwise
pay a system call per piece in the program and a log line per read here (under gVisor, printing 200,000 lines took
half a minute). The launcher frames what it has read once 50 ms have passed since its first unframed byte (or a whole
frame is ready), and always before the trailer. Python processes keep their stdout and stderr buffered and flush them
every 50 ms from a thread: a sitecustomize module the launcher writes to a directory of its own under TMPDIR and puts
first on the program's PYTHONPATH (it runs any sitecustomize it hides). PYTHONUNBUFFERED or -u turn Python's
buffering off as usual. Output still buffered when a process ends abruptly (os._exit, a signal) is lost: at most the
last 50 ms of it.

The program runs as the same user as the launcher, so the launcher guards itself and the pod:
- it makes itself non-dumpable, so the program cannot open /proc/<launcher>/fd/1 (and write frames or a trailer into
  the container log past the caps) nor read /proc/<launcher>/environ;
- the program's environment lacks the KUBERNETES_SERVICE_* / KUBERNETES_PORT* variables that the kubelet always
  injects (enableServiceLinks: false does not drop the master service's);
- as the container's first process (PID 1) it kills every other process in the container, not only the program's
  process group, when the program ends or its time is up (children that called setsid() included);
- as PID 1 under gVisor it caps the sandbox user's processes and threads (RLIMIT_NPROC), so a fork bomb gets EAGAIN
  instead of exhausting the pod's host PIDs (which crashes the whole sandbox). Not under runc: there the host kernel
  counts RLIMIT_NPROC per user across all containers, and the pod's PID limit already makes fork fail cleanly;
- it installs a seccomp filter on itself at start, before any program exists (inherited by the program and all it
  starts; the launcher needs none of what it refuses, and ends processes without kill(-1)) that refuses
  with EPERM what a program has no business doing in a sandbox: new namespaces (clone/unshare with CLONE_NEW*
  flags; clone3, whose flags a filter cannot read, gets ENOSYS so that libc falls back to clone), setns, mounts,
  ptrace and process_vm_*, signals to the launcher or to every process (kill/tkill/tgkill to PID 1 or -1,
  pidfd_open of the launcher, pidfd_send_signal), the kernel keyring, bpf, perf_event_open, userfaultfd and io_uring.
  The pod's RuntimeDefault profile stays; this one is hand-assembled BPF (no library in the image needed).

Warm mode (a pre-started sandbox of the warm pool): the launcher starts without a program and waits for exactly one
task on its stdin, written there over the Kubernetes API (pods/attach; the sandbox has no network): a header line
"durable-sandbox-task 1 <length> <sha256>" and <length> bytes of JSON (the program, its files, env, limits). It
accepts the task only whole and with a matching checksum, closes its stdin for good (nothing else is ever read),
writes the program and its files under the task directory, logs "a <json>" (which execution it accepted) and runs it
as above. A task that arrives cut short or damaged runs nothing: the trailer says why and the container exits 125.
With --max-idle-seconds, a sandbox that no task reached by then exits 0 on its own (its termination message says
so): a pool whose worker is gone holds the node's CPU and memory no longer than that.

Cold mode (a Job made for the attempt): the same task, as a file mounted with the pod from the attempt's ConfigMap,
the program and its files beside it (so the task file leaves them out).

Usage: launcher.py --task FILE
       launcher.py --warm --max-task-bytes BYTES --task-dir DIR [--max-idle-seconds SECONDS]
"""
import json
import os
import signal
import sys

from protocol import *  # noqa: F401,F403
from output import *  # noqa: F401,F403
from hardening import *  # noqa: F401,F403
from delivery import *  # noqa: F401,F403
from egress import *  # noqa: F401,F403
from walk import *  # noqa: F401,F403
from program import *  # noqa: F401,F403
from session import *  # noqa: F401,F403


def main():
    argv = sys.argv[1:]
    confined = confine()
    if confined is not None:
        return refuse_to_run(confined)
    if argv[:1] == ["--session"]:
        return session(*parse_warm_args(argv[1:]))
    if argv[:1] == ["--warm"]:
        max_bytes, task_dir, max_idle = parse_warm_args(argv[1:])
        env = harden()
        write_line(FORMAT)
        # Waiting for a task, a stop request ends the sandbox at once (as PID 1 it would otherwise be ignored).
        signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
        if not await_task(max_idle):
            note_termination("idle: no task arrived within %g s" % max_idle)
            return IDLE_EXIT
        try:
            task, digest = receive_task(max_bytes, last=False)
            if "seq" in task:
                # A session's run: a session claimed this pod, which becomes its sandbox (one run after another on
                # stdin, as a --session launcher). Nothing of a one-shot program has happened in it.
                return session(max_bytes, task_dir, max_idle, first=(task, digest), env=env)
            close_stdin()
            program = program_of(task)
            materialize(task, task_dir)
        except (DeliveryError, KeyError, TypeError, ValueError, OSError) as exc:
            close_stdin()
            return failed_delivery(str(exc))
        accepted = json.dumps({"executionId": task.get("executionId"), "attempt": task.get("attempt"), "sha256": digest},
                              separators=(",", ":"))
        write_line(TAG_ACCEPTED + " " + accepted)
        note_termination("accepted " + accepted)
    else:
        path = parse_task_args(argv)
        env = harden()
        write_line(FORMAT)
        try:
            task = read_task_file(path)[0]
            program = program_of(task)
        except DeliveryError as exc:
            return failed_delivery(str(exc))
    timeout, stdout_cap, stderr_cap, command, extra_env, files = program
    env.update(extra_env)
    await_gateway(egress_of(task))
    return run(timeout, stdout_cap, stderr_cap, command, env, files)


if __name__ == "__main__":
    sys.exit(main())
