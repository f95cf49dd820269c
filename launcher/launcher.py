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

import base64
import ctypes
import hashlib
import json
import os
import resource
import select
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

# --- The protocol (docs/LAUNCHER.md). core/launcher-protocol.ts holds the same values under the same names, and
# test/unit/launcher-protocol.test.ts compares the two.
FORMAT = "durable-sandbox-launcher 1"  # LAUNCHER_FORMAT
TASK_FORMAT = "durable-sandbox-task 1"
TAG_STDOUT = "o"
TAG_STDERR = "e"
TAG_ACCEPTED = "a"
TAG_FILE_HEADER = "f"
TAG_FILE_DATA = "b"
TAG_TRAILER = "x"
TAG_SESSION = "s"
TRAILER_FIELDS = ("exitCode", "signal", "timedOut", "terminated", "stdoutBytes", "stderrBytes", "startedAt",
                  "finishedAt", "error", "files", "filesSkipped")
DELIVERY_FAILED = 125  # LAUNCHER_EXIT.deliveryFailed
REFUSED = 126  # LAUNCHER_EXIT.refused
IDLE_EXIT = 0  # LAUNCHER_EXIT.idle
# ---
CHUNK = 8192  # raw bytes per frame: a frame line stays under the runtime's 16 KiB log line size
# Longest time output waits to be framed (here) or flushed (in a Python program), in seconds.
FLUSH_EVERY = 0.05
# After a read this small, the next waits this long (seconds): a program writing in tiny pieces (a shell's echo) then
# fills the pipe without waking the launcher at every write, which costs both sides a context switch per write.
SMALL_READ = 4096
LINGER = 0.005
DRAIN_AFTER_EXIT = 0.5  # seconds to keep reading after the program exits (children may still hold the pipes)
# Processes + threads the sandbox user may have (RLIMIT_NPROC, set only as PID 1 under gVisor, which counts them per
# sandbox). Every process of the program costs the pod about two host PIDs there (threads cost none): this keeps a
# fork bomb well inside a podPidsLimit of 512.
MAX_TASKS = 128
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
# Variables the kubelet injects for the cluster's own API service even with enableServiceLinks: false.
SERVICE_ENV_PREFIXES = ("KUBERNETES_SERVICE_", "KUBERNETES_PORT")
# Session mode: how long an interrupted cell has to come back before its interpreter is restarted (seconds).
INTERRUPT_GRACE = 2.0


def write_line(line):
    data = line.encode("ascii") + b"\n"
    while data:
        written = os.write(1, data)
        data = data[written:]


def write_trailer(trailer):
    """The log's last line: every field of TRAILER_FIELDS, in that order."""
    write_line(TAG_TRAILER + " " + json.dumps({k: trailer[k] for k in TRAILER_FIELDS}, separators=(",", ":")))


def now_ms():
    return int(time.time() * 1000)


def parse_task_args(argv):
    if len(argv) != 2 or argv[0] != "--task":
        raise SystemExit("launcher: usage: launcher.py --task FILE")
    return argv[1]


def read_task_file(path):
    """The task mounted with the pod (cold): the same JSON a warm sandbox receives, its program and files beside it."""
    try:
        with open(path, "rb") as f:
            payload = f.read()
        return json.loads(payload.decode("utf-8")), hashlib.sha256(payload).hexdigest()
    except (OSError, ValueError) as exc:
        raise DeliveryError("the task file cannot be read: %s" % exc)


class FileLimits:
    """Where the program leaves output files, and how many bytes of them go back (the rest is counted only)."""

    def __init__(self, out_dir, max_count, file_cap, total_cap):
        self.out_dir = out_dir
        self.max_count = max_count
        self.file_cap = file_cap
        self.total_cap = total_cap


def output_files(out_dir):
    """Regular files under out_dir (never following a symlink), as (relative path, path, size), in a stable order."""
    found = []
    try:
        if not stat.S_ISDIR(os.lstat(out_dir).st_mode):
            return found
    except OSError:
        return found
    for root, dirs, files in os.walk(out_dir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((os.path.relpath(path, out_dir), path, st.st_size))
    return sorted(found)


def send_files(limits, since=None):
    """Frames the output files into the log: "f <json header>" then "b <base64>" lines; returns (sent, skipped).
    With `since` (seconds since the epoch), only files changed since then (a session's run sends what it wrote)."""
    if not limits.out_dir or limits.max_count <= 0:
        return 0, 0
    sent = skipped = total = 0
    for rel, path, size in output_files(limits.out_dir):
        if since is not None and changed_at(path) < since:
            continue
        if sent >= limits.max_count:
            skipped += 1
            continue
        keep = max(0, min(size, limits.file_cap, limits.total_cap - total))
        try:
            # O_NOFOLLOW: a file swapped for a symlink since the walk is not followed out of the directory.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            skipped += 1
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                skipped += 1
                continue
            write_line(TAG_FILE_HEADER + " " + json.dumps({"name": rel, "size": size, "kept": keep}, separators=(",", ":")))
            left = keep
            while left > 0:
                data = os.read(fd, min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                write_line(TAG_FILE_DATA + " " + base64.b64encode(data).decode("ascii"))
            total += keep - left
            sent += 1
        finally:
            os.close(fd)
    return sent, skipped


def changed_at(path):
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


class Stream:
    """One of the program's streams: counts every byte, keeps up to the cap, and frames what it keeps in whole frames
    at once and the rest by a deadline, so that many small reads make few log lines."""

    def __init__(self, tag, cap):
        self.tag = tag
        self.cap = cap
        self.total = 0
        self.kept = 0
        self.pending = b""
        self.due = None  # when the pending bytes must be framed (time.monotonic())

    def feed(self, data, now):
        self.total += len(data)
        room = self.cap - self.kept
        if room <= 0:
            return
        data = data[:room]
        self.kept += len(data)
        if not self.pending:
            self.due = now + FLUSH_EVERY
        self.pending += data
        whole = len(self.pending) - len(self.pending) % CHUNK
        if whole:
            self.frame(self.pending[:whole])
            self.pending = self.pending[whole:]
            if not self.pending:
                self.due = None

    def flush(self):
        if self.pending:
            self.frame(self.pending)
        self.pending = b""
        self.due = None

    def frame(self, data):
        for i in range(0, len(data), CHUNK):
            write_line(self.tag + " " + base64.b64encode(data[i:i + CHUNK]).decode("ascii"))


def until_due(streams, now):
    """Seconds until the first stream's pending bytes must be framed (infinity when none are pending)."""
    due = [s.due for s in streams.values() if s.due is not None]
    return max(0.0, min(due) - now) if due else float("inf")


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if os.getpid() == 1:
        # The container's init: every other process in the container is the program's, whatever its session.
        kill_others()


def kill_others():
    """SIGKILLs every other live process in the container, as kill(-1) would (the launcher's own seccomp filter
    refuses kill(-1)), again until none is left: one may have forked while the others were being killed."""
    me = os.getpid()
    for _ in range(50):
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open("/proc/%s/stat" % entry, "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):  # dead already, waiting to be reaped
                alive.append(int(entry))
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)


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


# --- The program's seccomp filter -----------------------------------------------------------------------------------

# Syscall numbers per architecture (AUDIT_ARCH value, numbers). Everything not named here is allowed.
SYSCALLS = {
    "x86_64": (0xC000003E, {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kill": 62, "tkill": 200, "tgkill": 234,
        "pidfd_send_signal": 424, "pidfd_open": 434, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone": 56, "clone3": 435,
        "unshare": 272, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442,
    }),
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kill": 129, "tkill": 130, "tgkill": 131,
        "pidfd_send_signal": 424, "pidfd_open": 434, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
        "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone": 220, "clone3": 435,
        "unshare": 97, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442,
    }),
}
DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_send_signal", "setns", "mount", "umount2",
          "pivot_root", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
          "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
          "mount_setattr")
# Refused when their first argument (a PID) is the launcher's or -1 (every process).
SIGNALLING = ("kill", "tkill", "tgkill", "pidfd_open")
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET; unshare also NEWTIME (0x80, the exit signal's bits
# in clone).
CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
UNSHARE_NEW = CLONE_NEW | 0x00000080
EPERM, ENOSYS = 1, 38
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
X32_BIT = 0x40000000
# seccomp_data offsets: nr, arch, then args[6] (64-bit each; little-endian: the low half first).
OFF_NR, OFF_ARCH, OFF_ARG0 = 0, 4, 16
# Classic BPF opcodes.
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06


def seccomp_program(launcher_pid):
    """The filter as (code, jt, jf, k) instructions, or None on an architecture it does not know."""
    arch = SYSCALLS.get(os.uname().machine)
    if arch is None:
        return None
    audit_arch, nr = arch
    prog = []  # entries: [code, jt, jf, k] with jt/jf as labels (str) or offsets (int)
    labels = {}

    def op(code, k=0, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    def label(name):
        labels[name] = len(prog)

    op(LD_ABS, OFF_ARCH)
    op(JEQ, audit_arch, 0, "eperm")  # another ABI (e.g. 32-bit calls on x86_64): refused whole
    op(LD_ABS, OFF_NR)
    if audit_arch == 0xC000003E:
        op(JGE, X32_BIT, "eperm", 0)  # the x32 ABI's numbers
    for name in DENIED:
        op(JEQ, nr[name], "eperm", 0)
    op(JEQ, nr["clone3"], "enosys", 0)
    op(JEQ, nr["clone"], "clone", 0)
    op(JEQ, nr["unshare"], "unshare", 0)
    for name in SIGNALLING:
        op(JEQ, nr[name], "pid", 0)
    op(RET, RET_ALLOW)
    label("clone")
    op(LD_ABS, OFF_ARG0)
    op(JSET, CLONE_NEW, "eperm", "allow")
    label("unshare")
    op(LD_ABS, OFF_ARG0)
    op(JSET, UNSHARE_NEW, "eperm", "allow")
    label("pid")
    op(LD_ABS, OFF_ARG0)
    op(JEQ, launcher_pid, "eperm", 0)
    op(JEQ, 0xFFFFFFFF, "eperm", "allow")
    label("allow")
    op(RET, RET_ALLOW)
    label("eperm")
    op(RET, RET_ERRNO | EPERM)
    label("enosys")
    op(RET, RET_ERRNO | ENOSYS)

    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("seccomp program: jump out of range")
        out.append((code, jt, jf, k))
    return out


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def install_seccomp(launcher_pid):
    """Installs the filter in this process (and so in all it starts); raises OSError when it cannot."""
    program = seccomp_program(launcher_pid)
    if program is None:
        raise OSError("no seccomp filter for architecture %s" % os.uname().machine)
    filters = (SockFilter * len(program))(*[SockFilter(c, t, f, k) for c, t, f, k in program])
    fprog = SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


HOME_SKELETON = "/usr/share/durable-sandbox/home"
MAX_HEADER = 256


class DeliveryError(Exception):
    pass


class NoMoreTasks(DeliveryError):
    """stdin ended where a task would start: whoever sent tasks has closed it."""



def await_task(max_idle):
    """Whether a task started to arrive on stdin within max_idle seconds (None: wait for ever)."""
    if max_idle is None:
        return True
    deadline = time.monotonic() + max_idle
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            ready, _, _ = select.select([0], [], [], left)
        except InterruptedError:
            continue
        if ready:
            return True


def read_exactly(fd, n):
    chunks = []
    while n > 0:
        data = os.read(fd, min(n, 65536))
        if not data:
            raise DeliveryError("the task ended %d bytes early" % n)
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def receive_task(max_bytes, last=True):
    """Reads one framed task from stdin and verifies it; unless more may follow (a session), closes stdin so that
    nothing else can ever be read."""
    try:
        header = b""
        while not header.endswith(b"\n"):
            if len(header) >= MAX_HEADER:
                raise DeliveryError("the task header is too long")
            byte = os.read(0, 1)
            if not byte:
                if not header:
                    raise NoMoreTasks("stdin closed before a task arrived")
                raise DeliveryError("the task header ended early")
            header += byte
        parts = header.decode("ascii", "replace").split()
        if len(parts) != 4 or " ".join(parts[:2]) != TASK_FORMAT or not parts[2].isdigit():
            raise DeliveryError("not a task header")
        length, digest = int(parts[2]), parts[3]
        if length > max_bytes:
            raise DeliveryError("the task is %d bytes, more than %d" % (length, max_bytes))
        payload = read_exactly(0, length)
        if hashlib.sha256(payload).hexdigest() != digest:
            raise DeliveryError("the task's checksum does not match")
        try:
            task = json.loads(payload.decode("utf-8"))
        except ValueError:
            raise DeliveryError("the task is not JSON")
        return task, digest
    finally:
        if last:
            close_stdin()


def close_stdin():
    """Accepted or not, this sandbox reads no second task: its stdin is /dev/null from now on."""
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)


def materialize(task, task_dir):
    """Writes the program and its input files where the cold path's ConfigMap would mount them."""
    materialize_files(task, task_dir)
    program = os.path.join(task_dir, task["file"])
    with open(program, "w", encoding="utf-8") as f:
        f.write(task["code"])
    os.chmod(program, 0o444)


def parse_warm_args(argv):
    opts = {"--max-task-bytes": None, "--task-dir": None, "--max-idle-seconds": ""}
    i = 0
    while i < len(argv):
        if argv[i] not in opts or i + 1 >= len(argv):
            raise SystemExit("launcher: bad argument %r" % argv[i])
        opts[argv[i]] = argv[i + 1]
        i += 2
    if None in opts.values():
        raise SystemExit("launcher: usage: launcher.py --warm --max-task-bytes N --task-dir DIR [--max-idle-seconds N]")
    idle = opts["--max-idle-seconds"]
    return int(opts["--max-task-bytes"]), opts["--task-dir"], (float(idle) if idle else None)


def note_termination(message):
    """The pod's termination message (kubectl shows it): which task this sandbox accepted, or why it ran none."""
    try:
        with open(os.environ.get("DS_TERMINATION_LOG", "/dev/termination-log"), "w") as f:
            f.write(message)
    except OSError:
        pass


def nothing_ran(exit_code, error):
    """The trailer of a sandbox that ran no program."""
    return {"exitCode": exit_code, "signal": None, "timedOut": False, "terminated": False, "stdoutBytes": 0,
            "stderrBytes": 0, "startedAt": 0, "finishedAt": 0, "error": error, "files": 0, "filesSkipped": 0}


def failed_delivery(reason):
    note_termination("delivery failed: %s" % reason)
    write_trailer(nothing_ran(DELIVERY_FAILED, "delivery failed: %s" % reason))
    return DELIVERY_FAILED


def confine():
    """Installs the program's seccomp filter on the launcher itself, before any program exists: everything the
    launcher starts inherits it (and starting the program stays a vfork). The launcher needs none of what it refuses:
    it ends the program's processes by process group and one by one, never with kill(-1). Returns an error, if any."""
    try:
        install_seccomp(os.getpid())
        return None
    except (OSError, ValueError) as exc:
        return "could not install the seccomp filter: %s" % exc


def refuse_to_run(error):
    """Runs nothing (the filter could not be installed): the trailer says why."""
    write_line(FORMAT)
    write_trailer(nothing_ran(REFUSED, error))
    return REFUSED


def program_of(task):
    """What to run, from a task: its command, time limit, stream caps, output file limits and extra environment."""
    try:
        env = {str(k): str(v) for k, v in task.get("env", {}).items()}
        files = FileLimits(task.get("outDir"), int(task.get("filesMaxCount", 0)), int(task.get("fileCap", 0)),
                           int(task.get("filesCap", 0)))
        command = [str(c) for c in task["command"]]
        if not command:
            raise ValueError("no command")
        return int(task["timeoutSeconds"]), int(task["stdoutCap"]), int(task["stderrCap"]), command, env, files
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DeliveryError("bad task: %s" % exc)


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


def egress_of(task):
    """The egress gateway (host, port) a task names, if it has egress."""
    egress = task.get("egress") if isinstance(task, dict) else None
    proxy = str(egress.get("proxy") or "") if isinstance(egress, dict) else ""
    host, _, port = proxy.rpartition(":")
    try:
        return (host, int(port)) if host else None
    except ValueError:
        return None


GATEWAY_WAIT = 2.0


def await_gateway(gateway):
    """With egress, waits (up to GATEWAY_WAIT s) until the gateway's port answers: the host lets a pod through only
    once the gateway has seen its pod (a claim is milliseconds old), and the program's first connection should not be
    the one that finds out. A gateway that never answers (it is down) leaves the program to meet the refusal."""
    if not gateway:
        return False
    deadline = time.monotonic() + GATEWAY_WAIT
    while True:
        try:
            with socket.create_connection(gateway, timeout=0.25):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


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


# The program's Python processes import this first (see buffer_python): stdout and stderr stay buffered, and a thread
# flushes them every FLUSH_EVERY seconds. Around a fork the thread is stopped, so that no flush in progress leaves the
# child's stream locked and Python 3.12 does not warn about forking a multi-threaded process (3.13 counts threads after
# the parent's hooks, and still does), then started again in both processes. At exit it is stopped before Python's own
# last flush, which a thread still flushing would abort.
SITECUSTOMIZE = r'''"""durable-sandbox: stdout and stderr stay buffered, and a thread flushes them periodically."""


def _flush_periodically(seconds):
    import atexit
    import os
    import sys
    import time
    import _thread

    # Under -u or PYTHONUNBUFFERED the streams write through: nothing to do.
    streams = [s for s in (sys.stdout, sys.stderr) if s is not None and not getattr(s, "write_through", True)]
    if not streams:
        return

    def flush():
        for stream in streams:
            try:
                stream.flush()
            except Exception:
                pass

    class Flusher:
        stop = done = tid = None

        def start(self):
            stop, done = _thread.allocate_lock(), _thread.allocate_lock()
            stop.acquire()
            done.acquire()
            try:
                _thread.start_new_thread(self.run, (stop, done))
            except RuntimeError:
                return  # no thread to spare (the sandbox's task limit): flushed at exit, as plain Python is
            self.stop, self.done = stop, done

        def run(self, stop, done):
            self.tid = _thread.get_native_id()
            try:
                while not stop.acquire(timeout=seconds):
                    flush()
            finally:
                done.release()

        def halt(self, until_gone=False):
            if self.stop is None:
                return
            stop, self.stop = self.stop, None
            stop.release()
            self.done.acquire()
            # The thread has returned but may not have exited yet: a fork now would still count it.
            task = "/proc/self/task/%d" % self.tid if until_gone and self.tid else None
            for _ in range(200 if task else 0):
                if not os.path.exists(task):
                    break
                time.sleep(0.0005)

    flusher = Flusher()

    def before_fork():
        flusher.halt(until_gone=True)
        flush()  # the child would otherwise print the pending output again

    def at_exit():
        flusher.halt()
        flush()

    flusher.start()
    atexit.register(at_exit)
    os.register_at_fork(before=before_fork, after_in_parent=flusher.start, after_in_child=flusher.start)


def _run_hidden_sitecustomize():
    """Imports the sitecustomize this one hides (the image or the program's PYTHONPATH may have one), as Python would
    have: it takes this one's place in sys.modules. (importlib.util would cost a dozen more imports at every start.)"""
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    path, ours = sys.path[:], sys.modules.pop(__name__)
    sys.path[:] = [p for p in path if os.path.abspath(p or os.curdir) != here]
    try:
        import sitecustomize  # noqa: F401
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        sys.modules[__name__] = ours
    finally:
        sys.path[:] = path
'''


def buffer_python(env):
    """Writes SITECUSTOMIZE into a directory of the launcher's under TMPDIR (the program's scratch space: /sandbox may
    be read-only) and puts it first on the program's PYTHONPATH; returns the directory. Where it cannot be written,
    Python runs unbuffered instead (slow, but live) and this returns None."""
    where = os.path.join(env.get("TMPDIR") or "/tmp", ".durable-sandbox-python-%d" % os.getpid())
    try:
        shutil.rmtree(where, ignore_errors=True)
        os.mkdir(where, 0o755)
        with open(os.path.join(where, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(SITECUSTOMIZE + "\n_flush_periodically(%r)\n_run_hidden_sitecustomize()\n" % FLUSH_EVERY)
    except OSError:
        env.setdefault("PYTHONUNBUFFERED", "1")
        return None
    env["PYTHONPATH"] = os.pathsep.join(p for p in (where, env.get("PYTHONPATH")) if p)
    return where


def run(timeout, stdout_cap, stderr_cap, command, env, files):
    seed_home(env.get("HOME"))
    python_dir = buffer_python(env)
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
    except (OSError, subprocess.SubprocessError) as exc:
        error = "could not start %s: %s" % (command[0], exc)
        child = None

    timed_out = False
    if child is not None:
        sel = selectors.DefaultSelector()
        streams[child.stdout.fileno()] = Stream(TAG_STDOUT, stdout_cap)
        streams[child.stderr.fileno()] = Stream(TAG_STDERR, stderr_cap)
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
            wait = min(wait, until_due(streams, now))
            largest = 0
            for key, _ in sel.select(timeout=wait):
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
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
    }
    write_trailer(trailer)
    return exit_code


# --- Session mode ----------------------------------------------------------------------------------------------------
# A session's sandbox runs one task after another in one interpreter that lives as long as the sandbox: variables,
# imports, the working directory and files persist between runs. Each task arrives framed on stdin as in warm mode
# (stdin stays open for the next), with "code" and a "seq" (the run's number in the session); the launcher answers
# each with "a" (accepted, with the seq), the run's "o"/"e" frames, the files it wrote under the out directory, an
# "s" line (the interpreter: "started", "kept" or "restarted", and why) and its trailer. A run that outlives its
# time limit is interrupted as a notebook would be (KeyboardInterrupt); an interpreter that does not come back
# within INTERRUPT_GRACE seconds, or that died, is restarted for the next run, the files kept.

PYTHON_KERNEL = r"""
import ast, linecache, os, sys, traceback

def _cell(source, number, ns):
    name = "<run %d>" % number
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    try:
        tree = ast.parse(source, filename=name, mode="exec")
    except SyntaxError:
        traceback.print_exc(limit=0)
        return 1
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    try:
        exec(compile(tree, name, "exec"), ns)
        if last is not None:
            value = eval(compile(last, name, "eval"), ns)
            if value is not None:
                ns["_"] = value
                print(repr(value))
        return 0
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        print(code, file=sys.stderr)
        return 1
    except BaseException as exc:
        # The cell's own frames only: the kernel's are of no interest to the program's author.
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        traceback.print_exception(type(exc), exc, tb)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1

def _serve(rfd, wfd):
    import __main__, signal
    ns = __main__.__dict__
    # An interrupt counts only while a cell runs: one that comes late must not end the interpreter between cells.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    r = os.fdopen(rfd, "rb", buffering=0)
    while True:
        head = b""
        while len(head) < 16:
            more = r.read(16 - len(head))
            if not more:
                return
            head += more
        number, length = int(head[:8]), int(head[8:])
        source = b""
        while len(source) < length:
            more = r.read(length - len(source))
            if not more:
                return
            source += more
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            status = _cell(source.decode("utf-8", "replace"), number, ns)
        except KeyboardInterrupt:
            status = 130
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.write(wfd, b"%d\n" % status)

_serve(int(sys.argv[1]), int(sys.argv[2]))
"""


# A bash session's shell: each cell is eval'd in the one shell, so the working directory, variables, exported ones and
# functions persist. An interrupt (sent to the shell's whole process group) ends the running command, not the shell;
# a cell's `exit` ends the shell, which is restarted for the next run.
BASH_KERNEL = r"""
__ds_cells=$1 __ds_done=$2
trap ':' INT
while LC_ALL=C IFS= read -r -N 16 -u "$__ds_cells" __ds_head && [ ${#__ds_head} -eq 16 ]; do
  __ds_len=$((10#${__ds_head:8:8})) __ds_src=
  if [ "$__ds_len" -gt 0 ]; then LC_ALL=C IFS= read -r -N "$__ds_len" -u "$__ds_cells" __ds_src; fi
  eval "$__ds_src"
  printf '%d\n' "$?" >&"$__ds_done"
done
"""

KERNELS = {"python": PYTHON_KERNEL, "bash": BASH_KERNEL}


class Kernel:
    """The session's interpreter: a process that runs one cell at a time, sent on a pipe, and says on another pipe
    when each is done and how it ended."""

    def __init__(self, interpreter, env, kind="python"):
        cells_r, self.cells = os.pipe()
        self.done, done_w = os.pipe()
        self.kind = kind
        self.process = subprocess.Popen(
            [interpreter, "-c", KERNELS[kind]] + (["ds-kernel"] if kind == "bash" else []) + [str(cells_r), str(done_w)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
            pass_fds=(cells_r, done_w),
        )
        os.close(cells_r)
        os.close(done_w)
        self.streams = {self.process.stdout.fileno(): TAG_STDOUT, self.process.stderr.fileno(): TAG_STDERR}
        for fd in list(self.streams) + [self.done]:
            os.set_blocking(fd, False)

    def send(self, number, source):
        data = source.encode("utf-8")
        os.set_blocking(self.cells, True)
        os.write(self.cells, b"%08d%08d" % (number % 10**8, len(data)) + data)

    def alive(self):
        return self.process.poll() is None

    def interrupt(self):
        """Python: a KeyboardInterrupt in the cell, as a notebook's. bash: the running command and its children."""
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
        for fd in (self.cells, self.done):
            try:
                os.close(fd)
            except OSError:
                pass
        self.process.stdout.close()
        self.process.stderr.close()


def run_cell(kernel, number, code, timeout, caps, state):
    """Runs one cell in the kernel, framing its output as it comes. Returns (status, timed_out, stuck, totals)."""
    streams = {fd: Stream(tag, caps[tag]) for fd, tag in kernel.streams.items()}
    sel = selectors.DefaultSelector()
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(kernel.done, selectors.EVENT_READ)
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
                        status = int(status_buf.strip() or b"1")
                elif not drain(key.fd):
                    sel.unregister(key.fd)
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
    finally:
        sel.close()
        for stream in streams.values():
            stream.flush()
    out = streams[kernel.process.stdout.fileno()]
    err = streams[kernel.process.stderr.fileno()]
    return status, timed_out, stuck, (out.total, err.total)


def session(max_bytes, task_dir, max_idle, first=None, env=None):
    """Serves a session's runs until its idle limit, a stop request or the end of stdin. `first`: a run already read
    (a warm pod a session claimed, whose launcher had started in warm mode: hardened, its format line written)."""
    if env is None:
        env = harden()
        write_line(FORMAT)
    seed_home(env.get("HOME"))
    workspace = env.get("HOME")
    buffer_python(env)
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
    while state["terminated"] is None:
        if first is None and not await_task(max_idle):
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
            kind = task.get("kernel") or "python"
            if kind not in KERNELS:
                raise DeliveryError("no session kernel %r" % kind)
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
        if kernel is not None and not kernel.alive():
            why_restart = why_restart or "the interpreter had exited (code %s)" % kernel.process.returncode
            kernel.stop()
            kernel = None
        how = "kept"
        if kernel is None:
            run_env = dict(env)
            run_env.update(extra_env)
            kernel = Kernel(command[0], run_env, kind)
            how = "restarted" if runs > 0 else "started"
        if runs == 0:
            # The session's first run on this pod: its egress (claimed pods get it with the claim) is open first.
            await_gateway(egress_of(task))
        started = now_ms()
        since = time.time() - 0.001
        status, timed_out, stuck, (out_bytes, err_bytes) = run_cell(
            kernel, number, code, timeout, {TAG_STDOUT: stdout_cap, TAG_STDERR: stderr_cap}, state)
        finished = now_ms()
        runs += 1
        lost = status is None and not timed_out and state["terminated"] is None
        if stuck or lost:
            why_restart = ("the interpreter did not come back from the interrupt within %g s" % INTERRUPT_GRACE
                           if stuck else "the interpreter exited (code %s)" % kernel.process.poll())
            kernel.stop()
            kernel = None
        sent, skipped = send_files(files, since) if state["terminated"] is None else (0, 0)
        note = {"seq": number, "interpreter": how, "why": why_restart if how == "restarted" else None,
                "next": "restart" if kernel is None else "keep"}
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
        })
    if kernel is not None:
        kernel.stop()
    return IDLE_EXIT if state["terminated"] is None else 128 + state["terminated"]


# A session's workspace is its HOME (the working directory it starts in), less the launcher's own entries there. After
# each run the launcher says what it holds as a digest of names, kinds, sizes and modification times (seconds), so
# that the worker saves it to the session's store only when a run changed it (launcher/workspace.py saves and restores
# it; its walk is the same).
WORKSPACE_OWN_PREFIX = ".durable-sandbox-"
WORKSPACE_MAX_ENTRIES = 20000


def workspace_digest(root):
    """{"sig", "entries", "bytes"} of the workspace under root; sig is None past WORKSPACE_MAX_ENTRIES entries."""
    h = hashlib.sha256()
    entries = 0
    total = 0
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            listing = sorted(os.scandir(os.path.join(root, rel_dir)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in listing:
            if not rel_dir and entry.name.startswith(WORKSPACE_OWN_PREFIX):
                continue
            entries += 1
            if entries > WORKSPACE_MAX_ENTRIES:
                return {"sig": None, "entries": entries, "bytes": total}
            rel = os.path.join(rel_dir, entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                # A directory's own time changes with its entries, which are counted themselves.
                line = "d %s %o" % (rel, stat.S_IMODE(st.st_mode))
                pending.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                line = "l %s %s" % (rel, os.readlink(entry.path))
            else:
                line = "f %s %o %d %d" % (rel, stat.S_IMODE(st.st_mode), st.st_size, int(st.st_mtime))
                total += st.st_size
            h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return {"sig": h.hexdigest()[:32], "entries": entries, "bytes": total}


def materialize_files(task, task_dir):
    """A task's input files, read-only under the task directory's files/ (in a session, a later run's file of the same
    name replaces an earlier one's)."""
    files_dir = os.path.join(task_dir, "files")
    os.makedirs(files_dir, exist_ok=True)
    for item in task.get("files", []):
        name = item["name"]
        if "/" in name or name in (".", ".."):
            raise DeliveryError("bad file name %r" % name)
        data = base64.b64decode(item["content"]) if item.get("encoding") == "base64" else item["content"].encode("utf-8")
        path = os.path.join(files_dir, name)
        if os.path.exists(path):
            os.chmod(path, 0o644)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o444)


if __name__ == "__main__":
    sys.exit(main())
