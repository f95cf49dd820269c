"""A session's workspace as the launcher and launcher/workspace.py see it: the one walk of its entries (the
launcher's own left out), and the digest of it the launcher sends after each run."""
import hashlib
import os
import stat


# A session's workspace is its HOME (the working directory it starts in), less the launcher's own entries there. After
# each run the launcher says what it holds as a digest of names, kinds, sizes and modification times (seconds), so
# that the worker saves it to the session's store only when a run changed it (launcher/workspace.py saves and restores
# it; its walk is the same).
WORKSPACE_OWN_PREFIX = ".durable-sandbox-"
# The launcher's entry that is kept with the workspace (not walked, not in its digest): the interpreter's checkpoints.
WORKSPACE_STATE_DIR = WORKSPACE_OWN_PREFIX + "state"
WORKSPACE_MAX_ENTRIES = 20000


def walk_workspace(root):
    """(relative path, DirEntry) of every entry under root, directories before their entries, each directory's in
    name order, the launcher's own entries at the top left out."""
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            listing = sorted(os.scandir(os.path.join(root, rel_dir)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in listing:
            if not rel_dir and entry.name.startswith(WORKSPACE_OWN_PREFIX):
                continue
            rel = os.path.join(rel_dir, entry.name)
            yield rel, entry
            if entry.is_dir(follow_symlinks=False):
                pending.append(rel)


def workspace_digest(root):
    """{"sig", "entries", "bytes"} of the workspace under root; sig is None past WORKSPACE_MAX_ENTRIES entries."""
    h = hashlib.sha256()
    entries = 0
    total = 0
    for rel, entry in walk_workspace(root):
        entries += 1
        if entries > WORKSPACE_MAX_ENTRIES:
            return {"sig": None, "entries": entries, "bytes": total}
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            # A directory's own time changes with its entries, which are counted themselves.
            line = "d %s %o" % (rel, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            line = "l %s %s" % (rel, os.readlink(entry.path))
        else:
            line = "f %s %o %d %d" % (rel, stat.S_IMODE(st.st_mode), st.st_size, int(st.st_mtime))
            total += st.st_size
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return {"sig": h.hexdigest()[:32], "entries": entries, "bytes": total}
