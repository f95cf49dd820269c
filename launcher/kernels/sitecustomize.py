"""durable-sandbox: stdout and stderr stay buffered, and a thread flushes them periodically."""


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


def _display_from_env():
    """Display data (display.py, which follows this file in the sitecustomize the launcher writes), when the launcher
    gave the program a display pipe."""
    import os

    fd = os.environ.get("DS_DISPLAY_FD", "")
    if fd.isdigit():
        _ds_display_install(int(fd), int(os.environ.get("DS_DISPLAY_CAP") or 0) or 262144)  # noqa: F821
