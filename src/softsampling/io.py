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
import signal
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
    target = _redirect_into_pending_dir(path)  # then it appears with that folder: no rename of its own to defer
    redirected = target != path
    path = target
    created = _missing_parents(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give outputs the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None if "b" in mode else "") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())

        def abandon() -> None:
            _unlink_quietly(tmp)
            _remove_empty(created)

        if redirected or not _defer(lambda: os.replace(tmp, path), abandon):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    missing = []
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _unlink_quietly(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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


def give_usual_permissions(path: str | Path) -> None:
    """``chmod`` a temp file or folder (``mkstemp``/``mkdtemp`` make them private) to what a plain write would give."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


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
        raise SoftSamplingError(
            "output path lies under a file, not a folder", file=probe_dir, fix="choose an --out inside a folder"
        )
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
    """Move a fully written ``tmp_dir`` into place at ``final_dir`` (replacing it if present).

    Inside :func:`commit_together` the move waits for the end of the block.
    """
    if _defer(lambda: _replace_dir_now(tmp_dir, final_dir), lambda: shutil.rmtree(tmp_dir, ignore_errors=True)):
        _pending_dirs[os.path.abspath(final_dir)] = Path(tmp_dir)
        return
    _replace_dir_now(tmp_dir, final_dir)


def _replace_dir_now(tmp_dir: Path, final_dir: Path) -> None:
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, final_dir)


# ------------------------------------------------------------------ input paths: check before opening
def _stat(path: Path, option: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise SoftSamplingError(
            "does not exist" if not os.path.islink(path) else "is a broken symbolic link",
            file=path,
            fix=f"check the path given to {option}",
        ) from None
    except NotADirectoryError:
        raise SoftSamplingError(
            "does not exist (a part of the path is a file, not a folder)",
            file=path,
            fix=f"check the path given to {option}",
        ) from None
    except OSError as exc:  # permission on a parent folder, symlink loop, name too long
        raise SoftSamplingError(
            f"cannot be accessed ({exc.strerror})",
            file=path,
            fix=f"check the path given to {option} and its permissions",
        ) from None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_input_file(path: str | Path, *, option: str, what: str = "file", allow_empty: bool = False) -> Path:
    """Refuse, before anything opens it, an input that is not a readable, non-empty regular file.

    A missing path, a folder, a FIFO or device (which would block or never end),
    an empty file and a file the user cannot read each raise one
    :class:`SoftSamplingError` naming the path, ``what`` it should be and the
    option (``option``, e.g. ``"--input"``) to correct. Returns ``Path(path)``.

    >>> check_input_file("/", option="--input")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    softsampling.errors.SoftSamplingError: /: is a folder, expected a file (fix: pass a file to --input...)
    """
    path = Path(path)
    st = _stat(path, option)
    if stat.S_ISDIR(st.st_mode):
        raise SoftSamplingError(
            f"is a folder, expected {_a(what)}", file=path, fix=f"pass a file to {option}, not a folder"
        )
    if not stat.S_ISREG(st.st_mode):
        raise SoftSamplingError(
            f"is {_kind(st.st_mode)}, expected {_a(what)}",
            file=path,
            fix=f"pass a regular file to {option}; pipes and devices are not read",
        )
    if st.st_size == 0 and not allow_empty:
        raise SoftSamplingError(
            f"empty file (0 bytes), expected {_a(what)}", file=path, fix=f"pass {_a('complete ' + what)} to {option}"
        )
    _check_readable(path, option)
    return path


def check_input_dir(path: str | Path, *, option: str, what: str = "folder") -> Path:
    """Refuse an input that is not an existing, listable folder (one line naming ``path`` and ``option``)."""
    path = Path(path)
    st = _stat(path, option)
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)
        raise SoftSamplingError(f"is {kind}, expected {_a(what)}", file=path, fix=f"pass a folder to {option}")
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        raise SoftSamplingError(
            f"cannot be listed ({exc.strerror})",
            file=path,
            fix=f"make the folder readable or pass another one to {option}",
        ) from None
    return path


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (symlinks followed); False for folders, FIFOs, devices, broken links."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _check_readable(path: Path, option: str) -> None:
    try:  # a real open (os.access says yes to root); O_NONBLOCK so that nothing can block here
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SoftSamplingError(
            f"cannot be read ({exc.strerror})",
            file=path,
            fix=f"make it readable (e.g. chmod u+r) or pass another file to {option}",
        ) from None
    os.close(fd)


# ------------------------------------------------------------------ outputs are never inputs
def _inside(child: str, parent: str) -> bool:
    """``child`` equals ``parent`` or lies below it (both real, absolute paths)."""
    return os.path.commonpath([child, parent]) == parent


def _links_out_of(folder: str) -> list[str]:
    """Real targets of the symbolic links directly inside ``folder`` (our VOC writer links JPEGImages/)."""
    targets = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_symlink():
                    targets.append(os.path.realpath(e.path))
    except OSError:
        pass
    return targets


def _paths(items: Iterable[str | Path | None]) -> list[Path]:
    return [Path(p) for p in items if p is not None and str(p) != ""]  # an unset config key is "" or None


def check_outputs_apart(
    outputs: Iterable[str | Path | None],
    inputs: Iterable[str | Path | None],
    *,
    keep_out_of: Iterable[str | Path | None] = (),
) -> None:
    """Refuse an output that is or contains one of the command's inputs, or lies inside a dataset folder.

    Paths are compared after resolving symbolic links and ``..`` (and by inode,
    so a hard link to an input counts as the input). An output folder must not
    contain an input, nor a folder that an input folder links to (writing or
    replacing it would destroy the input). ``keep_out_of`` are input folders
    (a VOC dataset, a folder of txt files) that no output may lie inside; image
    folders are only ``inputs``, so ``--images .`` still allows ``--out preds``.
    Run folders are passed as the files read from them, so ``RUN/thresholds.json``
    beside ``RUN/model.pt`` is fine. ``--force`` does not lift this: inputs are
    never modified.
    """
    trees = {os.path.realpath(p) for p in _paths(keep_out_of)}
    ins = _paths([*inputs, *keep_out_of])
    for out in _paths(outputs):
        real_out = os.path.realpath(out)
        for inp in ins:
            real_in = os.path.realpath(inp)
            fix = "choose an output path apart from every input; inputs are never modified, even with --force"
            if real_out == real_in or _same_file(out, inp):
                kind = "folder" if os.path.isdir(real_in) else "file"
                raise SoftSamplingError(f"output would overwrite an input {kind} ({inp})", file=out, fix=fix)
            if _inside(real_in, real_out):
                raise SoftSamplingError(f"output would contain the input {inp}", file=out, fix=fix)
            if real_in in trees and _inside(real_out, real_in):
                raise SoftSamplingError(f"output lies inside the input folder {inp}", file=out, fix=fix)
            if os.path.isdir(real_in):
                for target in _links_out_of(real_in):
                    if _inside(target, real_out):
                        raise SoftSamplingError(
                            f"output would contain {target}, which the input {inp} links to", file=out, fix=fix
                        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    path: str | Path,
    *,
    force: bool,
    folder: bool = False,
    option: str = "--out",
    inputs: Iterable[str | Path | None] = (),
    keep_out_of: Iterable[str | Path | None] = (),
) -> Path:
    """All checks on one output path, before any work: apart from ``inputs``, of the right kind, writable.

    ``inputs`` and ``keep_out_of``: see :func:`check_outputs_apart`.
    ``folder`` says whether the output is a folder (else a file). A file where a
    folder is expected (or the reverse) is refused even with ``force``; an
    existing output needs ``force``; a missing parent folder is created when the
    output is written, but a parent that is a file, unwritable or full is refused
    (:func:`check_can_write`).
    """
    path = Path(path)
    check_outputs_apart([path], inputs, keep_out_of=keep_out_of)
    if path.exists() or path.is_symlink():
        is_dir = path.is_dir()
        if folder and not is_dir:
            raise SoftSamplingError(
                "exists and is not a folder",
                file=path,
                fix=f"{option} names an output folder: pass a folder path; a file is never replaced by a folder",
            )
        if not folder and is_dir:
            raise SoftSamplingError(
                "is a folder, expected a file path",
                file=path,
                fix=f"{option} names an output file: pass a file path, not a folder",
            )
    check_can_write(path, force=force)
    return path


# ------------------------------------------------------------------ one writer per output, all-or-nothing commits
@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on output ``path`` (file or folder) while the block runs; fail if another run has it.

    The lock is ``fcntl.flock`` on a hidden ``.NAME.lock`` beside ``path``
    (removed at the end), so two runs into one ``--out`` cannot mix their files:
    the second stops at once with a one-line error. Under ``torchrun`` only rank 0
    (which writes the outputs) takes the lock. Parent folders created for
    the lock, and an output folder that a failed block created, are removed
    again if left empty (a failed run writes nothing).
    """
    import fcntl

    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun only rank 0 writes outputs, so only it locks
        yield
        return
    path = Path(os.path.abspath(path))
    created = _missing_parents(path)
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            _remove_empty(created)
            raise SoftSamplingError(
                f"cannot create the output's lock file ({exc.strerror})",
                file=lock_path,
                fix="choose an output in a writable folder",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            _remove_empty(created)
            raise SoftSamplingError(
                "another softsampling run is writing this output now",
                file=path,
                fix="wait for it to finish, or choose another output path",
            ) from None
        try:  # the holder before us may have removed the lock file: lock the file that is there now
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    existed = os.path.lexists(path)
    failed = True
    try:
        yield
        failed = False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)
        if failed and not existed and path.is_dir() and not path.is_symlink():
            _remove_empty([path])  # an output folder this failed run created and left empty
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


_pending: list[tuple[Callable[[], None], Callable[[], None]]] | None = None
_pending_dirs: dict[str, Path] = {}  # final folder -> its written temp folder, until the commit


def _redirect_into_pending_dir(path: Path) -> Path:
    """A file written into a folder whose replacement is pending goes into that folder's temp copy.

    (E.g. a VOC output folder and the manifest inside it: both appear at the commit.)
    """
    absolute = os.path.abspath(path)
    for final, tmp in _pending_dirs.items():
        if _inside(absolute, final) and absolute != final:
            return tmp / os.path.relpath(absolute, final)
    return path


@contextlib.contextmanager
def commit_together() -> Iterator[None]:
    """Make every file written in the block appear together at its end, or none of them.

    Inside the block :func:`atomic_write` and :func:`replace_dir` write their
    temp files but defer the final renames; at the end the renames run with
    SIGINT and SIGTERM held back, so an interrupt cannot separate, e.g., a
    curated file from its manifest. If the block fails, every temp file is
    removed and no output changes.
    """
    global _pending
    if _pending is not None:  # nested: the outer block commits
        yield
        return
    _pending = []
    try:
        yield
        pending = _pending
    except BaseException:
        for _, cleanup in _pending:
            cleanup()
        raise
    finally:
        _pending = None
        _pending_dirs.clear()
    with signals_held():
        for i, (commit, _) in enumerate(pending):
            try:
                commit()
            except BaseException:
                for _, cleanup in pending[i:]:
                    cleanup()
                raise


def _defer(commit: Callable[[], None], cleanup: Callable[[], None]) -> bool:
    """Register a commit with the open :func:`commit_together` block; False when there is none."""
    if _pending is None:
        return False
    _pending.append((commit, cleanup))
    return True


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs; they are delivered right after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # not the main thread / not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so temp files and locks are cleaned up as on Ctrl-C."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` (the CLI calls this once at start)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
