"""Open50-style subsets of Open Images: choose classes by instances per image, filter the CSVs.

The paper's Open Images benchmark "Open50" keeps the 50 classes with the most
instances per image in the (fully annotated) test split, among the classes
with more than 200 train and more than 100 test instances. :func:`build_subset`
computes that selection from the official CSVs and writes the filtered
files; ``softsampling data openimages-subset`` is its command line.

The rule, exactly (docs/open50.md states it for users):

- *instances* of a class in a split = its box rows in that split's boxes CSV;
  a group-of box counts as **one** instance (as the Open Images metric counts
  it as one positive); ``stats.json`` also lists the group-of boxes apart;
- *images with the class* = distinct ImageIDs with at least one box of it;
- *instances per image* = test instances / test images with the class;
- *eligible*: train instances > ``min_train`` and test instances > ``min_test``
  (strictly more, as the paper's "more than 200");
- the eligible classes are ranked by instances per image, highest first
  (compared as exact fractions), ties by more test instances, then by
  LabelName in byte order; the first ``num_classes`` are chosen.

Outputs (in ``out``): ``train.csv`` / ``test.csv`` (the box rows of the chosen
classes, texts unchanged, the input's header), ``train-image-labels.csv`` /
``test-image-labels.csv`` (the image-level label rows of the chosen classes
and the kept images, columns ``ImageID,Source,LabelName,Confidence``; the
names follow :func:`~softsampling.data.openimages.labels_path_for`),
``classes.csv`` (``LabelName,DisplayName`` with a header, sorted by
LabelName: category ids are then the same with or without this file),
``train-images.txt`` / ``test-images.txt`` (the ImageIDs with at least one
box of a chosen class, in the order of their first such box) and ``stats.json``.

Random mode (``random_images=N``, ``test_fraction=F``): the prototyping
subset of the Open Images challenge team. N images are drawn (seeded) from the
images of the train boxes file; the first ``round(N * F)`` of the draw form
the test split, the rest the train split; then the same counting and
selection apply (``num_classes=None`` with ``min_train=min_test=0`` keeps
every class with boxes in both splits).

Scale: both passes stream the CSVs in byte chunks with the Open Images
reader's parser; the first splits out only ImageID, LabelName and IsGroupOf,
the second copies kept lines as read (re-joining only blocks with quotes or
CRs). Per box only an image code, a class code and the group-of flag stay in
memory (9 bytes). 15M boxes: see docs/benchmarks.md.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> head = (
    ...     "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
    ...     "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\\n"
    ... )
    >>> row = "{},xclick,{},1,0.1,0.2,0.1,0.2,0,0,{},0,0\\n"
    >>> _ = (d / "train.csv").write_text(
    ...     head + "".join(row.format(f"t{i}", c, 0) for i in range(3) for c in ("/m/a", "/m/b"))
    ... )
    >>> _ = (d / "test.csv").write_text(
    ...     head
    ...     + row.format("s1", "/m/a", 0)
    ...     + row.format("s1", "/m/a", 1)
    ...     + row.format("s1", "/m/b", 0)
    ...     + row.format("s2", "/m/b", 0)
    ... )
    >>> _ = (d / "labels.csv").write_text(
    ...     "ImageID,Source,LabelName,Confidence\\ns1,verification,/m/a,1\\ns2,verification,/m/a,0\\n"
    ... )
    >>> _ = (d / "classes.csv").write_text("/m/a,Apple\\n/m/b,Ball\\n")
    >>> stats = build_subset(
    ...     d / "train.csv",
    ...     d / "test.csv",
    ...     [d / "labels.csv"],
    ...     d / "classes.csv",
    ...     d / "out",
    ...     num_classes=1,
    ...     min_train=2,
    ...     min_test=1,
    ... )
    >>> [(c["LabelName"], c["test_instances"], c["test_images"]) for c in stats["classes"]]
    [('/m/a', 2, 1)]
    >>> (d / "out" / "test.csv").read_text().count("/m/a"), (d / "out" / "test-images.txt").read_text()
    (2, 's1\\n')
    >>> (d / "out" / "test-image-labels.csv").read_text().splitlines()[1:]
    ['s1,verification,/m/a,1']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.data.csv_bytes import (
    csv_field,
    intern_codes,
    iter_blocks,
    iter_rows,
    join_columns,
    key_rows,
    open_csv,
    parse_flag,
    read_header,
    select_lines,
    split_lines,
)
from softsampling.data.openimages import BOX_COLUMNS, DEFAULT_CHUNK_BYTES, LABEL_COLUMNS, _read_classes
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write, check_can_write, write_json

SPLITS = ("train", "test")
OUTPUT_FILES = (
    "train.csv",
    "test.csv",
    "train-image-labels.csv",
    "test-image-labels.csv",
    "classes.csv",
    "train-images.txt",
    "test-images.txt",
    "stats.json",
)


@dataclass(frozen=True)
class ClassStats:
    """Counts of one class (see the module docstring for what counts)."""

    label_name: str
    train_instances: int
    train_images: int
    train_group_of: int
    test_instances: int
    test_images: int
    test_group_of: int

    @property
    def instances_per_image(self) -> Fraction:
        """Test instances / test images with the class (0 without test images), exact."""
        return Fraction(self.test_instances, self.test_images) if self.test_images else Fraction(0)

    def eligible(self, min_train: int, min_test: int) -> bool:
        return self.train_instances > min_train and self.test_instances > min_test


def rank_key(s: ClassStats) -> tuple[Fraction, int, bytes]:
    """Sort key of the selection: instances per image (desc), test instances (desc), LabelName bytes (asc).

    >>> a = ClassStats("/m/b", 9, 9, 0, 6, 4, 0)  # 1.5 per image
    >>> b = ClassStats("/m/a", 9, 9, 0, 3, 2, 0)  # 1.5 per image, fewer instances
    >>> c = ClassStats("/m/c", 9, 9, 0, 6, 4, 0)  # same as a, later name
    >>> [s.label_name for s in sorted([c, b, a], key=rank_key)]
    ['/m/b', '/m/c', '/m/a']
    """
    return (-s.instances_per_image, -s.test_instances, s.label_name.encode("utf-8"))


def select_classes(
    stats: Sequence[ClassStats], *, num_classes: int | None, min_train: int, min_test: int, where: str = ""
) -> list[ClassStats]:
    """The chosen classes in rank order (``num_classes=None``: every eligible class).

    Raises when fewer than ``num_classes`` classes are eligible; ``where``
    names the input files in that message.
    """
    eligible = sorted((s for s in stats if s.eligible(min_train, min_test)), key=rank_key)
    if num_classes is None:
        return eligible
    if num_classes > len(eligible):
        raise SoftSamplingError(
            f"only {len(eligible)} class(es) have more than {min_train} train and more than {min_test} test "
            f"instances, fewer than --num-classes {num_classes}",
            file=where or None,
            fix=f"lower --num-classes to {len(eligible)} or less, or lower --min-train / --min-test",
        )
    return eligible[:num_classes]


# ---------------------------------------------------------------------------- pass 1: codes per box
_SCAN_COLUMNS = ("ImageID", "LabelName", "IsGroupOf")  # all the first pass needs (every line is still checked)


@dataclass
class _BoxScan:
    """One boxes file reduced to codes: per box its image (first-appearance order) and class, and group-of."""

    path: Path
    header: list[str]
    image_ids: list[bytes]
    box_image: np.ndarray  # int32 [M]
    box_class: np.ndarray  # int32 [M], codes of the shared class vocabulary
    group_of: np.ndarray  # bool [M]


def _scan_boxes(path: Path, class_vocab: dict[bytes, int], *, chunk_bytes: int) -> _BoxScan:
    name = str(path)
    image_index: dict[bytes, int] = {}
    parts: dict[str, list[np.ndarray]] = {"image": [], "class": [], "group_of": []}
    with open_csv(path) as f:
        header = read_header(f, path, BOX_COLUMNS, what="Open Images boxes")
        for first_row, cols in iter_rows(f, header, file=name, chunk_bytes=chunk_bytes, columns=_SCAN_COLUMNS):
            parts["image"].append(key_rows(cols["ImageID"], image_index).astype(np.int32))
            parts["class"].append(intern_codes(cols["LabelName"], class_vocab).astype(np.int32))
            parts["group_of"].append(parse_flag(cols["IsGroupOf"], "IsGroupOf", name, first_row) == 1)
    cat = {k: np.concatenate(v) if v else np.zeros(0, np.int32 if k != "group_of" else bool) for k, v in parts.items()}
    return _BoxScan(path, header, list(image_index), cat["image"], cat["class"], cat["group_of"])


def _counts(
    box_image: np.ndarray, box_class: np.ndarray, group_of: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: ``(instances, images with the class, group-of boxes)`` int64 [K]."""
    instances = np.bincount(box_class, minlength=n_classes)
    groups = np.bincount(box_class[group_of], minlength=n_classes)
    pairs = np.unique(box_image.astype(np.int64) * n_classes + box_class)
    images = np.bincount(pairs % n_classes, minlength=n_classes)
    return instances.astype(np.int64), images.astype(np.int64), groups.astype(np.int64)


# ---------------------------------------------------------------------------- the builder
def build_subset(
    train_boxes: str | Path,
    test_boxes: str | Path | None,
    labels: Sequence[str | Path],
    classes_csv: str | Path,
    out: str | Path,
    *,
    num_classes: int | None = 50,
    min_train: int = 200,
    min_test: int = 100,
    random_images: int | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    force: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    log: Any = None,
) -> dict[str, Any]:
    """Choose the classes, write the filtered files into ``out``; returns the ``stats.json`` content.

    Args:
        train_boxes, test_boxes: Open Images boxes CSVs. In random mode
            ``test_boxes`` must be ``None`` (both splits come from ``train_boxes``).
        labels: image-level label CSVs (``ImageID,Source,LabelName,Confidence``);
            each row goes to the split whose kept images hold its ImageID.
        classes_csv: ``LabelName,DisplayName`` (the official class descriptions);
            it must name every chosen class.
        out: output folder (refused if it exists, unless ``force``).
        num_classes: how many classes to keep; ``None``: every eligible one.
        min_train, min_test: a class needs strictly more instances than these.
        random_images, test_fraction, seed: random mode (module docstring).
        chunk_bytes: CSV bytes parsed at a time.
        log: callable for progress lines (default: silent).
    """
    say = log or (lambda _msg: None)
    train_boxes = Path(train_boxes)
    out = Path(out)
    random_mode = random_images is not None
    if random_images is not None:
        if test_boxes is not None:
            raise SoftSamplingError(
                "random mode draws both splits from --train-boxes",
                file=str(test_boxes),
                fix="leave out --test-boxes with --random-images",
            )
        if test_fraction is None or not 0.0 < test_fraction < 1.0:
            raise SoftSamplingError(
                f"--test-fraction must be between 0 and 1, got {test_fraction}",
                fix="e.g. --test-fraction 0.05 (5k test images of 100k)",
            )
        if random_images < 2:
            raise SoftSamplingError(
                f"--random-images must be at least 2, got {random_images}", fix="e.g. --random-images 100000"
            )
    elif test_boxes is None:
        raise SoftSamplingError(
            "the test boxes CSV is missing",
            fix="pass --test-boxes CSV, or --random-images N --test-fraction F to draw both splits from --train-boxes",
        )
    elif test_fraction is not None:
        raise SoftSamplingError(
            "--test-fraction applies only with --random-images",
            fix="add --random-images N or leave out --test-fraction",
        )
    if num_classes is not None and num_classes < 1:
        raise SoftSamplingError(
            f"--num-classes must be at least 1, got {num_classes}", fix="e.g. --num-classes 50, or all"
        )
    if min_train < 0 or min_test < 0:
        raise SoftSamplingError("--min-train and --min-test must be >= 0", fix="e.g. --min-train 200 --min-test 100")
    classes = _read_classes(Path(classes_csv))
    check_can_write(out, force=force)
    for p in labels:
        if not Path(p).exists():
            raise SoftSamplingError(
                "image-level labels file does not exist", file=str(p), fix="check the --labels paths"
            )

    class_vocab: dict[bytes, int] = {}
    say(f"scanning {train_boxes}")
    train_scan = _scan_boxes(train_boxes, class_vocab, chunk_bytes=chunk_bytes)
    if random_images is not None:
        assert test_fraction is not None  # checked above
        n_images = len(train_scan.image_ids)
        if random_images > n_images:
            raise SoftSamplingError(
                f"--random-images {random_images} is more than the {n_images} images with boxes",
                file=str(train_boxes),
                fix=f"use --random-images {n_images} or less",
            )
        draw = np.random.default_rng(seed).permutation(n_images)[:random_images]
        n_test = int(round(random_images * test_fraction))
        if not 0 < n_test < random_images:
            raise SoftSamplingError(
                f"--test-fraction {test_fraction} of {random_images} images leaves an empty split",
                fix="raise --random-images or choose a fraction nearer 0.5",
            )
        image_split = np.full(n_images, -1, dtype=np.int8)
        image_split[draw[n_test:]] = 0
        image_split[draw[:n_test]] = 1
        box_split = image_split[train_scan.box_image]
        scans = [train_scan, train_scan]
        masks = [box_split == 0, box_split == 1]
    else:
        assert test_boxes is not None
        say(f"scanning {test_boxes}")
        test_scan = _scan_boxes(Path(test_boxes), class_vocab, chunk_bytes=chunk_bytes)
        scans = [train_scan, test_scan]
        masks = [np.ones(len(train_scan.box_class), bool), np.ones(len(test_scan.box_class), bool)]

    names = [k.decode("utf-8", errors="replace") for k in class_vocab]
    k = len(names)
    counts = [_counts(s.box_image[m], s.box_class[m], s.group_of[m], k) for s, m in zip(scans, masks, strict=True)]
    stats = [
        ClassStats(
            names[c],
            int(counts[0][0][c]),
            int(counts[0][1][c]),
            int(counts[0][2][c]),
            int(counts[1][0][c]),
            int(counts[1][1][c]),
            int(counts[1][2][c]),
        )
        for c in range(k)
    ]
    where = str(train_boxes) if random_mode else f"{train_boxes}, {test_boxes}"
    chosen = select_classes(stats, num_classes=num_classes, min_train=min_train, min_test=min_test, where=where)
    if not chosen:
        raise SoftSamplingError(
            f"no class has more than {min_train} train and more than {min_test} test instances",
            file=where,
            fix="lower --min-train / --min-test",
        )
    display = dict(classes)
    missing = [s.label_name for s in chosen if s.label_name not in display]
    if missing:
        raise SoftSamplingError(
            f"{len(missing)} chosen class(es) are not in the classes file, e.g. {missing[0]!r}",
            file=str(classes_csv),
            fix="pass the class descriptions that belong to these boxes (class-descriptions-boxable.csv)",
        )
    say(f"chose {len(chosen)} of {sum(s.eligible(min_train, min_test) for s in stats)} eligible classes")

    out.mkdir(parents=True, exist_ok=True)
    keep_class = np.zeros(k, dtype=bool)
    keep_class[[class_vocab[s.label_name.encode("utf-8")] for s in chosen]] = True
    kept_images: list[np.ndarray] = []
    box_counts: list[int] = []
    for split, scan, mask in zip(SPLITS, scans, masks, strict=True):
        keep = mask & keep_class[scan.box_class]
        box_counts.append(int(keep.sum()))
        kept_codes, first = np.unique(scan.box_image[keep], return_index=True)
        rows = kept_codes[np.argsort(first, kind="stable")]  # in order of their first kept box
        image_ids = np.array(scan.image_ids, dtype="S")[rows] if len(rows) else np.zeros(0, "S1")
        kept_images.append(image_ids)
        say(f"writing {out / (split + '.csv')}")
        _write_rows(scan, keep, out / f"{split}.csv", chunk_bytes=chunk_bytes)
        with atomic_write(out / f"{split}-images.txt", "wb") as f:
            f.write(b"".join(i + b"\n" for i in image_ids.tolist()))

    label_rows = _write_labels(
        labels,
        kept_images,
        np.array([s.label_name for s in chosen], dtype="U").astype("S") if chosen else np.zeros(0, "S1"),
        out,
        chunk_bytes=chunk_bytes,
    )
    with atomic_write(out / "classes.csv", "wb") as f:
        f.write(b"LabelName,DisplayName\n")
        for ln in sorted(s.label_name for s in chosen):
            f.write(csv_field(ln) + b"," + csv_field(display[ln]) + b"\n")

    result = _stats_json(
        stats,
        chosen,
        display,
        min_train=min_train,
        min_test=min_test,
        num_classes=num_classes,
        kept_images=kept_images,
        box_counts=box_counts,
        label_rows=label_rows,
        inputs={
            "train_boxes": str(train_boxes),
            "test_boxes": None if test_boxes is None else str(test_boxes),
            "labels": [str(p) for p in labels],
            "classes": str(classes_csv),
            "random_images": random_images,
            "test_fraction": test_fraction,
            "seed": seed if random_mode else None,
        },
    )
    write_json(out / "stats.json", result)
    return result


def _write_rows(scan: _BoxScan, keep: np.ndarray, path: Path, *, chunk_bytes: int) -> None:
    """Second pass over ``scan.path``: write the kept rows with their texts and the file's header.

    A block without quotes or CRs is copied line by line as read; one with them
    is split and its kept rows re-joined (quotes only where a field needs them,
    ``\\n`` line ends), so either way a kept row is its fields joined by commas.
    """
    name = str(scan.path)
    with open_csv(scan.path) as f, atomic_write(path, "wb") as w:
        header = read_header(f, scan.path, BOX_COLUMNS, what="Open Images boxes")
        if header != scan.header:
            raise SoftSamplingError("file changed while it was read", file=name, fix="run the command again")
        w.write((",".join(header) + "\n").encode("utf-8"))
        for block in iter_blocks(f, header, file=name, chunk_bytes=chunk_bytes, columns=()):
            sel = keep[block.first_row : block.first_row + block.n_rows]
            if len(sel) != block.n_rows:
                raise SoftSamplingError("file changed while it was read", file=name, fix="run the command again")
            if not sel.any():
                continue
            if block.plain:
                w.write(select_lines(block.data, sel))
            else:
                _, cols = split_lines(block.data, header, file=name, first_row=block.first_row)
                w.write(join_columns([_quoted(cols[c][sel]) for c in header]))


def _quoted(values: np.ndarray) -> np.ndarray:
    """``values`` ready for :func:`join_columns`: fields holding a comma or quote get CSV quotes."""
    if len(values) and ((np.char.find(values, b",") >= 0) | (np.char.find(values, b'"') >= 0)).any():
        return np.array([csv_field(v.decode("utf-8")) for v in values.tolist()], dtype="S")
    return values


def _write_labels(
    paths: Sequence[str | Path], kept_images: list[np.ndarray], chosen: np.ndarray, out: Path, *, chunk_bytes: int
) -> list[int]:
    """Route the label rows of the chosen classes to the split(s) whose kept images hold their ImageID.

    Per row: its image's splits (bit 0 train, bit 1 test: one dict lookup per
    run of equal ImageIDs) and whether its class is chosen (an integer code).
    Rows of a file whose header is exactly ``LABEL_COLUMNS`` are copied as read
    (blocks without quotes or CRs); other rows are re-joined in that column order.
    """
    split_bits: dict[bytes, int] = {}
    for s, ids in enumerate(kept_images):
        for image_id in ids.tolist():
            split_bits[image_id] = split_bits.get(image_id, 0) | (1 << s)
    chosen_set = set(chosen.tolist())
    written = [0, 0]
    with (
        atomic_write(out / "train-image-labels.csv", "wb") as w_train,
        atomic_write(out / "test-image-labels.csv", "wb") as w_test,
    ):
        writers = (w_train, w_test)
        for w in writers:
            w.write((",".join(LABEL_COLUMNS) + "\n").encode())
        for p in paths:
            path = Path(p)
            vocab: dict[bytes, int] = {}
            with open_csv(path) as f:
                header = read_header(f, path, LABEL_COLUMNS, what="Open Images image-level labels")
                as_read = header == list(LABEL_COLUMNS)
                for block in iter_blocks(
                    f, header, file=str(path), chunk_bytes=chunk_bytes, columns=("ImageID", "LabelName")
                ):
                    codes = intern_codes(block.columns["LabelName"], vocab)
                    of_class = np.array([v in chosen_set for v in vocab], dtype=bool)[codes]
                    bits = _image_bits(block.columns["ImageID"], split_bits) * of_class
                    for s in range(2):
                        sel = (bits >> s) & 1 == 1
                        if not sel.any():
                            continue
                        if as_read and block.plain:
                            writers[s].write(select_lines(block.data, sel))
                        else:
                            _, cols = split_lines(block.data, header, file=str(path), first_row=block.first_row)
                            writers[s].write(join_columns([_quoted(cols[c][sel]) for c in LABEL_COLUMNS]))
                        written[s] += int(sel.sum())
    return written


def _image_bits(values: np.ndarray, bits: dict[bytes, int]) -> np.ndarray:
    """``bits[value]`` (0 when absent) of every value; runs of equal values cost one lookup."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    found = np.array([bits.get(v, 0) for v in values[starts].tolist()], dtype=np.int64)
    return np.repeat(found, np.diff(np.append(starts, n)))


def _stats_json(
    stats: list[ClassStats],
    chosen: list[ClassStats],
    display: dict[str, str],
    *,
    min_train: int,
    min_test: int,
    num_classes: int | None,
    kept_images: list[np.ndarray],
    box_counts: list[int],
    label_rows: list[int],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    def entry(rank: int | None, s: ClassStats) -> dict[str, Any]:
        return {
            "rank": rank,
            "LabelName": s.label_name,
            "DisplayName": display.get(s.label_name),
            "train_instances": s.train_instances,
            "train_images": s.train_images,
            "train_group_of": s.train_group_of,
            "test_instances": s.test_instances,
            "test_images": s.test_images,
            "test_group_of": s.test_group_of,
            "instances_per_image": round(float(s.instances_per_image), 6),
            "eligible": s.eligible(min_train, min_test),
        }

    test_inst = sum(s.test_instances for s in chosen)
    test_pairs = sum(s.test_images for s in chosen)
    chosen_names = {s.label_name for s in chosen}
    return {
        "rule": {
            "num_classes": num_classes if num_classes is not None else "all",
            "min_train": min_train,
            "min_test": min_test,
            "eligible": "train instances > min_train and test instances > min_test",
            "order": "test instances / test images with the class (desc, exact), then test instances (desc), "
            "then LabelName (bytes, asc)",
            "group_of": "a group-of box counts as one instance",
        },
        "inputs": inputs,
        "totals": {
            "classes": len(chosen),
            "eligible_classes": sum(s.eligible(min_train, min_test) for s in stats),
            "train_images": int(len(kept_images[0])),
            "test_images": int(len(kept_images[1])),
            "train_boxes": box_counts[0],
            "test_boxes": box_counts[1],
            "train_label_rows": label_rows[0],
            "test_label_rows": label_rows[1],
            "test_instances_per_class_per_image": round(test_inst / test_pairs, 6) if test_pairs else None,
            "mean_instances_per_image": round(float(np.mean([float(s.instances_per_image) for s in chosen])), 6),
        },
        "classes": [entry(i + 1, s) for i, s in enumerate(chosen)],
        "other_classes": [entry(None, s) for s in sorted(stats, key=rank_key) if s.label_name not in chosen_names],
    }
