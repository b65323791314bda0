"""Byte-level CSV (data/csv_bytes.py) on its own: chunked splitting, header checks, number texts, writing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from softsampling.data.csv_bytes import (
    csv_field,
    format_fixed,
    intern_codes,
    iter_blocks,
    iter_rows,
    join_columns,
    key_rows,
    parse_decimal,
    parse_flag,
    read_header,
    select_lines,
)
from softsampling.errors import SoftSamplingError

HEADER = ["ImageID", "LabelName", "XMin"]


def chunks(text: bytes, chunk_bytes: int) -> list[tuple[int, dict[str, list[bytes]]]]:
    f = io.BytesIO(text)
    header = read_header(f, Path("t.csv"), HEADER, what="test")
    return [
        (first, {k: v.tolist() for k, v in cols.items()})
        for first, cols in iter_rows(f, header, file="t.csv", chunk_bytes=chunk_bytes)
    ]


# ------------------------------------------------------------------ reading
def test_rows_come_back_whole_whatever_the_chunk_size() -> None:
    lines = [f"img{i},/m/{i % 3},0.{i}".encode() for i in range(20)]
    text = b"ImageID,LabelName,XMin\n" + b"\n".join(lines)  # no newline after the last line
    for chunk_bytes in (1, 7, 64, 1 << 20):
        got = chunks(text, chunk_bytes)
        firsts = [first for first, _ in got]
        assert firsts == sorted(firsts) and firsts[0] == 0
        rows = [b",".join(r) for _, cols in got for r in zip(*(cols[h] for h in HEADER), strict=True)]
        assert rows == lines


def test_header_order_is_the_files_and_crlf_and_quotes_are_read() -> None:
    text = b'XMin,ImageID,LabelName\r\n0.5,a,"x, y"\r\n0.25,b,"say ""hi"""\r\n'
    f = io.BytesIO(text)
    header = read_header(f, Path("t.csv"), HEADER, what="test")
    assert header == ["XMin", "ImageID", "LabelName"]
    ((first, cols),) = iter_rows(f, header, file="t.csv", chunk_bytes=1 << 16)
    assert cols["LabelName"].tolist() == [b"x, y", b'say "hi"'] and cols["XMin"].tolist() == [b"0.5", b"0.25"]


def test_asked_for_columns_equal_the_full_split_and_kept_lines_are_copied() -> None:
    text = b"ImageID,LabelName,XMin\n" + b"".join(f"img{i},/m/{'x' * (i % 4)},0.{i}\n".encode() for i in range(30))
    text += b"img30,/m/y,0.5\r\n"  # a CR: the last block is not plain
    for chunk_bytes in (40, 1 << 20):
        f = io.BytesIO(text)
        header = read_header(f, Path("t.csv"), HEADER, what="test")
        full = [c for _, c in iter_rows(f, header, file="t.csv", chunk_bytes=chunk_bytes)]
        f.seek(0)
        f.readline()
        blocks = list(iter_blocks(f, header, file="t.csv", chunk_bytes=chunk_bytes, columns=("LabelName",)))
        assert [list(b.columns) for b in blocks] == [["LabelName"]] * len(blocks)
        assert [b.columns["LabelName"].tolist() for b in blocks] == [c["LabelName"].tolist() for c in full]
        assert [b.n_rows for b in blocks] == [len(c["ImageID"]) for c in full]
        assert [b.plain for b in blocks][-1] is False and all(b.plain for b in blocks[:-1])
        assert b"".join(b.data for b in blocks) == text.split(b"\n", 1)[1]
    keep = np.array([True, False, True])
    assert select_lines(b"a,1\nb,2\nc,3\n", keep) == b"a,1\nc,3\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"ImageID,LabelNam,XMin\n", r"lacks column\(s\) LabelName \(found 'LabelNam'\?\)"),
        (b"ImageID,LabelName,XMin,XMin\n", "column 'XMin' appears twice"),
    ],
)
def test_a_bad_header_names_line_one_and_the_expected_header(text: bytes, message: str) -> None:
    with pytest.raises(SoftSamplingError, match=message) as info:
        read_header(io.BytesIO(text), Path("t.csv"), HEADER, what="test")
    assert "line 1" in str(info.value)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (b"a,b,0.5\nc,d\n", 3, "line has 2 field"),
        (b"a,b,0.5\n\n", 3, "line is empty"),
        (b"a,b\x00,0.5\n", 2, "control character 0x00"),
        (b'a,"b,0.5\n', 2, "bad CSV quoting"),
        (b"a," + b"x" * 300 + b",0.5\n", 2, "LabelName is 300 bytes long"),
    ],
)
def test_a_bad_line_is_named_by_its_line_number(body: bytes, line: int, message: str) -> None:
    with pytest.raises(SoftSamplingError, match=message) as info:
        chunks(b"ImageID,LabelName,XMin\n" + body, 1 << 16)
    assert f"line {line}" in str(info.value)


def test_keys_and_codes_number_values_in_first_appearance_order() -> None:
    values = np.array([b"b", b"b", b"a", b"c", b"a"])
    index: dict[bytes, int] = {b"c": 0}
    assert key_rows(values, index).tolist() == [1, 1, 2, 0, 2]
    assert index == {b"c": 0, b"b": 1, b"a": 2}
    vocab: dict[bytes, int] = {}
    got = intern_codes(values, vocab)
    assert [list(vocab)[code] for code in got.tolist()] == values.tolist()


def test_flags_read_zero_one_and_minus_one_only() -> None:
    assert parse_flag(np.array([b"0", b"1", b"-1"]), "IsGroupOf", "t.csv", 0).tolist() == [0, 1, -1]
    with pytest.raises(SoftSamplingError, match="line 3: IsGroupOf must be 0, 1 or -1, got '2'"):
        parse_flag(np.array([b"1", b"2"]), "IsGroupOf", "t.csv", 0)


# ------------------------------------------------------------------ number texts
def test_parse_decimal_matches_python_float_and_flags_odd_texts():
    texts = [
        "0",
        "1",
        "0.5",
        "-0.25",
        "0.012500",
        "123.456",
        "-0.0",
        "00.5",
        ".5",
        "1.",
        "1e-3",
        "+1",
        " 1",
        "",
        "abc",
        "0.1234567890123456",
        "1.2.3",
        "-",
    ]
    value, decimals, odd = parse_decimal(np.array([t.encode() for t in texts], dtype="S"))
    assert odd.tolist() == [False] * 7 + [True] * 11
    assert value[:7].tolist() == [float(t) for t in texts[:7]]
    assert np.signbit(value[6])
    assert decimals[:7].tolist() == [0, 0, 1, 2, 6, 3, 1]
    assert format_fixed(value[:7], decimals[:7]).tolist() == [t.encode() for t in texts[:7]]


def test_format_fixed_round_trips_random_decimal_texts():
    rng = np.random.default_rng(0)
    texts = [f"{v:.{d}f}".encode() for v, d in zip(rng.uniform(-50, 50, 2000), rng.integers(0, 10, 2000), strict=True)]
    value, decimals, odd = parse_decimal(np.array(texts, dtype="S"))
    assert not odd.any()
    assert format_fixed(value, decimals).tolist() == texts


@pytest.mark.parametrize(
    ("texts", "values", "decimals", "odd"),
    [
        (["0.012500", "1.000000", "0.987654"], [0.0125, 1.0, 0.987654], [6, 6, 6], [False] * 3),  # one layout
        (["12", "40", "99"], [12.0, 40.0, 99.0], [0, 0, 0], [False] * 3),
        (["05", "12"], [np.nan, 12.0], [0, 0], [True, False]),  # leading zero is not plain
        (["0.5", "1.5", "-0.5"], [0.5, 1.5, -0.5], [1, 1, 1], [False] * 3),  # a sign: general path
        (["0.5", "0,5"], [0.5, np.nan], [1, 0], [False, True]),
    ],
)
def test_parse_decimal_uniform_and_mixed_columns(texts, values, decimals, odd):
    value, dec, is_odd = parse_decimal(np.array([t.encode() for t in texts], dtype="S"))
    np.testing.assert_array_equal(value, values)
    assert dec.tolist() == decimals and is_odd.tolist() == odd


# ------------------------------------------------------------------ writing
def test_fields_are_quoted_only_when_needed_and_columns_join_into_lines() -> None:
    assert csv_field("plain") == b"plain"
    assert csv_field('a,"b"') == b'"a,""b"""'
    with pytest.raises(SoftSamplingError, match="line break"):
        csv_field("a\nb")
    cols = [
        np.array([b"img1", b"i2"]),
        np.array([csv_field("x, y"), b"z"]),
        format_fixed(np.array([0.5, -0.0]), np.array([2, 1])),
    ]
    assert join_columns(cols) == b'img1,"x, y",0.50\ni2,z,-0.0\n'
    assert join_columns([np.zeros(0, dtype="S1")]) == b""
