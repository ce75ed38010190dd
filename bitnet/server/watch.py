"""Notices a model file that changes on disk while the server serves it.

The server never reloads: it keeps serving the weights it loaded. What changes is what it says.
The file's identity (device, inode, size, modification time) is taken before the model is loaded
and compared with the file's current one at each check (one stat call, microseconds: cheap enough
for every request); each new state of the file is logged once, as a warning.

Whether the change is harmless depends on how the weights were loaded. Read into memory (the
server's default, --no-mmap), nothing the file does can reach them. Mapped (--mmap), they ARE the
file's pages while its inode lives: a file replaced by another one (a rename, a new download) or
removed leaves the old inode mapped and the answers unchanged, but a file rewritten in place (``cp
new.gguf served.gguf`` truncates it, then writes) shows its new bytes to the next request, and a
truncated one kills the server with SIGBUS at the next page read past its new end.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("bitnet.server")


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class ModelFileWatch:
    """The state of the model file at construction (call it before loading the model) and a
    ``check`` that logs a warning when the file has changed since, once per new state."""

    def __init__(self, path: Path, use_mmap: bool):
        self.path = Path(path)
        self.use_mmap = use_mmap
        self._loaded = _identity(self.path)
        self._seen = self._loaded

    def check(self) -> None:
        now = _identity(self.path)
        if now == self._seen:
            return
        self._seen = now
        if now == self._loaded:  # back as it was (the same inode, size and time)
            log.warning("model file %s is again the file the server loaded", self.path)
            return
        old = self._loaded
        if now is None:
            what, in_place = "it was removed or renamed", False
        elif old is None or now[:2] != old[:2]:
            what, in_place = "it was replaced by another file", False
        else:
            what = f"it was rewritten in place: {old[2]} -> {now[2]} bytes" if now[2] != old[2] else \
                "it was rewritten in place"
            in_place = True
        if not self.use_mmap:
            consequence = "the server keeps serving the weights it read at start; restart it to serve the new file"
        elif in_place:
            consequence = ("with --mmap the weights are the file's own pages: the answers may change from now on, "
                           "and a truncated file kills the server (SIGBUS); restart it now, and serve with "
                           "--no-mmap (the default) to be safe from this")
        else:
            consequence = ("with --mmap the server keeps the old file mapped and goes on serving it; restart it "
                           "to serve the new file")
        log.warning("model file %s changed on disk since it was loaded (%s): %s", self.path, what, consequence)
