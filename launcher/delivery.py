"""How a task reaches the launcher: mounted with the pod (cold), or framed on stdin and checked (warm and
session), and what a task says to run; the program and its input files written where the cold path mounts them."""
import base64
import hashlib
import json
import os
import select
import time

from protocol import *  # noqa: F401,F403
from output import *  # noqa: F401,F403


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


def program_of(task):
    """What to run, from a task: its command, time limit, stream caps, output file limits and extra environment."""
    try:
        env = {str(k): str(v) for k, v in task.get("env", {}).items()}
        files = FileLimits(task.get("outDir"), int(task.get("filesMaxCount", 0)), int(task.get("fileCap", 0)),
                           int(task.get("filesCap", 0)), int(task.get("displaysMaxCount", 0)),
                           int(task.get("displaysCap", 0)))
        command = [str(c) for c in task["command"]]
        if not command:
            raise ValueError("no command")
        return int(task["timeoutSeconds"]), int(task["stdoutCap"]), int(task["stderrCap"]), command, env, files
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DeliveryError("bad task: %s" % exc)


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
