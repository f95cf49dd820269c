"""The launcher's protocol (docs/LAUNCHER.md): the tags of its log lines, the trailer, its exit codes, and the
lines it writes. core/launcher-protocol.ts holds the same values under the same names, and
test/unit/launcher-protocol.test.ts compares the two (in the assembled launcher)."""
import json
import os
import time


FORMAT = "durable-sandbox-launcher 1"  # LAUNCHER_FORMAT
TASK_FORMAT = "durable-sandbox-task 1"
TAG_STDOUT = "o"
TAG_STDERR = "e"
TAG_ACCEPTED = "a"
TAG_FILE_HEADER = "f"
TAG_FILE_DATA = "b"
TAG_TRAILER = "x"
TAG_SESSION = "s"
TAG_DISPLAY = "d"
TAG_CHECKPOINT = "k"
TRAILER_FIELDS = ("exitCode", "signal", "timedOut", "terminated", "stdoutBytes", "stderrBytes", "startedAt",
                  "finishedAt", "error", "files", "filesSkipped", "displays", "displaysDropped")
DELIVERY_FAILED = 125  # LAUNCHER_EXIT.deliveryFailed
REFUSED = 126  # LAUNCHER_EXIT.refused
IDLE_EXIT = 0  # LAUNCHER_EXIT.idle


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
            "stderrBytes": 0, "startedAt": 0, "finishedAt": 0, "error": error, "files": 0, "filesSkipped": 0, "displays": 0,
            "displaysDropped": 0}


def failed_delivery(reason):
    note_termination("delivery failed: %s" % reason)
    write_trailer(nothing_ran(DELIVERY_FAILED, "delivery failed: %s" % reason))
    return DELIVERY_FAILED


def refuse_to_run(error):
    """Runs nothing (the filter could not be installed): the trailer says why."""
    write_line(FORMAT)
    write_trailer(nothing_ran(REFUSED, error))
    return REFUSED


def kernel_source(name):
    """A program the launcher runs in an interpreter of its own (launcher/kernels/NAME). The launcher as it ships
    (core/launcher-assembly.ts) carries each as a string in place of this call."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", name), encoding="utf-8") as f:
        return f.read()
