"""The launcher's guard against the program it runs (the same user): not dumpable, no service variables, a
cap on processes as PID 1 under gVisor, every other process killed when the program ends, and a seccomp filter."""
import ctypes
import os
import resource
import signal
import time



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


def confine():
    """Installs the program's seccomp filter on the launcher itself, before any program exists: everything the
    launcher starts inherits it (and starting the program stays a vfork). The launcher needs none of what it refuses:
    it ends the program's processes by process group and one by one, never with kill(-1). Returns an error, if any."""
    try:
        install_seccomp(os.getpid())
        return None
    except (OSError, ValueError) as exc:
        return "could not install the seccomp filter: %s" % exc
