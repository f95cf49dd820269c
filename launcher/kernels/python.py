import ast, linecache, os, sys, traceback

def _cell(source, number, ns, shown=None):
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
                # A value that shows as more than its repr (a table, a chart, HTML) is display data; any other is
                # printed, as a REPL does.
                if shown is not None and shown["rich"](value):
                    shown["display"](value)
                else:
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

def _state_pickler():
    """dill (in the images: it keeps what a session defines, its functions and classes); else the standard pickle,
    which refuses what a session defines (it would keep a name that does not exist on a new pod)."""
    try:
        import dill
        return dill, "dill"
    except ImportError:
        import io, pickle

        class Refusing(pickle.Pickler):
            def reducer_override(self, obj):
                if isinstance(obj, type) or callable(obj) and hasattr(obj, "__code__"):
                    if getattr(obj, "__module__", None) == "__main__":
                        raise pickle.PicklingError("defined in the session: kept only with dill")
                return NotImplemented

        class Plain:
            @staticmethod
            def dumps(obj, protocol=None):
                buf = io.BytesIO()
                Refusing(buf, protocol).dump(obj)
                return buf.getvalue()

            loads = staticmethod(pickle.loads)

        return Plain, "pickle"

def _checkpoint(ns, own, path, max_bytes, last):
    """Writes the session's state (the namespace's names, less the kernel's own) to path, unless it is what `last`
    (the sha256 of the state written before) says is there already. Modules are kept by name (imported again on
    restore); a value that cannot be serialized is named in "skipped" and left out."""
    import hashlib, time, types
    started = time.monotonic()
    pickler, how = _state_pickler()
    modules, values = {}, {}
    for name, value in list(ns.items()):
        if (name.startswith("__") and name.endswith("__")) or (name in own and own[name] is value):
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
        else:
            values[name] = value
    skipped = []
    try:
        data = pickler.dumps((modules, values), protocol=4)
    except Exception:
        for name in sorted(values):
            try:
                pickler.dumps(values[name], protocol=4)
            except Exception as exc:
                skipped.append("%s (%s: %s)" % (name, type(values[name]).__name__, str(exc).splitlines()[0][:120]
                                                if str(exc) else type(exc).__name__))
                del values[name]
        try:
            data = pickler.dumps((modules, values), protocol=4)
        except Exception as exc:
            return {"error": "the state could not be serialized: %s" % exc, "ms": round((time.monotonic() - started) * 1000)}
    sha = hashlib.sha256(data).hexdigest()
    report = {"sha": sha, "bytes": len(data), "names": len(modules) + len(values), "skipped": skipped, "with": how}
    if len(data) > max_bytes:
        report["error"] = "the state is %d bytes, more than the %d kept" % (len(data), max_bytes)
    elif sha != last:
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        report["changed"] = True
    else:
        report["changed"] = False
    report["ms"] = round((time.monotonic() - started) * 1000)
    return report

def _restore(ns, path):
    """Loads a state _checkpoint wrote into the namespace: its modules imported again, its values as they were."""
    import importlib, time
    started = time.monotonic()
    pickler, how = _state_pickler()
    with open(path, "rb") as f:
        modules, values = pickler.loads(f.read())
    missing = []
    for name, module in modules.items():
        try:
            ns[name] = importlib.import_module(module)
        except Exception as exc:
            missing.append("%s (import %s: %s)" % (name, module, exc))
    ns.update(values)
    return {"names": len(modules) + len(values) - len(missing), "skipped": missing, "with": how,
            "ms": round((time.monotonic() - started) * 1000)}

def _control(source, ns, own, memo):
    """A request of the launcher's (a run numbered 0): checkpoint or restore the session's state."""
    import json
    try:
        op = json.loads(source)
        if op.get("op") == "checkpoint":
            report = _checkpoint(ns, own, op["path"], int(op.get("maxBytes") or 1 << 62), memo.get("sha"))
            if "sha" in report and "error" not in report:
                memo["sha"] = report["sha"]
        elif op.get("op") == "restore":
            import hashlib
            report = _restore(ns, op["path"])
            with open(op["path"], "rb") as f:
                memo["sha"] = hashlib.sha256(f.read()).hexdigest()
        else:
            report = {"error": "unknown request %r" % op.get("op")}
    except BaseException as exc:
        report = {"error": "%s: %s" % (type(exc).__name__, exc)}
    return report

def _serve(rfd, wfd, dfd, display_cap):
    import __main__, signal
    ns = __main__.__dict__
    shown = _ds_display_install(dfd, display_cap) if dfd >= 0 else None
    # What the launcher reads the interpreter's output from. A cell may replace sys.stdout or sys.stderr (they are put
    # back before the next), or close or redirect the descriptors under them (then this interpreter can no longer be
    # heard: it says so, and the launcher starts another for the next run).
    out, err = sys.stdout, sys.stderr
    pipes = [os.fstat(fd).st_ino for fd in (1, 2)]

    def heard():
        try:
            return [os.fstat(fd).st_ino for fd in (1, 2)] == pipes
        except OSError:
            return False

    # An interrupt counts only while a cell runs: one that comes late must not end the interpreter between cells.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The kernel's own names: never part of the session's state.
    own = dict(ns)
    memo = {}
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
        sys.stdout, sys.stderr = out, err
        if number == 0:
            import json
            report = _control(source.decode("utf-8", "replace"), ns, own, memo)
            os.write(wfd, b"c " + json.dumps(report, separators=(",", ":")).encode() + b"\n")
            continue
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            status = _cell(source.decode("utf-8", "replace"), number, ns, shown)
            if shown is not None:
                # The figures a run leaves open are shown, as a notebook's cell does.
                shown["show_figures"]()
        except KeyboardInterrupt:
            status = 130
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout, sys.stderr = out, err
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.write(wfd, b"%d%s\n" % (status, b"" if heard() else b" unheard"))

_serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else -1,
       int(sys.argv[4]) if len(sys.argv) > 4 else 0)
