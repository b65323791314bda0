"""Shared, bounded parsers for the text formats users hand us: JSON, YAML, XML and numbers.

Every reader of a user file goes through these, so each guard holds for every
command at once:

- nesting deeper than :data:`MAX_NESTING` levels (JSON arrays/objects, YAML
  collections, XML elements) is refused with one line, in well under a second,
  instead of a ``RecursionError`` from the parser or from code that walks the
  result; no annotation, detection or config file needs more than a few levels;
- text must be UTF-8; the error names the line of the first bad byte;
- YAML aliases (``*name``) are refused (a "billion laughs" in YAML), XML
  DTDs and entities too (defusedxml);
- numbers are ASCII only: Python's ``float`` also reads full-width digits
  (``"１"``) and underscores (``"1_0"``), which no file format means.

Each function raises :class:`~softsampling.errors.SoftSamplingError`; the
caller adds the file name when the function does not know it.

Example:
    >>> parse_json('{"a": [1, 2]}', file="x.json")
    {'a': [1, 2]}
    >>> parse_json("[" * 200 + "]" * 200, file="x.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    softsampling.errors.SoftSamplingError: x.json: JSON nests deeper than 100 levels (fix: give a file of the ...)
    >>> ascii_float("2.5e1"), ascii_float("１")
    (25.0, None)
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from softsampling.errors import SoftSamplingError

MAX_NESTING = 100
_NESTING_FIX = "give a file of the documented layout; no such file nests this deep"
_QUOTE, _BACKSLASH, _LBRACKET, _RBRACKET, _LBRACE, _RBRACE = (ord(c) for c in '"\\[]{}')
_JSON_SPECIAL = np.array([_QUOTE, _LBRACKET, _RBRACKET, _LBRACE, _RBRACE], dtype=np.uint8)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def ascii_float(text: str) -> float | None:
    """``float(text)`` for a plain ASCII number (surrounding spaces allowed), else None.

    Accepts what C's ``strtod`` and every CSV tool accept (``1``, ``-0.5``,
    ``1e-5``, ``nan``, ``inf``); refuses what only Python's ``float`` reads:
    non-ASCII digits and ``_`` separators. The caller decides about NaN/inf.
    """
    stripped = text.strip()
    if not _FLOAT.fullmatch(stripped):
        return None
    return float(stripped)


def read_utf8(path: str | Path, *, fix: str = "save the file as UTF-8") -> str:
    """The text of ``path`` (a leading BOM dropped); not UTF-8 -> error naming the line of the first bad byte."""
    path = Path(path)
    if not path.is_file():  # a folder named *.txt, a broken or looping link, a FIFO: never opened
        raise SoftSamplingError(
            "not a regular file (a folder, a broken or looping link, or a special file)",
            file=path,
            fix="remove it or replace it with a text file",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SoftSamplingError(
            f"cannot read the file ({exc.strerror})", file=path, fix="check its permissions"
        ) from None
    return decode_utf8(data, file=path, fix=fix)


def decode_utf8(data: bytes, *, file: str | Path, fix: str = "save the file as UTF-8") -> str:
    """``data`` decoded as UTF-8 (BOM dropped); the error names ``file`` and the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SoftSamplingError(
            f"file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=file, record=f"line {line}", fix=fix
        ) from None


def _json_depth_ok(data: bytes) -> bool:
    """True when brackets outside strings nest at most :data:`MAX_NESTING` deep.

    One vectorised pass over the bytes (about a second per GB); a file with
    fewer brackets than the bound is accepted without it.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_NESTING:
        return True
    buf = np.frombuffer(data, dtype=np.uint8)
    pos = np.flatnonzero(np.isin(buf, _JSON_SPECIAL))
    chars = buf[pos]
    is_quote = chars == _QUOTE
    # a quote preceded by an odd run of backslashes is escaped (part of a string)
    for k in np.flatnonzero(is_quote & (buf[np.maximum(pos - 1, 0)] == _BACKSLASH) & (pos > 0)):
        p = int(pos[k]) - 1
        run = 0
        while p >= 0 and buf[p] == _BACKSLASH:
            run, p = run + 1, p - 1
        is_quote[k] = run % 2 == 0
    outside = np.cumsum(is_quote) % 2 == 0  # after an even number of quotes: not inside a string
    step = np.where(
        outside & ((chars == _LBRACKET) | (chars == _LBRACE)),
        1,
        np.where(outside & ((chars == _RBRACKET) | (chars == _RBRACE)), -1, 0),
    )
    return len(step) == 0 or int(np.cumsum(step).max()) <= MAX_NESTING


def parse_json(
    text: str | bytes, *, file: str | Path, fix: str = "repair the file (`python -m json.tool FILE` shows the spot)"
) -> Any:
    """``json.loads`` with one-line errors: invalid JSON (line, column), not UTF-8, nesting over the bound."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass")
    if isinstance(text, bytes):
        text = decode_utf8(text, file=file)
    if not _json_depth_ok(data):
        raise SoftSamplingError(f"JSON nests deeper than {MAX_NESTING} levels", file=file, fix=_NESTING_FIX)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SoftSamplingError(
            f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            file=file,
            record=f"line {exc.lineno}",
            fix=fix,
        ) from None
    except RecursionError:  # unreachable after the scan; kept so a parser change cannot bring tracebacks back
        raise SoftSamplingError(f"JSON nests deeper than {MAX_NESTING} levels", file=file, fix=_NESTING_FIX) from None


class _BoundedYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``) and nesting deeper than :data:`MAX_NESTING`.

    Nine anchors of nine aliases each load instantly as shared references but
    expand to 9**9 values once the value is copied or hashed (a "billion
    laughs" in YAML); configs never need them. PyYAML composes recursively,
    so depth is checked as nodes open, before Python's stack runs out.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SoftSamplingError(
                f"YAML alias (*{self.peek_event().anchor}) refused: configs may not repeat content by reference",
                record=f"line {mark.line + 1}",
                fix="write the values out instead of using &anchors and *aliases",
            )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise SoftSamplingError(
                    f"YAML nests deeper than {MAX_NESTING} levels", record=f"line {mark.line + 1}", fix=_NESTING_FIX
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str) -> Any:
    """Safe YAML (no aliases, bounded nesting). Raises ``yaml.YAMLError`` for bad syntax and
    :class:`SoftSamplingError` (without a file; the caller adds it) for refused content."""
    return yaml.load(text, Loader=_BoundedYamlLoader)  # noqa: S506 - a SafeLoader subclass


def parse_xml(path: str | Path) -> ET.Element:
    """The root element of the XML file ``path``: no DTD/entities (defusedxml), bounded nesting, one-line errors."""
    import defusedxml
    import defusedxml.ElementTree as SafeET

    path = Path(path)
    try:
        root = SafeET.parse(path, forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except defusedxml.DefusedXmlException as exc:
        raise SoftSamplingError(
            f"refused unsafe XML ({type(exc).__name__}: the file declares a DTD or entities, "
            "which annotation files never need and which can expand without bound or read other files)",
            file=path,
            fix="remove the <!DOCTYPE ...> declaration",
        ) from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]  # e.g. "mismatched tag"
        raise SoftSamplingError(
            f"invalid XML ({reason}) at line {line}, column {column + 1}",
            file=path,
            record=f"line {line}",
            fix="repair the XML file",
        ) from None
    # ElementTree parses deep files without recursion, but code that walks the tree recurses: bound it here.
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SoftSamplingError(
                f"XML nests deeper than {MAX_NESTING} levels (element <{element.tag}>)", file=path, fix=_NESTING_FIX
            )
        stack.extend((child, depth + 1) for child in element)
    return root
