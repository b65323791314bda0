"""`softsampling data openimages-subset`: the Open50 class selection against an independent computation,
the filtered files, the random prototyping mode and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from softsampling.cli import main
from softsampling.data.openimages import BOX_COLUMNS
from softsampling.data.openimages_subset import build_subset

HEADER = ",".join(BOX_COLUMNS)


def _box_line(image: str, label: str, group_of: int, rng: np.random.Generator) -> str:
    x1, y1 = rng.uniform(0, 0.5, 2).round(6)
    return f"{image},xclick,{label},1,{x1:.6f},{x1 + 0.3:.6f},{y1:.6f},{y1 + 0.3:.6f},0,0,{group_of},0,0"


def make_split(path: Path, prefix: str, n_images: int, n_classes: int, rng: np.random.Generator) -> list[str]:
    """A boxes CSV whose rows are shuffled (an image's boxes are not contiguous); returns its data lines."""
    lines = []
    for i in range(n_images):
        for c in rng.choice(n_classes, size=rng.integers(1, 4), replace=False):
            for _ in range(int(rng.integers(1, 1 + (c % 4) + 1))):
                lines.append(_box_line(f"{prefix}{i:04d}", f"/m/c{c:02d}", int(rng.random() < 0.1), rng))
    rng.shuffle(lines)
    path.write_text(HEADER + "\n" + "".join(ln + "\n" for ln in lines))
    return lines


def make_inputs(root: Path, seed: int = 0, n_classes: int = 12) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    make_split(root / "train.csv", "tr", 120, n_classes, rng)
    make_split(root / "test.csv", "te", 60, n_classes, rng)
    labels = ["ImageID,Source,LabelName,Confidence"]
    for prefix, n in (("tr", 120), ("te", 60)):
        for i in range(n):
            for c in rng.choice(n_classes, size=3, replace=False):
                labels.append(f"{prefix}{i:04d},verification,/m/c{c:02d},{int(rng.random() < 0.7)}")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    (root / "classes.csv").write_text("".join(f"/m/c{c:02d},Class {c}\n" for c in range(n_classes)))
    return {
        "train": root / "train.csv",
        "test": root / "test.csv",
        "labels": root / "labels.csv",
        "classes": root / "classes.csv",
    }


def independent_selection(train: Path, test: Path, k: int, min_train: int, min_test: int) -> list[str]:
    """The rule of docs/open50.md, written from the text with the csv module."""

    def rows(path: Path) -> list[dict[str, str]]:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    train_n: dict[str, int] = defaultdict(int)
    for r in rows(train):
        train_n[r["LabelName"]] += 1
    test_n: dict[str, int] = defaultdict(int)
    test_imgs: dict[str, set[str]] = defaultdict(set)
    for r in rows(test):
        test_n[r["LabelName"]] += 1
        test_imgs[r["LabelName"]].add(r["ImageID"])
    eligible = [c for c in test_n if train_n[c] > min_train and test_n[c] > min_test]
    eligible.sort(key=lambda c: (-Fraction(test_n[c], len(test_imgs[c])), -test_n[c], c))
    return eligible[:k]


def _cli(*args: str) -> int:
    return main(["data", "openimages-subset", *args])


def _args(f: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--train-boxes",
        str(f["train"]),
        "--test-boxes",
        str(f["test"]),
        "--labels",
        str(f["labels"]),
        "--classes",
        str(f["classes"]),
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize("seed,k,min_train,min_test", [(0, 5, 30, 15), (1, 3, 10, 5), (2, 8, 0, 0)])
def test_selection_equals_independent_computation(tmp_path, seed, k, min_train, min_test):
    f = make_inputs(tmp_path, seed)
    stats = build_subset(
        f["train"],
        f["test"],
        [f["labels"]],
        f["classes"],
        tmp_path / "out",
        num_classes=k,
        min_train=min_train,
        min_test=min_test,
    )
    expected = independent_selection(f["train"], f["test"], k, min_train, min_test)
    assert [c["LabelName"] for c in stats["classes"]] == expected
    assert len(expected) == k


def test_outputs_hold_exactly_the_chosen_rows_and_counts(tmp_path, capsys):
    f = make_inputs(tmp_path)
    out = tmp_path / "out"
    assert _cli(*_args(f, out, "--num-classes", "4", "--min-train", "20", "--min-test", "10")) == 0
    assert "4 classes of" in capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    chosen = {c["LabelName"] for c in stats["classes"]}
    for split in ("train", "test"):
        src = f[split].read_text().splitlines()
        got = (out / f"{split}.csv").read_text().splitlines()
        assert got[0] == src[0]
        assert got[1:] == [ln for ln in src[1:] if ln.split(",")[2] in chosen]  # same texts, same order
        images = []
        for ln in got[1:]:
            if ln.split(",")[0] not in images:
                images.append(ln.split(",")[0])
        assert (out / f"{split}-images.txt").read_text().split() == images
        assert stats["totals"][f"{split}_images"] == len(images) and stats["totals"][f"{split}_boxes"] == len(got) - 1
        labels = (out / f"{split}-image-labels.csv").read_text().splitlines()
        want = [
            ln
            for ln in f["labels"].read_text().splitlines()[1:]
            if ln.split(",")[0] in set(images) and ln.split(",")[2] in chosen
        ]
        assert labels == ["ImageID,Source,LabelName,Confidence"] + want and want
        for c in stats["classes"]:
            rows = [ln.split(",") for ln in src[1:] if ln.split(",")[2] == c["LabelName"]]
            assert c[f"{split}_instances"] == len(rows)
            assert c[f"{split}_images"] == len({r[0] for r in rows})
            assert c[f"{split}_group_of"] == sum(r[10] == "1" for r in rows)
    for c in stats["classes"]:
        assert c["instances_per_image"] == round(c["test_instances"] / c["test_images"], 6)
    assert (out / "classes.csv").read_text().splitlines() == (
        ["LabelName,DisplayName"] + [f"{ln},Class {int(ln[-2:])}" for ln in sorted(chosen)]
    )
    total = sum(c["test_instances"] for c in stats["classes"]) / sum(c["test_images"] for c in stats["classes"])
    assert stats["totals"]["test_instances_per_class_per_image"] == round(total, 6)


def test_group_of_counts_once_and_ties_break_by_instances_then_name(tmp_path):
    rng = np.random.default_rng(0)
    train = [_box_line(f"t{i}", c, 0, rng) for i in range(3) for c in ("/m/a", "/m/b", "/m/c", "/m/d")]
    test = [
        _box_line("s1", "/m/d", 1, rng),
        _box_line("s1", "/m/d", 0, rng),  # /m/d: 2 / 1, one group-of
        _box_line("s1", "/m/c", 0, rng),
        _box_line("s2", "/m/c", 0, rng),  # /m/c: 2 / 2 = 1
        _box_line("s3", "/m/b", 0, rng),
        _box_line("s4", "/m/b", 0, rng),  # /m/b: 2 / 2 = 1
        _box_line("s3", "/m/a", 0, rng),
    ]  # /m/a: 1 / 1 = 1, fewer
    (tmp_path / "tr.csv").write_text(HEADER + "\n" + "\n".join(train) + "\n")
    (tmp_path / "te.csv").write_text(HEADER + "\n" + "\n".join(test) + "\n")
    (tmp_path / "cl.csv").write_text("/m/a,A\n/m/b,B\n/m/c,C\n/m/d,D\n")
    stats = build_subset(
        tmp_path / "tr.csv",
        tmp_path / "te.csv",
        [],
        tmp_path / "cl.csv",
        tmp_path / "out",
        num_classes=None,
        min_train=0,
        min_test=0,
    )
    assert [c["LabelName"] for c in stats["classes"]] == ["/m/d", "/m/b", "/m/c", "/m/a"]
    assert stats["classes"][0]["test_group_of"] == 1 and stats["classes"][0]["instances_per_image"] == 2.0


def test_random_mode_is_seeded_and_splits_disjoint(tmp_path):
    f = make_inputs(tmp_path)
    kw = dict(num_classes=None, min_train=0, min_test=0, random_images=50, test_fraction=0.2)
    a = build_subset(f["train"], None, [f["labels"]], f["classes"], tmp_path / "a", seed=3, **kw)
    build_subset(f["train"], None, [f["labels"]], f["classes"], tmp_path / "b", seed=3, **kw)
    build_subset(f["train"], None, [f["labels"]], f["classes"], tmp_path / "c", seed=4, **kw)
    for name in ("train.csv", "test.csv", "train-image-labels.csv", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train = set((tmp_path / "a" / "train-images.txt").read_text().split())
    test = set((tmp_path / "a" / "test-images.txt").read_text().split())
    assert not train & test and len(test) <= 10 and len(train | test) <= 50
    assert all(i.startswith("tr") for i in train | test)
    assert a["totals"]["train_images"] + a["totals"]["test_images"] >= 45  # nearly every drawn image keeps a box
    assert (tmp_path / "c" / "test-images.txt").read_text() != (tmp_path / "a" / "test-images.txt").read_text()


def test_missing_column_is_one_line_naming_the_file(tmp_path, capsys):
    f = make_inputs(tmp_path)
    text = f["test"].read_text().replace("IsGroupOf", "GroupOf", 1)
    f["test"].write_text(text)
    assert _cli(*_args(f, tmp_path / "out", "--num-classes", "2", "--min-train", "0", "--min-test", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f["test"]) in err and "IsGroupOf" in err and "fix:" in err
    assert not (tmp_path / "out").exists()


def test_classes_file_without_the_chosen_classes(tmp_path, capsys):
    f = make_inputs(tmp_path)
    f["classes"].write_text("/m/zz,Other\n")
    assert _cli(*_args(f, tmp_path / "out", "--num-classes", "2", "--min-train", "0", "--min-test", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f["classes"]) in err and "class-descriptions-boxable" in err
    assert not (tmp_path / "out").exists()


def test_more_classes_than_eligible(tmp_path, capsys):
    f = make_inputs(tmp_path)
    eligible = len(independent_selection(f["train"], f["test"], 99, 30, 15))
    assert (
        _cli(*_args(f, tmp_path / "out", "--num-classes", str(eligible + 1), "--min-train", "30", "--min-test", "15"))
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f["train"]) in err and str(f["test"]) in err
    assert f"lower --num-classes to {eligible}" in err


def test_random_mode_refuses_test_boxes_and_bad_fraction(tmp_path, capsys):
    f = make_inputs(tmp_path)
    assert _cli(*_args(f, tmp_path / "out", "--random-images", "10", "--test-fraction", "0.1")) == 2
    assert "leave out --test-boxes" in capsys.readouterr().err
    base = ["--train-boxes", str(f["train"]), "--classes", str(f["classes"]), "--out", str(tmp_path / "out")]
    assert _cli(*base, "--random-images", "10", "--test-fraction", "1.5") == 2
    assert "--test-fraction" in capsys.readouterr().err
    assert _cli(*base) == 2
    assert "--test-boxes" in capsys.readouterr().err
    assert _cli(*base, "--random-images", "100000", "--test-fraction", "0.1") == 2
    assert "--random-images 120 or less" in capsys.readouterr().err


def _csv_line(fields: list[str]) -> str:
    """A row as the builder writes it: fields quoted only when they hold a comma or quote, ``\\n`` ending."""
    return ",".join('"' + v.replace('"', '""') + '"' if ("," in v or '"' in v) else v for v in fields) + "\n"


@pytest.mark.parametrize("chunk_bytes", [64, 1 << 20])
def test_written_bytes_equal_the_rows_rejoined_whatever_the_blocks(tmp_path, chunk_bytes):
    """Kept lines are copied as read where a block is plain, re-joined where it holds quotes or CRs, and the
    two give the same bytes: those of an independent csv-module rewrite (the builder's output before the copy)."""
    rng = np.random.default_rng(3)

    quoted = '"x,click"'

    def boxes(n: int) -> str:  # same ImageIDs in both splits; some CRLF lines, quoted fields, no final newline
        lines = [
            f"a{i:03d},{quoted if rng.random() < 0.1 else 'xclick'},/m/c{c},1,0.1,0.2,0.1,0.2,0,0,0,0,0"
            + ("\r\n" if rng.random() < 0.1 else "\n")
            for i in range(n)
            for c in rng.choice(5, size=3, replace=False)
        ]
        rng.shuffle(lines)
        return HEADER + "\n" + "".join(lines)[:-1]

    (tmp_path / "train.csv").write_text(boxes(40), newline="")
    (tmp_path / "test.csv").write_text(boxes(15), newline="")
    plain = ["ImageID,Source,LabelName,Confidence"] + [
        f"a{i:03d},verification,/m/c{c},1" for i in range(50) for c in range(5)
    ]
    (tmp_path / "l1.csv").write_text("\n".join(plain) + "\n")
    other = ["LabelName,ImageID,Confidence,Source,Extra"] + [
        f'/m/c{c},a{i:03d},0,"hu,man",z' for i in range(0, 50, 3) for c in range(5)
    ]
    (tmp_path / "l2.csv").write_text("\r\n".join(other) + "\r\n", newline="")
    (tmp_path / "classes.csv").write_text("".join(f"/m/c{c},C{c}\n" for c in range(5)))
    labels = [tmp_path / "l1.csv", tmp_path / "l2.csv"]
    out = tmp_path / "out"
    stats = build_subset(
        tmp_path / "train.csv",
        tmp_path / "test.csv",
        labels,
        tmp_path / "classes.csv",
        out,
        num_classes=3,
        min_train=1,
        min_test=1,
        chunk_bytes=chunk_bytes,
    )
    chosen = {c["LabelName"] for c in stats["classes"]}
    for split in ("train", "test"):
        with open(tmp_path / f"{split}.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        want = HEADER + "\n" + "".join(_csv_line(r) for r in rows[1:] if r[2] in chosen)
        assert (out / f"{split}.csv").read_bytes() == want.encode()
        images = set((out / f"{split}-images.txt").read_text().split())
        want_labels = "ImageID,Source,LabelName,Confidence\n"
        for path in labels:
            with open(path, newline="", encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    if r["LabelName"] in chosen and r["ImageID"] in images:
                        want_labels += _csv_line([r[c] for c in ("ImageID", "Source", "LabelName", "Confidence")])
        assert (out / f"{split}-image-labels.csv").read_bytes() == want_labels.encode()
    assert stats["totals"]["test_label_rows"] > 0 and b"\r" not in (out / "train.csv").read_bytes()
