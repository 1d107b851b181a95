"""Atomic Parquet parts: write to a temp file in the same folder, fsync, then rename (or link).

- Temp files are named ``.<name>.tmp-<host>-<pid>`` so that a clean-up removes only the temps of dead
  writers, never those of a live process (another worker of the same run, on this or another machine).
- A write that fails (disk full, I/O error) removes its temp file and raises ``WriteFailed`` naming the
  file and the cause; nothing is left that a later run could mistake for a finished part.
- Parts carry Parquet page checksums; ``check`` (footer + metadata) finds a truncated part, ``verify``
  (full read with checksum verification) finds a damaged one; ``quarantine`` moves a bad part aside.
"""
from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HOST = socket.gethostname().replace("-", "_").replace("/", "_") or "host"
STALE_TEMP_S = 6 * 3600  # a temp of another machine older than this belongs to a dead writer


class WriteFailed(OSError):
    """A part could not be written (e.g. the disk is full); the temp file was removed."""


class CorruptPart(RuntimeError):
    def __init__(self, path: Path, detail: str):
        super().__init__(f"{path} is not a complete Parquet file ({detail})")
        self.path, self.detail = path, detail


def part_name(k: int, prefix: str = "part") -> str:
    return f"{prefix}-{k:05d}.parquet"


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{HOST}-{os.getpid()}")


def write_atomic(table: pa.Table, path: Path, overwrite: bool = True) -> bool:
    """Write ``table`` to ``path`` atomically. With ``overwrite=False`` the final step is a hard link,
    which fails when ``path`` already exists: then nothing is changed and False is returned (another
    process finished the same part first). True when this call wrote ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=256, write_page_checksum=True)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except (OSError, pa.ArrowException) as e:
        tmp.unlink(missing_ok=True)
        no_space = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "No space left" in str(e)
        why = "the disk is full" if no_space else f"{type(e).__name__}: {e}"
        raise WriteFailed(getattr(e, "errno", None) or errno.EIO, f"cannot write {path}: {why}") from e
    try:
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as e:  # a filesystem without hard links: rename, refusing when already there
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a whole part, verifying page checksums; a damaged or truncated file raises CorruptPart."""
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise CorruptPart(path, f"{type(e).__name__}: {e}") from e


def check(path: Path) -> str | None:
    """Cheap completeness check (magic bytes and footer): None when ``path`` is a whole Parquet file,
    else the reason. A crash or a copy that stopped half-way leaves a file without a valid footer."""
    try:
        size = path.stat().st_size
        if size < 12:
            return f"{size} bytes"
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            tail = f.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            return "no Parquet magic at both ends (truncated?)"
        pq.read_metadata(path)
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowException) as e:
        return f"{type(e).__name__}: {e}"
    return None


def quarantine(path: Path, reason: str = "") -> Path:
    """Move a bad part aside (``<name>.corrupt-<time>``, ignored by every reader) and return the new path."""
    dst = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, dst)
    except FileNotFoundError:
        return dst
    if reason:
        dst.with_name(dst.name + ".why").write_text(reason + "\n")
    return dst


def _temp_owner_dead(p: Path) -> bool:
    tag = p.name.rsplit(".tmp-", 1)[-1]
    host, _, pid = tag.rpartition("-")
    if not host or not pid.isdigit():  # old-style ".tmp-<pid>" or unknown: a temp of this machine
        host, pid = HOST, tag
    if host != HOST:
        try:
            return time.time() - p.stat().st_mtime > STALE_TEMP_S
        except FileNotFoundError:
            return False
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_temps(folder: Path) -> int:
    """Remove temp files left by killed writers (never those of a live process)."""
    n = 0
    if folder.exists():
        for p in folder.rglob(".*.tmp-*"):
            if _temp_owner_dead(p):
                p.unlink(missing_ok=True)
                n += 1
    return n
