"""Display data (kernels/display.py) as the launcher frames it into the log: what a program displays arrives on a pipe
of its own, as length-prefixed JSON MIME bundles; each one kept goes into the log as a "d" header and "b" lines (as an
output file does), up to a count and a byte cap per run; the rest are counted. A pipe that stops making sense (the
program wrote something else to it) is read no further."""
import base64
import json
import re

from protocol import *  # noqa: F401,F403
from output import *  # noqa: F401,F403


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


class Displays:
    """One run's display data: reads its pipe's bytes, frames whole bundles into the log, counts what it drops."""

    def __init__(self, max_count, cap):
        self.max_count = max(0, int(max_count))
        self.cap = max(0, int(cap))
        self.buffer = b""
        self.sent = 0
        self.dropped = 0
        self.kept = 0
        self.broken = False

    def feed(self, data):
        if self.broken:
            return
        self.buffer += data
        while len(self.buffer) >= 16:
            head = self.buffer[:16]
            if not head.isdigit():
                self.broken = True
                self.buffer = b""
                return
            size = int(head)
            if len(self.buffer) < 16 + size:
                if size > self.cap + 65536:
                    # Never kept whole: skipped as it comes rather than held.
                    self.broken = True
                    self.buffer = b""
                    self.dropped += 1
                return
            payload, self.buffer = self.buffer[16:16 + size], self.buffer[16 + size:]
            self.frame(payload)

    def frame(self, payload):
        try:
            data = json.loads(payload.decode("utf-8"))
            valid = isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
        except ValueError:
            valid = False
        if valid:
            # Control characters are not kept in display text (the result's JSON stays within twice its size).
            payload = json.dumps({k: CONTROL.sub("", v) for k, v in data.items()}, separators=(",", ":")).encode("utf-8")
        if not valid or self.sent >= self.max_count or self.kept + len(payload) > self.cap:
            self.dropped += 1
            return
        write_line(TAG_DISPLAY + " " + json.dumps({"index": self.sent, "size": len(payload)}, separators=(",", ":")))
        for i in range(0, len(payload), CHUNK):
            write_line(TAG_FILE_DATA + " " + base64.b64encode(payload[i:i + CHUNK]).decode("ascii"))
        self.sent += 1
        self.kept += len(payload)
