"""durable-sandbox: display data, what a notebook shows. Part of the Python session kernel and of the sitecustomize of
one-shot programs (launcher/kernels/). display(obj, ...) sends each object's MIME bundle (IPython's protocol:
_repr_mimebundle_, _repr_html_, _repr_png_, ...; text/plain always) to the launcher on the descriptor it names in
DS_DISPLAY_FD; matplotlib's plt.show() displays the open figures as PNG, and so does the end of a run for figures left
open; IPython.display.display is this display. Each message: 16 ASCII digits (its length), then the bundle as JSON."""


def _ds_display_install(fd, max_bytes):
    import base64
    import builtins
    import io
    import json
    import os
    import sys

    reprs = (
        ("text/html", "_repr_html_"),
        ("text/markdown", "_repr_markdown_"),
        ("image/svg+xml", "_repr_svg_"),
        ("image/png", "_repr_png_"),
        ("image/jpeg", "_repr_jpeg_"),
        ("text/latex", "_repr_latex_"),
        ("application/json", "_repr_json_"),
    )

    def is_figure(obj):
        return type(obj).__module__.startswith("matplotlib.figure") and hasattr(obj, "savefig")

    def rich(obj):
        """Whether the object shows as more than its repr."""
        if isinstance(obj, type):
            return False
        if is_figure(obj) or callable(getattr(obj, "_repr_mimebundle_", None)):
            return True
        return any(callable(getattr(obj, name, None)) for _, name in reprs)

    def bundle(obj):
        data = {}
        if not isinstance(obj, type):
            meth = getattr(obj, "_repr_mimebundle_", None)
            if callable(meth):
                try:
                    got = meth(include=None, exclude=None)
                    if isinstance(got, tuple):
                        got = got[0]
                    if isinstance(got, dict):
                        data.update((k, v) for k, v in got.items() if isinstance(k, str))
                except Exception:
                    pass
            for mime, name in reprs:
                meth = getattr(obj, name, None)
                if mime in data or not callable(meth):
                    continue
                try:
                    value = meth()
                except Exception:
                    continue
                if isinstance(value, tuple):
                    value = value[0]
                if value is not None:
                    data[mime] = value
            if is_figure(obj) and "image/png" not in data:
                buf = io.BytesIO()
                obj.savefig(buf, format="png", bbox_inches="tight")
                data["image/png"] = buf.getvalue()
        out = {}
        for mime, value in data.items():
            if isinstance(value, (bytes, bytearray)):
                out[mime] = base64.b64encode(bytes(value)).decode("ascii")
            elif isinstance(value, str):
                out[mime] = value
            elif mime.endswith("json"):
                try:
                    out[mime] = json.dumps(value)
                except (TypeError, ValueError):
                    pass
        if not isinstance(out.get("text/plain"), str):
            try:
                out["text/plain"] = repr(obj)
            except Exception as exc:
                out["text/plain"] = "<unrepresentable %s: %s>" % (type(obj).__name__, exc)
        return out

    def send(data):
        payload = json.dumps(data, separators=(",", ":")).encode("utf-8")
        if len(payload) > max_bytes:
            # Too large whole: its text form alone, and said so.
            text = data.get("text/plain", "")[: max_bytes // 2]
            payload = json.dumps({"text/plain": text, "durable-sandbox/truncated": "true"}).encode("utf-8")
        message = b"%016d" % len(payload) + payload
        try:
            while message:
                message = message[os.write(fd, message):]
        except OSError:
            pass

    def display(*objs, **_ignored):
        for obj in objs:
            send(bundle(obj))

    def show_figures(*_args, **_kwargs):
        """Every open figure, displayed and closed (plt.show, and the end of a run)."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            for num in plt.get_fignums():
                display(plt.figure(num))
            plt.close("all")
        except Exception:
            pass

    def patch(name, module):
        if name == "matplotlib.pyplot":
            module.show = show_figures
            # Before pyplot's own exit hook closes them, the figures still open are shown (a one-shot program).
            import atexit

            atexit.register(show_figures)
        elif name in ("IPython.core.display_functions", "IPython.core.display", "IPython.display"):
            module.display = display

    watched = ("matplotlib.pyplot", "IPython.core.display_functions", "IPython.core.display", "IPython.display")

    class Hook:
        """Patches the watched modules as they are imported (a finder in front of the others)."""

        def find_spec(self, name, path, target=None):
            if name not in watched:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is None or spec.loader is None:
                    continue
                loader = spec.loader
                run = loader.exec_module

                def exec_module(module, run=run, name=name):
                    run(module)
                    patch(name, module)

                try:
                    loader.exec_module = exec_module
                except AttributeError:
                    pass
                return spec
            return None

    try:
        os.fstat(fd)
    except OSError:
        return None
    sys.meta_path.insert(0, Hook())
    for name in watched:
        if name in sys.modules:
            patch(name, sys.modules[name])
    builtins.display = display
    return {"display": display, "rich": rich, "bundle": bundle, "send": send, "show_figures": show_figures}
