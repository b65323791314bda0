"""Byte-level CSV: read large comma-separated files in chunks of numpy byte columns, write them back.

Readers (Open Images boxes, labels, sizes and classes files; the Open Images
subset builder) share these pieces:

- :func:`open_csv` / :func:`read_header` open a file and check its header;
- :func:`iter_rows` yields chunks of whole lines as ``{column: S array}``,
  split with vectorised numpy byte operations (a chunk with a quote goes
  through the csv module instead); every error names the file and line;
- :func:`key_rows`, :func:`intern_codes`, :func:`parse_decimal` and
  :func:`parse_flag` turn byte columns into row indices, codes and numbers;
  :func:`decode_utf8`, :func:`to_str` and :func:`bytes_text` into text;
- :func:`format_fixed`, :func:`csv_field` and :func:`join_columns` write
  numbers and columns back as CSV lines.

No Python object is made per row. Data row ``r`` (0-based) is on line ``r + 2``.

Example:
    >>> import io
    >>> f = io.BytesIO(b"ImageID,XMin\\nimg1,0.25\\nimg2,0.5\\n")
    >>> header = read_header(f, Path("boxes.csv"), ["ImageID", "XMin"], what="boxes")
    >>> [(first, cols["ImageID"].tolist()) for first, cols in iter_rows(f, header, file="boxes.csv", chunk_bytes=64)]
    [(0, [b'img1', b'img2'])]
    >>> parse_decimal(np.array([b"0.25", b"0.5"]))[0].tolist()
    [0.25, 0.5]
    >>> join_columns([np.array([b"img1"]), format_fixed(np.array([0.25]), np.array([2]))])
    b'img1,0.25\\n'
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from softsampling.errors import SoftSamplingError

MAX_FIELD_BYTES = 256  # longest value of any column (ImageIDs are 16 hex digits, LabelNames about 12 bytes)

_COMMA, _NEWLINE, _CR, _QUOTE, _MINUS, _DOT, _ZERO = 44, 10, 13, 34, 45, 46, 48


# ============================================================================ reading
def open_csv(path: Path) -> BinaryIO:
    if not path.exists():
        raise SoftSamplingError("file does not exist", file=str(path), fix="check the path")
    return open(path, "rb")


def read_header(f: BinaryIO, path: Path, required: Sequence[str], *, what: str) -> list[str]:
    """Read and check the first line; returns the column names in file order."""
    line = f.readline()
    expected = ",".join(required)
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        text = ""
    names = [c.strip() for c in text.split(",")] if text else []
    missing = [c for c in required if c not in names]
    if missing:
        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, [n for n in names if n not in required], n=1)
            hints.append(f"{c} (found {close[0]!r}?)" if close else c)
        raise SoftSamplingError(
            f"the {what} header {text[:200]!r} lacks column(s) {', '.join(hints)}; expected header: {expected}",
            file=str(path),
            record="line 1",
            fix=f"make the first line the header {expected} (names are case-sensitive)",
        )
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise SoftSamplingError(
            f"column {dup!r} appears twice in the header",
            file=str(path),
            record="line 1",
            fix=f"use the header {expected}",
        )
    return names


@dataclass(frozen=True)
class RowBlock:
    """Whole lines of a CSV as read: ``data`` (each line ends in ``\\n``), their split ``columns``.

    ``plain``: the block holds no quote and no CR, so every line is exactly its
    fields joined by commas (:func:`select_lines` can copy kept lines as they are).
    """

    first_row: int
    n_rows: int
    data: bytes
    columns: dict[str, np.ndarray]
    plain: bool


def iter_blocks(
    f: BinaryIO, header: list[str], *, file: str, chunk_bytes: int, columns: Sequence[str] | None = None
) -> Iterator[RowBlock]:
    """Yield :class:`RowBlock` s of whole lines of ``f``, every line checked, ``columns`` (default all) split.

    Data row ``r`` (0-based) is on line ``r + 2``. The fast path splits a chunk
    with numpy (no quotes allowed); a chunk with a ``"`` goes through the csv
    module instead. A last line without a newline is accepted. Every line is
    checked (field count, lengths, control bytes) whatever ``columns`` asks for.
    """
    carry = b""
    first_row = 0
    while True:
        block = f.read(chunk_bytes)
        if block:
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            data, carry = data[:cut], data[cut:]
        elif carry:
            data, carry = carry + b"\n", b""
        else:
            return
        _check_control_bytes(data, file=file, first_row=first_row)
        for piece in _bounded_pieces(data):
            n, split = split_lines(piece, header, file=file, first_row=first_row, columns=columns)
            yield RowBlock(first_row, n, piece, split, b'"' not in piece and b"\r" not in piece)
            first_row += n


def iter_rows(
    f: BinaryIO, header: list[str], *, file: str, chunk_bytes: int, columns: Sequence[str] | None = None
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(first data row, {column: bytes array})`` for chunks of whole lines of ``f`` (:func:`iter_blocks`)."""
    for b in iter_blocks(f, header, file=file, chunk_bytes=chunk_bytes, columns=columns):
        yield b.first_row, b.columns


def split_lines(
    data: bytes, header: list[str], *, file: str, first_row: int, columns: Sequence[str] | None = None
) -> tuple[int, dict[str, np.ndarray]]:
    """``(lines, {column: bytes array})`` of whole lines ``data`` (numpy, or the csv module when quoted)."""
    if b'"' in data:
        n, split = _split_with_csv(data, header, file=file, first_row=first_row)
        return n, split if columns is None else {c: split[c] for c in columns}
    return _split_fast(data, header, file=file, first_row=first_row, columns=columns)


def select_lines(data: bytes, keep: np.ndarray) -> bytes:
    """The lines of ``data`` (each ending in ``\\n``) where ``keep`` is true, their bytes unchanged."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == _NEWLINE) + 1
    if len(ends) != len(keep):
        raise ValueError(f"{len(keep)} flags for {len(ends)} lines")
    return buf[np.repeat(keep, np.diff(ends, prepend=0))].tobytes()


def _check_control_bytes(data: bytes, *, file: str, first_row: int) -> None:
    """Refuse control bytes (NUL, tab, ...; line ends excepted): numpy byte strings drop trailing NULs, so
    ``img1\\x00`` and ``img1`` would become one ImageID."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bad = np.flatnonzero(((buf < 32) & (buf != _NEWLINE) & (buf != _CR)) | (buf == 127))
    if len(bad):
        at = int(bad[0])
        line = first_row + 2 + int(np.count_nonzero(buf[:at] == _NEWLINE))
        raise SoftSamplingError(
            f"control character 0x{int(buf[at]):02x} in the file",
            file=file,
            record=f"line {line}",
            fix="remove it: ImageIDs, labels and numbers are plain printable text",
        )


def _bounded_pieces(data: bytes) -> Iterator[bytes]:
    """Whole-line pieces of ``data`` whose padded split (lines x longest line) stays within a few times their size.

    The fast split pads every field to the column's longest value, so one long
    line in a chunk of short ones would cost lines x that length (a 3 MB field
    in a 6 MB file asked for 168 GiB). Pieces keep it bounded by the file size;
    :data:`MAX_FIELD_BYTES` bounds each field.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == _NEWLINE) + 1
    todo = [(0, len(ends))]
    while todo:
        lo, hi = todo.pop()
        start = 0 if lo == 0 else int(ends[lo - 1])
        stop = int(ends[hi - 1])
        lengths = np.diff(ends[lo:hi], prepend=start)
        if hi - lo == 1 or (hi - lo) * int(lengths.max()) <= 4 * (stop - start) + (1 << 16):
            yield data[start:stop]
        else:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]  # popped in file order


def _split_fast(
    data: bytes, header: list[str], *, file: str, first_row: int, columns: Sequence[str] | None = None
) -> tuple[int, dict[str, np.ndarray]]:
    """Split whole lines of unquoted CSV into one numpy bytes array per column.

    One pass finds every separator (``,`` or ``\\n``); a line is well formed
    when its separators are ``n_fields - 1`` commas and then its newline.
    All columns (``columns=None``) come from one scatter of the chunk
    (:func:`_scatter_columns`); a few asked-for columns are each gathered into
    an ``[n, column width]`` byte matrix (one window of the chunk from each
    field's start, the bytes past its end zeroed) viewed as an ``S`` array; the others are checked but never copied.
    No per-row Python work.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    n_fields = len(header)
    seps: np.ndarray = np.flatnonzero((buf == _COMMA) | (buf == _NEWLINE))  # [S], then [n, n_fields]
    sep_char = buf[seps]
    n = int(np.count_nonzero(sep_char == _NEWLINE))
    # n newlines, all of them last in their line: then every other separator is a comma
    pattern_ok = len(seps) == n * n_fields and bool((sep_char[n_fields - 1 :: n_fields] == _NEWLINE).all())
    if not pattern_ok:
        _raise_bad_line(buf, header, file=file, first_row=first_row)
    seps = seps.reshape(n, n_fields)
    lengths = (np.diff(seps.reshape(-1), prepend=-1) - 1).reshape(n, n_fields)  # bytes between separators
    has_cr = (lengths[:, -1] > 0) & (buf[np.maximum(seps[:, -1] - 1, 0)] == _CR)
    lengths[:, -1] -= has_cr
    _check_field_lengths(lengths, header, file=file, first_row=first_row)
    if columns is None:  # every column: one scatter of the whole chunk
        return n, _scatter_columns(buf, header, seps, lengths, has_cr)
    out: dict[str, np.ndarray] = {}
    padded = np.zeros(len(buf) + MAX_FIELD_BYTES + 1, dtype=np.uint8)  # a window may run past the last byte
    padded[: len(buf)] = buf
    for name in columns:  # a few columns: gather just their bytes
        k = header.index(name)
        width = max(int(lengths[:, k].max()), 1)
        start = seps[:, k] - lengths[:, k] - (has_cr if k == n_fields - 1 else 0)
        mat = np.lib.stride_tricks.sliding_window_view(padded, width)[start]  # [n, width], a copy
        mat[np.arange(width) >= lengths[:, k : k + 1]] = 0
        out[name] = mat.view(f"S{width}").reshape(-1)
    return n, out


def _scatter_columns(
    buf: np.ndarray, header: list[str], seps: np.ndarray, lengths: np.ndarray, has_cr: np.ndarray
) -> dict[str, np.ndarray]:
    """Every column of a checked chunk: each byte is scattered, in file order, into a zero-padded
    ``[n, sum(column width + 1)]`` matrix through one boolean mask (each field gets its width, each
    separator a slot of its own); the column arrays are slices of that matrix."""
    n, n_fields = seps.shape
    widths = np.maximum(lengths.max(axis=0), 1)
    any_cr = bool(has_cr.any())
    # slots: field 0, sep, field 1, sep, ..., field F-1, [CR], newline
    offsets = np.concatenate([[0], np.cumsum(widths + 1)])
    total = int(offsets[-1]) + any_cr
    inside = np.empty((n, total), dtype=bool)
    for k in range(n_fields):
        inside[:, offsets[k] : offsets[k] + widths[k]] = np.arange(widths[k])[None, :] < lengths[:, k : k + 1]
        inside[:, offsets[k] + widths[k]] = True
    if any_cr:
        inside[:, -2] = has_cr
        inside[:, -1] = True
    mat = np.zeros((n, total), dtype=np.uint8)
    mat[inside] = buf
    return {
        name: np.ascontiguousarray(mat[:, offsets[k] : offsets[k] + widths[k]]).view(f"S{widths[k]}").reshape(-1)
        for k, name in enumerate(header)
    }


def _raise_bad_line(buf: np.ndarray, header: list[str], *, file: str, first_row: int) -> None:
    """Find the first line whose number of fields is wrong and raise for it."""
    nl = np.flatnonzero(buf == _NEWLINE)
    commas = np.flatnonzero(buf == _COMMA)
    counts = np.diff(np.searchsorted(commas, nl), prepend=0)
    i = int(np.flatnonzero(counts != len(header) - 1)[0])
    start = 0 if i == 0 else int(nl[i - 1]) + 1
    empty = buf[start : nl[i]].tobytes() in (b"", b"\r")
    _raise_field_count(file, first_row + i + 2, "an empty line" if empty else f"{counts[i] + 1} field(s)", header)


def _split_with_csv(data: bytes, header: list[str], *, file: str, first_row: int) -> tuple[int, dict[str, np.ndarray]]:
    """Slow path for chunks with quoted fields: the csv module, line by line."""
    lines = data.split(b"\n")[:-1]
    rows: list[list[bytes]] = []
    for i, raw in enumerate(lines):
        line_no = first_row + i + 2
        text = decode_utf8(raw, file, "line", line=line_no).rstrip("\r")
        try:
            fields = next(csv.reader([text], strict=True), [])
        except csv.Error as exc:
            raise SoftSamplingError(
                f"bad CSV quoting ({exc})",
                file=file,
                record=f"line {line_no}",
                fix='quote a field as "text", doubling quotes inside it',
            ) from None
        if len(fields) != len(header):
            _raise_field_count(file, line_no, "an empty line" if not fields else f"{len(fields)} field(s)", header)
        encoded = [v.encode("utf-8") for v in fields]
        _check_field_lengths(np.array([[len(v) for v in encoded]]), header, file=file, first_row=line_no - 2)
        rows.append(encoded)
    return len(rows), {
        name: np.array([r[k] for r in rows] or [b""], dtype="S")[: len(rows)] for k, name in enumerate(header)
    }


def _check_field_lengths(lengths: np.ndarray, header: list[str], *, file: str, first_row: int) -> None:
    """Refuse a value longer than :data:`MAX_FIELD_BYTES` (``lengths``: [lines, fields] of a chunk)."""
    too_long = np.argwhere(lengths > MAX_FIELD_BYTES)
    if len(too_long):
        i, k = (int(v) for v in too_long[0])
        raise SoftSamplingError(
            f"{header[k]} is {int(lengths[i, k])} bytes long, "
            f"more than the {MAX_FIELD_BYTES} any Open Images value needs",
            file=file,
            record=f"line {first_row + i + 2}",
            fix="check the file: is it really an Open Images CSV?",
        )


def _raise_field_count(file: str, line: int, got: str, header: list[str]) -> None:
    problem = "line is empty" if got == "an empty line" else f"line has {got}"
    raise SoftSamplingError(
        f"{problem}, expected {len(header)} comma-separated values ({','.join(header)})",
        file=file,
        record=f"line {line}",
        fix="give every line one value per header column (no empty lines); quote values that contain commas",
    )


def decode_utf8(raw: bytes, file: str, what: str, *, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SoftSamplingError(
            f"{what} is not valid UTF-8 text: {raw[:60]!r}",
            file=file,
            record=None if line is None else f"line {line}",
            fix="save the file as UTF-8",
        ) from None


def to_str(values: np.ndarray, file: str, col: str, first_row: int) -> np.ndarray:
    """numpy ``U`` array of a bytes column (UTF-8)."""
    try:
        return values.astype("U")
    except UnicodeDecodeError:
        return np.array([decode_utf8(v, file, col, line=first_row + i + 2) for i, v in enumerate(values.tolist())])


def bytes_text(value: bytes) -> str:
    return bytes(value).decode("utf-8", errors="replace")


# ============================================================================ column parsers
def key_rows(values: np.ndarray, index: dict[bytes, int]) -> np.ndarray:
    """Row of every value in ``index`` (insertion order; new keys appended). Runs of equal values cost one lookup."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    rows = np.array([index.setdefault(v, len(index)) for v in values[starts].tolist()], dtype=np.int64)
    return np.repeat(rows, np.diff(np.append(starts, n)))


def intern_codes(values: np.ndarray, vocab: dict[bytes, int]) -> np.ndarray:
    """Code of every value in ``vocab`` (new values appended), via a hash of the bytes and one sort."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    width = values.dtype.itemsize
    mat = values.view(np.uint8).reshape(n, width)
    h = np.zeros(n, dtype=np.uint64)
    for j in range(width):
        h = h * np.uint64(1_000_003) + mat[:, j]
    uniq, first, inv = np.unique(h, return_index=True, return_inverse=True)
    reps = values[first]
    if not np.array_equal(reps[inv], values):  # hash collision: fall back to sorting the strings
        reps, inv = np.unique(values, return_inverse=True)
    lut = np.array([vocab.setdefault(v, len(vocab)) for v in reps.tolist()], dtype=np.int64)
    return lut[inv.reshape(-1)]


def parse_decimal(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse plain decimals ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` (at most 15 digits) without Python loops.

    Returns ``(value float64, decimals int64, odd bool)``; ``odd`` rows are
    anything else (exponents, ``.5``, ``+1``, blanks, words): their value is
    NaN and the caller parses them one by one. ``value = mantissa / 10**decimals``
    with both exact in float64, so it equals Python's ``float(text)``.
    """
    n = len(values)
    width = values.dtype.itemsize
    mat = values.view(np.uint8).reshape(n, width)
    fast = _parse_uniform_decimal(mat)
    if fast is not None:
        return fast
    lens = np.strings.str_len(values).astype(np.int64)
    pos = np.arange(width)[None, :]
    inside = pos < lens[:, None]
    neg = mat[:, 0] == _MINUS
    body = neg.astype(np.int64)
    is_digit = (mat >= _ZERO) & (mat <= _ZERO + 9) & inside
    is_dot = (mat == _DOT) & inside
    n_dot = is_dot.sum(axis=1)
    n_digits = is_digit.sum(axis=1)
    dot_pos = np.where(n_dot == 1, np.argmax(is_dot, axis=1), lens)
    int_digits = dot_pos - body
    first_digit = mat[np.arange(n), np.minimum(body, width - 1)]
    ok = (
        (n_digits == lens - body - n_dot)
        & (n_dot <= 1)
        & (int_digits >= 1)
        & (n_digits <= 15)
        & ~((n_dot == 1) & (dot_pos == lens - 1))
        & ~((int_digits > 1) & (first_digit == _ZERO))
    )
    mant = np.zeros(n, dtype=np.int64)
    digits = mat.astype(np.int64) - _ZERO
    for j in range(width):
        mant = np.where(is_digit[:, j], mant * 10 + digits[:, j], mant)
    decimals = np.where(n_dot == 1, lens - dot_pos - 1, 0)
    decimals = np.where(ok, decimals, 0)
    value = mant / np.power(10.0, decimals)
    value = np.where(neg, -value, value)
    value[~ok] = np.nan
    return value, decimals, ~ok


def _parse_uniform_decimal(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Fast path of :func:`parse_decimal` for a column whose texts all share one layout, e.g. ``0.xxxxxx``.

    Applies when every row fills the full width with digits and, optionally, a
    point at the same position (no sign). Returns None otherwise.
    """
    n, width = mat.shape
    if n == 0 or width > 16:
        return None
    first = mat[0]
    dots = np.flatnonzero(first == _DOT)
    if len(dots) > 1:
        return None
    dot = int(dots[0]) if len(dots) else width
    if dot == 0 or dot == width - 1 or (dot > 1 and (mat[:, 0] == _ZERO).any()):
        return None
    digit_cols = [j for j in range(width) if j != dot]
    if len(digit_cols) > 15:
        return None
    if dot < width and not (mat[:, dot] == _DOT).all():
        return None
    digits = mat[:, digit_cols] - np.uint8(_ZERO)  # wraps around for bytes below '0'
    if not (digits <= 9).all():
        return None
    mant = np.zeros(n, dtype=np.int64)
    for j in range(len(digit_cols)):
        mant *= 10
        mant += digits[:, j]
    decimals = width - dot - 1 if dot < width else 0
    return mant / 10.0**decimals, np.full(n, decimals, dtype=np.int64), np.zeros(n, dtype=bool)


def parse_flag(values: np.ndarray, col: str, file: str, first_row: int) -> np.ndarray:
    """int8 values of a ``0``/``1``/``-1`` column; anything else is an error naming the line."""
    n = len(values)
    width = values.dtype.itemsize
    mat = values.view(np.uint8).reshape(n, width)
    lens = np.strings.str_len(values)
    c0 = mat[:, 0]
    c1 = mat[:, 1] if width > 1 else np.zeros(n, dtype=np.uint8)
    one_char = (lens == 1) & ((c0 == _ZERO) | (c0 == _ZERO + 1))
    minus_one = (lens == 2) & (c0 == _MINUS) & (c1 == _ZERO + 1)
    if not (one_char | minus_one).all():
        i = int(np.flatnonzero(~(one_char | minus_one))[0])
        raise SoftSamplingError(
            f"{col} must be 0, 1 or -1, got {bytes_text(values[i])!r}",
            file=file,
            record=f"line {first_row + i + 2}",
            fix=f"write {col} as 1 (yes), 0 (no) or -1 (unknown)",
        )
    return np.where(minus_one, -1, c0.astype(np.int8) - _ZERO).astype(np.int8)


# ============================================================================ writing
def format_fixed(values: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """Texts of ``values`` with ``decimals[i]`` digits after the point (0: no point), as an ``S`` array.

    Vectorised ``f"{v:.{d}f}"`` for ``|v| * 10**d < 2**52``; a negative zero keeps its sign.
    Rows are grouped by layout (sign, integer digits, decimals); each group is
    a fixed-width character matrix filled digit by digit from the right.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype="S1")
    decimals = np.asarray(decimals, dtype=np.int64)
    neg = np.signbit(values)
    mant = np.rint(np.abs(values) * np.power(10.0, decimals)).astype(np.int64)
    int_part = mant // np.power(10, decimals)
    int_digits = np.ones(n, dtype=np.int64)
    for k in range(1, 19):
        big = int_part >= 10**k
        if not big.any():
            break
        int_digits += big
    layout = (decimals * 32 + int_digits) * 2 + neg
    length = int_digits + np.where(decimals > 0, decimals + 1, 0) + neg
    out = np.zeros(n, dtype=f"S{int(length.max())}")
    keys = np.unique(layout).tolist()
    for key in keys:
        rows = np.flatnonzero(layout == key) if len(keys) > 1 else np.arange(n)
        d, i_dig, sign = key // 64, (key // 2) % 32, key % 2
        width = sign + i_dig + (d + 1 if d else 0)
        mat = np.empty((len(rows), width), dtype=np.uint8)
        m = mant[rows]
        digit_cols = [c for c in range(width - 1, sign - 1, -1) if not (d and c == width - 1 - d)]
        for c in digit_cols:
            m, r = np.divmod(m, 10)
            mat[:, c] = r + _ZERO
        if d:
            mat[:, width - 1 - d] = _DOT
        if sign:
            mat[:, 0] = _MINUS
        out[rows] = mat.view(f"S{width}").reshape(-1)
    return out


def csv_field(text: str) -> bytes:
    """CSV text of one value: quoted when it holds a comma or quote; newlines are refused."""
    if "\n" in text or "\r" in text:
        raise SoftSamplingError(
            f"value {text!r} contains a line break, which an Open Images CSV cannot hold",
            fix="remove line breaks from image ids and class names",
        )
    if "," in text or '"' in text:
        text = '"' + text.replace('"', '""') + '"'
    return text.encode("utf-8")


def join_columns(cols: list[np.ndarray]) -> bytes:
    """CSV lines ``c0,c1,...\\n`` from equally long ``S`` arrays.

    Lays the columns side by side in a padded ``[n, sum(width + 1)]`` byte
    matrix with a separator after each, then keeps the non-padding bytes in
    row-major order (one boolean compress): no per-row Python work.
    """
    n = len(cols[0]) if cols else 0
    if n == 0:
        return b""
    widths = [c.dtype.itemsize for c in cols]
    total = sum(widths) + len(cols)
    mat = np.empty((n, total), dtype=np.uint8)
    keep = np.ones((n, total), dtype=bool)
    off = 0
    for k, (c, width) in enumerate(zip(cols, widths, strict=True)):
        mat[:, off : off + width] = np.ascontiguousarray(c).view(np.uint8).reshape(n, width)
        keep[:, off : off + width] = mat[:, off : off + width] != 0
        mat[:, off + width] = _NEWLINE if k == len(cols) - 1 else _COMMA
        off += width + 1
    return mat[keep].tobytes()
