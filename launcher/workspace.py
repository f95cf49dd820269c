"""durable-sandbox: a session's workspace as a tar.gz, run inside the sandbox through pods/exec.

  python3 -c <this> save ROOT      writes the workspace under ROOT to stdout (tar.gz)
  python3 -c <this> restore ROOT   makes the workspace under ROOT what the tar.gz on stdin holds: its entries written
                                   (files with their modes and times), files it does not hold removed

The launcher's own entries at the top of ROOT (".durable-sandbox-*") are neither saved nor touched. Only regular
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

OWN = ".durable-sandbox-"


def walk(root):
    """Relative paths under root, directories before their entries, the launcher's own entries left out."""
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            listing = sorted(os.scandir(os.path.join(root, rel_dir)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in listing:
            if not rel_dir and entry.name.startswith(OWN):
                continue
            rel = os.path.join(rel_dir, entry.name)
            yield rel
            if entry.is_dir(follow_symlinks=False):
                pending.append(rel)


def save(root):
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|gz", format=tarfile.PAX_FORMAT) as tf:
        for rel in walk(root):
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
            if (os.path.isabs(member.name) or ".." in parts or name == "." or parts[0].startswith(OWN) or
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
    extra = [rel for rel in walk(root) if rel not in kept]
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
