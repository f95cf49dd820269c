"""durable-sandbox: a session's workspace as a tar.gz, run inside the sandbox through pods/exec.

  python3 -c <this> save ROOT      writes the workspace under ROOT to stdout (tar.gz)
  python3 -c <this> restore ROOT   makes the workspace under ROOT what the tar.gz on stdin holds: its entries written
                                   (files with their modes and times), files it does not hold removed

The launcher's own entries at the top of ROOT (".durable-sandbox-*") are neither saved nor touched, but for the
interpreter's checkpoints (".durable-sandbox-state/"), saved and restored with the workspace. Only regular
files, directories and symbolic links are kept. A restore writes nothing outside ROOT: a member with an absolute name,
a ".." in it, or a parent that resolves outside ROOT (through a link) is skipped, and said on stderr. The walk is the
one of the launcher's workspace digest, so a restored workspace has the digest it was saved with.
"""
import io
import os
import shutil
import stat
import sys
import tarfile

from walk import *  # noqa: F401,F403

OWN = WORKSPACE_OWN_PREFIX
STATE = WORKSPACE_STATE_DIR


def state_files(root):
    """The interpreter's checkpoints in the workspace (relative paths): regular files, none half-written."""
    try:
        names = sorted(os.listdir(os.path.join(root, STATE)))
    except OSError:
        return []
    return [os.path.join(STATE, n) for n in names
            if not n.endswith(".tmp") and os.path.isfile(os.path.join(root, STATE, n))
            and not os.path.islink(os.path.join(root, STATE, n))]


def walk(root):
    """Relative paths under root, directories before their entries, the launcher's own entries left out: the walk
    of the launcher's workspace digest (walk.py), so a restored workspace has the digest it was saved with."""
    for rel, _entry in walk_workspace(root):
        yield rel


def save(root):
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|gz", format=tarfile.PAX_FORMAT) as tf:
        for rel in list(walk(root)) + ([STATE] + state_files(root) if state_files(root) else []):
            path = os.path.join(root, rel)
            try:
                mode = os.lstat(path).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    continue
                tf.add(path, arcname=rel, recursive=False)
            except OSError as exc:
                sys.stderr.write("not saved: %s (%s)\n" % (rel, exc.strerror))


def inside(root, path):
    return path == root or path.startswith(root + os.sep)


def restore(root):
    root = os.path.realpath(root)
    data = sys.stdin.buffer.read()
    kept = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        for member in tf:
            name = os.path.normpath(member.name)
            parts = name.split(os.sep)
            own = parts[0].startswith(OWN) and not (parts[0] == STATE and (member.isdir() and len(parts) == 1 or
                                                                            member.isreg() and len(parts) == 2))
            if (os.path.isabs(member.name) or ".." in parts or name == "." or own or
                    not (member.isreg() or member.isdir() or member.issym())):
                sys.stderr.write("skipped: %r\n" % member.name)
                continue
            target = os.path.join(root, name)
            if not inside(root, os.path.realpath(os.path.dirname(target))):
                sys.stderr.write("skipped (outside the workspace): %r\n" % member.name)
                continue
            kept.add(name)
            if os.path.lexists(target):
                if member.isdir() and os.path.isdir(target) and not os.path.islink(target):
                    continue
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            member.name = name
            tf.extract(member, root, set_attrs=True)
    # What the workspace holds and the snapshot does not goes: files and links first, then empty directories.
    extra = [rel for rel in list(walk(root)) + state_files(root) if rel not in kept]
    for rel in sorted(extra, key=lambda r: -r.count(os.sep)):
        path = os.path.join(root, rel)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "restore"):
        sys.stderr.write("usage: workspace.py save|restore ROOT\n")
        return 64
    (save if sys.argv[1] == "save" else restore)(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
