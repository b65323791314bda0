"""Safe file output: atomic writes and overwrite protection.

Every file the toolkit writes goes through :func:`atomic_write` (temp file in the
same directory, fsync, rename), so a crash or kill never leaves a half-written
file and never destroys the previous version.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from softsampling.errors import SoftSamplingError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success rename it over ``path``.

    On any exception the temp file is removed and ``path`` is untouched.
    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give outputs the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None if "b" in mode else "") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files that :func:`atomic_write` left in ``folder`` when a kill interrupted it.

    They are hidden (``.NAME.XXXXXXXX.tmp``) and never read as output. Call
    this only where no other process is writing (e.g. a run folder on resume).
    Returns the removed paths.
    """
    removed = []
    for path in sorted(Path(folder).glob(".*.tmp")):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically, with a trailing newline and stable key order as given.

    NaN and infinity are refused (``ValueError``): they are not JSON, so callers check their numbers first.
    """
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False, allow_nan=False)
        f.write("\n")


def check_can_write(path: str | Path, *, force: bool) -> None:
    """Refuse to overwrite an existing output unless ``force``; check the folder is writable.

    Call this before any long work starts, so the user learns about it at once.
    """
    path = Path(path)
    if path.exists() and not force:
        raise SoftSamplingError(
            "output already exists", file=path, fix="choose another --out or pass --force to overwrite it"
        )
    parent = path.parent if path.parent != Path("") else Path(".")
    probe_dir = parent
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise SoftSamplingError("output path lies under a file, not a folder", file=probe_dir,
                                fix="choose an --out inside a folder")
    if not os.access(probe_dir, os.W_OK) or not _can_create_file(probe_dir):
        raise SoftSamplingError("output folder is not writable", file=probe_dir, fix="choose a writable --out")
    if shutil.disk_usage(probe_dir).free < 1 << 20:
        raise SoftSamplingError("less than 1 MiB free on the output disk", file=probe_dir, fix="free some space")


def _can_create_file(folder: Path) -> bool:
    """Try it: ``os.access`` says yes to root even where writes fail (read-only mounts, /proc)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written ``tmp_dir`` into place at ``final_dir`` (replacing it if present)."""
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, final_dir)
