"""A bounded local JSON-lines spool: records kept on disk while Redis is down, replayed later.

Shared by the prediction log (:mod:`monitoring.prediction_log`) and the feature store's ingest
spool (:class:`finbento.feature_store.SpooledIngest`).

Layout under ``folder``, per ``name`` (made file-safe):

- ``<name>.jsonl``: the file appended to; rotated to ``<name>.jsonl.1`` once an append would take
  it past ``max_bytes`` (the older ``.1`` is then lost, and :meth:`JsonlSpool.append` says how many
  lines that was), so a name's files hold at most twice ``max_bytes``.
- ``<name>.jsonl.<ns>.claimed``: files taken by :meth:`JsonlSpool.claim` for a replay (``<ns>``,
  nanoseconds since the epoch, keeps their order); deleted once replayed.
- ``<name>.lock``: the ``flock`` that appends, rotation and claims hold, so several processes may
  share ``folder``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path


def safe_name(name: str) -> str:
    """``name`` with anything but letters, digits, ``_`` and ``-`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def count_lines(path: Path) -> int:
    """Number of newline characters in ``path`` (read 1 MiB at a time)."""
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


class JsonlSpool:
    """Append-only JSON-lines files per name, bounded in size, safe to share between processes.

    Args:
        folder: where the files live (created when first needed).
        max_bytes: size past which a name's file is rotated (bytes).
    """

    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        self.folder = Path(folder).resolve()
        self.max_bytes = int(max_bytes)

    def path(self, name: str) -> Path:
        """The file that ``name``'s appends go to."""
        return self.folder / f"{safe_name(name)}.jsonl"

    @contextlib.contextmanager
    def locked(self, name: str, exclusive: bool = True) -> Iterator[None]:
        """Hold ``name``'s ``flock`` (exclusive or shared) for the ``with`` block.

        Raises:
            OSError: the folder or lock file cannot be created.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{safe_name(name)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def replay_lock(self, name: str) -> Iterator[None]:
        """Hold ``name``'s replay ``flock`` for the ``with`` block, so one process replays at once.

        Raises:
            BlockingIOError: another process holds it (never waits).
            OSError: the folder or lock file cannot be created.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{safe_name(name)}.replay.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(self, name: str, lines: list[str]) -> int:
        """Append ``lines`` (JSON without newlines) to ``name``'s file, rotating it if full.

        One ``write`` under the lock: no other file work, no network.

        Returns:
            how many older lines were lost to the rotation (0 almost always).

        Raises:
            OSError: the file cannot be written; nothing was appended.
        """
        data = ("\n".join(lines) + "\n").encode()
        path = self.path(name)
        lost = 0
        with self.locked(name):
            size = path.stat().st_size if path.exists() else 0
            if size and size + len(data) > self.max_bytes:
                older = path.with_name(path.name + ".1")
                if older.exists():
                    lost = count_lines(older)
                os.replace(path, older)
            with open(path, "ab") as f:
                f.write(data)
        return lost

    def files(self, name: str) -> list[Path]:
        """``name``'s unclaimed files, oldest first."""
        path = self.path(name)
        return [p for p in (path.with_name(path.name + ".1"), path) if p.exists()]

    def names(self) -> set[str]:
        """The (file-safe) names that have files, claimed or not."""
        if not self.folder.is_dir():
            return set()
        return {p.name.split(".jsonl", 1)[0] for p in self.folder.glob("*.jsonl*")}

    def pending(self) -> bool:
        """Whether any file (claimed or not) is waiting to be replayed."""
        return self.folder.is_dir() and any(self.folder.glob("*.jsonl*"))

    def claimed(self, name: str) -> list[Path]:
        """``name``'s files claimed and not yet deleted, in the order they were claimed."""
        if not self.folder.is_dir():
            return []
        claimed = self.folder.glob(f"{safe_name(name)}.jsonl.*.claimed")
        return sorted(claimed, key=lambda p: int(p.name.rsplit(".", 2)[-2]))

    def claim(self, name: str) -> list[Path]:
        """Take ``name``'s files for a replay, oldest first, so appends go on to a fresh file.

        The lock is held only for the renames; the caller replays the returned files without it
        and deletes each once replayed. Files claimed earlier and not deleted (a replay that
        failed, a process that died) are returned too, first: a replay must be idempotent, and
        should hold :meth:`replay_lock` so that two processes do not replay the same files.

        Returns:
            the claimed files, in the order their lines were appended.

        Raises:
            OSError: the files cannot be renamed.
        """
        with self.locked(name):
            stamp = time.time_ns()
            for i, path in enumerate(self.files(name)):
                os.replace(path, path.with_name(f"{self.path(name).name}.{stamp + i}.claimed"))
            return self.claimed(name)
