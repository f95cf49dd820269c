"""The program's output as the launcher frames it into the log: its streams (counted, capped, batched into
whole frames and by a deadline) and the files it leaves under its out directory."""
import base64
import json
import os
import stat

from protocol import *  # noqa: F401,F403


CHUNK = 8192  # raw bytes per frame: a frame line stays under the runtime's 16 KiB log line size
# Longest time output waits to be framed (here) or flushed (in a Python program), in seconds.
FLUSH_EVERY = 0.05
# After a read this small, the next waits this long (seconds): a program writing in tiny pieces (a shell's echo) then
# fills the pipe without waking the launcher at every write, which costs both sides a context switch per write.
SMALL_READ = 4096
LINGER = 0.005
DRAIN_AFTER_EXIT = 0.5  # seconds to keep reading after the program exits (children may still hold the pipes)


class FileLimits:
    """Where the program leaves output files, and how many bytes of them go back (the rest is counted only); and how
    many of its displays, in how many bytes (displays.py)."""

    def __init__(self, out_dir, max_count, file_cap, total_cap, displays_max=0, displays_cap=0):
        self.out_dir = out_dir
        self.max_count = max_count
        self.file_cap = file_cap
        self.total_cap = total_cap
        self.displays_max = displays_max
        self.displays_cap = displays_cap


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


def out_dir_state(out_dir):
    """What the out directory holds: each file's identity (inode, size, modification time in ns). A session's run sends
    the files whose identity it changed: no clock is compared (the sandbox's and the filesystem's may differ)."""
    state = {}
    for rel, path, _size in output_files(out_dir):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        state[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return state


def send_files(limits, before=None):
    """Frames the output files into the log: "f <json header>" then "b <base64>" lines; returns (sent, skipped).
    With `before` (out_dir_state before a session's run), only the files the run wrote or changed."""
    if not limits.out_dir or limits.max_count <= 0:
        return 0, 0
    sent = skipped = total = 0
    now = out_dir_state(limits.out_dir) if before is not None else None
    for rel, path, size in output_files(limits.out_dir):
        if before is not None and before.get(rel) == now.get(rel):
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
