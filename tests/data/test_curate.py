"""Curation: the uniform protocol's invariants, the presets' rules, the manifest, the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softsampling.data.curate import (
    choose_drops,
    curate,
    drop_targets,
    find_manifest,
    format_summary,
    manifest_path_for,
    read_manifest,
    sha256_of_input,
    write_manifest,
)
from softsampling.errors import SoftSamplingError
from softsampling.structures.records import Category, DetectionDataset


# ------------------------------------------------------------------ helpers
def random_dataset(
    seed: int, *, num_images: int = 60, num_classes: int = 5, max_boxes: int = 8, crowd_rate: float = 0.1
) -> DetectionDataset:
    """Images with 0..max_boxes boxes each, random classes, some crowd boxes."""
    rng = np.random.default_rng(seed)
    per_image = rng.integers(0, max_boxes + 1, num_images)
    box_image = np.repeat(np.arange(num_images), per_image)
    m = len(box_image)
    xy = rng.uniform(0, 50, (m, 2))
    boxes = [
        {"image_index": int(i), "bbox": [*p, *(p + 10)], "label": int(c), "id": 1000 + k, "iscrowd": bool(cr)}
        for k, (i, p, c, cr) in enumerate(
            zip(box_image, xy, rng.integers(1, num_classes + 1, m), rng.random(m) < crowd_rate, strict=True)
        )
    ]
    images = [{"id": 10 + i, "file_name": f"img{i}.jpg", "width": 100, "height": 100} for i in range(num_images)]
    return DetectionDataset.from_lists(
        images=images, boxes=boxes, categories=[Category(c, f"class{c}") for c in range(1, num_classes + 1)]
    )


def eligible_count_per_image(ds: DetectionDataset, keep: np.ndarray | None = None) -> np.ndarray:
    ok = ~ds.iscrowd & ~ds.group_of
    if keep is not None:
        ok = ok & keep
    return np.bincount(ds.box_image[ok], minlength=ds.num_images)


def drops(ds: DetectionDataset, **kw) -> np.ndarray:
    return choose_drops(ds.labels, ds.box_image, ~ds.iscrowd & ~ds.group_of, ds.num_images, **kw)


# --------------------------------------------------------- uniform protocol
def test_targets_round_half_up():
    assert drop_targets(np.array([10, 7, 5, 3, 1, 0]), 0.3).tolist() == [3, 2, 2, 1, 0, 0]
    assert drop_targets(np.array([5, 5]), 0.7).tolist() == [4, 4]  # 3.5 -> 4 despite 0.7 * 5 < 3.5 in floats
    assert drop_targets(np.array([4]), 0.0).tolist() == [0]
    assert drop_targets(np.array([4]), 1.0).tolist() == [4]


def test_hand_computed_small_case():
    # image 0: a a b ; image 1: a (alone) ; image 2: b b ; image 3: a + crowd a
    ds = DetectionDataset.from_lists(
        images=[{"id": i, "file_name": f"{i}.jpg", "width": 9, "height": 9} for i in range(4)],
        boxes=[
            {"image_index": 0, "bbox": [0, 0, 1, 1], "label": 1},
            {"image_index": 0, "bbox": [0, 0, 1, 1], "label": 1},
            {"image_index": 0, "bbox": [0, 0, 1, 1], "label": 2},
            {"image_index": 1, "bbox": [0, 0, 1, 1], "label": 1},
            {"image_index": 2, "bbox": [0, 0, 1, 1], "label": 2},
            {"image_index": 2, "bbox": [0, 0, 1, 1], "label": 2},
            {"image_index": 3, "bbox": [0, 0, 1, 1], "label": 1},
            {"image_index": 3, "bbox": [0, 0, 1, 1], "label": 1, "iscrowd": True},
        ],
        categories=[Category(1, "a"), Category(2, "b")],
    )
    for seed in range(20):
        res = curate(ds, rate=0.5, seed=seed)
        # class a: 4 eligible boxes (the crowd box does not count) -> target round(2.0) = 2;
        # class b: 3 eligible -> target round(1.5) = 2.
        # Boxes 3 and 6 are alone in their image (image 3's crowd box does not count): never dropped.
        # Image 2 (b, b) must keep a b box; image 0 (a, a, b) keeps one box too: class b has more
        # headroom ((3 - 1 - 0.5)/3 > (2 - 0.5)/4), so image 0 keeps its b box and loses both a boxes.
        # So a meets its target (boxes 0, 1) and b drops only one of boxes 4, 5.
        a, b = res.classes
        assert (a.eligible, a.target, b.eligible, b.target) == (4, 2, 3, 2)
        assert (a.dropped, b.dropped) == (2, 1)
        assert res.dropped[[0, 1]].all() and not res.dropped[[2, 3, 6, 7]].any()
        assert res.dropped[4] != res.dropped[5]
        assert [c.name for c in res.unmet] == ["b"] and "target 2 not reachable" in b.note
        assert res.dataset.boxes_per_image().tolist() == [1, 1, 1, 2]


@settings(max_examples=40, deadline=None)
@given(
    ds_seed=st.integers(0, 10_000),
    seed=st.integers(0, 2**32 - 1),
    rates=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4),
)
def test_uniform_invariants_and_nesting(ds_seed, seed, rates):
    ds = random_dataset(ds_seed, num_images=40)
    eligible = ~ds.iscrowd
    before = eligible_count_per_image(ds)
    masks = [drops(ds, rate=r, seed=seed) for r in sorted(rates)]
    for rate, d in zip(sorted(rates), masks, strict=True):
        assert not d[~eligible].any()  # crowd boxes never dropped
        after = eligible_count_per_image(ds, ~d)
        assert np.all(after[before >= 1] >= 1)  # every image keeps a box
        assert np.all(after[before == 1] == 1)  # single-box images untouched
        for c in range(1, 6):
            n_c = int((eligible & (ds.labels == c)).sum())
            got = int(d[ds.labels == c].sum())
            assert got <= int(drop_targets(np.array([n_c]), rate)[0])
    for lower, higher in itertools.pairwise(masks):
        assert not (lower & ~higher).any()  # nested: dropped at lower rate => dropped at higher rate


@pytest.mark.parametrize("rate", [0.3, 0.4, 0.5])
def test_per_class_counts_exact_when_feasible(rate):
    # every image has >= 3 boxes, spread over classes: no class is short of droppable boxes
    ds = random_dataset(1, num_images=200, max_boxes=8, crowd_rate=0.0)
    ds = ds.select_images(ds.boxes_per_image() >= 3)
    for seed in range(3):
        res = curate(ds, rate=rate, seed=seed)
        for row in res.classes:
            assert row.dropped == int(np.floor(rate * row.eligible + 0.5)), row
        assert res.unmet == []


def test_nesting_30_40_50_on_many_seeds():
    ds = random_dataset(7, num_images=300)
    for seed in range(5):
        d30, d40, d50 = (drops(ds, rate=r, seed=seed) for r in (0.3, 0.4, 0.5))
        assert d30.sum() < d40.sum() < d50.sum()
        assert not (d30 & ~d40).any() and not (d40 & ~d50).any()


def test_determinism_and_seed_dependence():
    ds = random_dataset(3, num_images=100)
    a = drops(ds, rate=0.4, seed=11)
    assert np.array_equal(a, drops(ds, rate=0.4, seed=11))
    b = drops(ds, rate=0.4, seed=12)
    assert a.sum() == b.sum() and not np.array_equal(a, b)


def test_rate_validation():
    ds = random_dataset(0, num_images=5)
    for bad in (-0.1, 1.5, float("nan"), None):
        with pytest.raises(SoftSamplingError, match="drop rate"):
            drops(ds, rate=bad, seed=0)
    with pytest.raises(SoftSamplingError, match="takes no drop rate"):
        drops(ds, rate=0.3, seed=0, preset="easy")
    with pytest.raises(SoftSamplingError, match="unknown preset"):
        drops(ds, rate=None, seed=0, preset="medium")


def test_protection_spares_rare_classes():
    # 10 images with one "rare" and one "common" box, 30 images with three common boxes.
    # At 50% the rare class must lose 5 boxes, so at most 5 of its 10 images may keep the rare box;
    # choosing the kept box at random would fail for many seeds (P(Binomial(10, 1/2) > 5) = 38%).
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 9, "height": 9} for i in range(40)]
    boxes = []
    for i in range(10):
        boxes += [
            {"image_index": i, "bbox": [0, 0, 1, 1], "label": 1},
            {"image_index": i, "bbox": [0, 0, 1, 1], "label": 2},
        ]
    for i in range(10, 40):
        boxes += [{"image_index": i, "bbox": [0, 0, 1, 1], "label": 2}] * 3
    ds = DetectionDataset.from_lists(images=images, boxes=boxes, categories=[Category(1, "r"), Category(2, "c")])
    for seed in range(10):
        res = curate(ds, rate=0.5, seed=seed)
        assert [c.dropped for c in res.classes] == [5, 50]
        assert res.unmet == []


def test_short_classes_keep_only_protected_or_lone_boxes():
    from softsampling.data.curate import box_priorities, protected_boxes

    for ds_seed in range(10):
        ds = random_dataset(ds_seed, num_images=30, max_boxes=3)
        eligible = ~ds.iscrowd
        res = curate(ds, rate=0.6, seed=ds_seed)
        prot = protected_boxes(ds.labels, ds.box_image, eligible, ds.num_images, box_priorities(ds.num_boxes, ds_seed))
        alone = eligible_count_per_image(ds)[ds.box_image] == 1
        for row in res.unmet:
            rest = eligible & (ds.labels == row.id) & ~res.dropped
            assert np.all(prot[rest] | alone[rest]), row
            assert "not reachable" in row.note


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_presets_follow_their_rules(seed):
    ds = random_dataset(5, num_images=80)
    eligible = ~ds.iscrowd
    n = eligible_count_per_image(ds)
    expected_drop_per_image = {
        "easy": np.where(n >= 2, 1, 0),
        "hard": n // 2,
        "extreme": np.maximum(n - 1, 0),
    }
    for preset, expected in expected_drop_per_image.items():
        d = drops(ds, rate=None, seed=seed, preset=preset)
        assert not d[~eligible].any()
        assert np.array_equal(np.bincount(ds.box_image[d], minlength=ds.num_images), expected), preset
    d = drops(ds, rate=None, seed=seed, preset="keep1")
    assert not d[~eligible].any()
    for c in range(1, 6):
        had = np.bincount(ds.box_image[eligible & (ds.labels == c)], minlength=ds.num_images)
        kept = np.bincount(ds.box_image[eligible & (ds.labels == c) & ~d], minlength=ds.num_images)
        assert np.array_equal(kept, np.minimum(had, 1))


def test_presets_pick_randomly_by_seed():
    ds = random_dataset(9, num_images=80, crowd_rate=0.0)
    for preset in ("easy", "hard", "extreme", "keep1"):
        a, b = (drops(ds, rate=None, seed=s, preset=preset) for s in (0, 1))
        assert a.sum() == b.sum() and not np.array_equal(a, b), preset


# ----------------------------------------------------------------- manifest
def test_manifest_roundtrip_and_determinism(tmp_path):
    ds = random_dataset(2, num_images=30)
    ds.image_ids = [f"stem{i}" for i in range(ds.num_images)]  # VOC-like string ids
    res = curate(ds, rate=0.4, seed=5)
    src = tmp_path / "in.json"
    src.write_text("{}")
    out = tmp_path / "curated.json"
    mpath = manifest_path_for(out, is_dir=False)
    assert mpath == tmp_path / "curated.manifest.json"
    kw = dict(input_path=src, input_format="coco", input_sha256=sha256_of_input(src), options={"invalid": "error"})
    write_manifest(mpath, ds, res, **kw)
    first = mpath.read_bytes()
    write_manifest(mpath, ds, res, **kw)
    assert mpath.read_bytes() == first
    out.write_text("{}")
    assert find_manifest(out) == mpath
    m = read_manifest(out)  # finds its manifest
    idx = np.flatnonzero(res.dropped)
    assert m.num_dropped == len(idx) == res.totals()["dropped"]
    assert np.array_equal(m.box_ids, ds.box_ids[idx])
    assert m.image_ids.tolist() == [ds.image_ids[i] for i in ds.box_image[idx]]
    assert m.file_names.tolist() == [ds.file_names[i] for i in ds.box_image[idx]]
    assert np.array_equal(m.labels, ds.labels[idx])
    assert m.class_names.tolist() == [f"class{c}" for c in ds.labels[idx]]
    assert m.boxes.dtype == np.float32 and np.array_equal(m.boxes, ds.boxes[idx])  # exact float32 round trip
    assert (m.seed, m.rate, m.preset, m.input_format) == (5, 0.4, "uniform", "coco")
    assert m.input_sha256 == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # sha256("{}")
    assert m.counts["dropped"] == len(idx) and m.counts["boxes_before"] == ds.num_boxes
    assert sum(c["dropped"] for c in m.classes) == len(idx)
    assert b"time" not in first


def test_manifest_location_for_folders_and_missing(tmp_path):
    folder = tmp_path / "voc_out"
    assert manifest_path_for(folder, is_dir=True) == folder / "manifest.json"
    folder.mkdir()
    assert find_manifest(folder) is None
    (folder / "manifest.json").write_text("{}")
    assert find_manifest(folder) == folder / "manifest.json"
    with pytest.raises(SoftSamplingError, match="not a softsampling curation manifest"):
        read_manifest(folder)
    with pytest.raises(SoftSamplingError, match="no curation manifest"):
        read_manifest(tmp_path / "nothing.json")


def test_directory_hash_covers_annotation_files_only(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text("<a/>")
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(b"\xff\xd8")
    h1 = sha256_of_input(tmp_path)
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(b"changed")
    assert sha256_of_input(tmp_path) == h1
    (tmp_path / "Annotations" / "a.xml").write_text("<b/>")
    assert sha256_of_input(tmp_path) != h1


def test_summary_table_mentions_unmet_classes():
    ds = DetectionDataset.from_lists(
        images=[{"id": 0, "file_name": "0.jpg", "width": 9, "height": 9}],
        boxes=[{"image_index": 0, "bbox": [0, 0, 1, 1], "label": 1}],
        categories=[Category(1, "lonely"), Category(2, "absent")],
    )
    res = curate(ds, rate=0.5, seed=0)
    text = format_summary(res)
    assert "lonely" in text and "absent" not in text
    assert "1 of 1 boxes are alone in their image" in text
    assert text.count("\n") >= 5


# ---------------------------------------------------------------------- CLI
def _cli(*argv: str) -> int:
    from softsampling.cli import main

    return main(list(argv))


def test_cli_coco128_end_to_end(coco128_json, tmp_path, capsys):
    out = tmp_path / "cur" / "train_drop30.json"
    args = [
        "curate",
        "--input",
        str(coco128_json),
        "--format",
        "coco",
        "--drop-rate",
        "0.3",
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    input_bytes = coco128_json.read_bytes()
    assert _cli(*args) == 0
    printed = capsys.readouterr().out
    assert "person" in printed and "total" in printed
    original = json.loads(input_bytes)
    curated = json.loads(out.read_text())
    m = read_manifest(out.with_name("train_drop30.manifest.json"))
    # person: 259 boxes, of which crowd boxes are never dropped
    n_person = sum(1 for a in original["annotations"] if a["category_id"] == 1 and not a["iscrowd"])
    person = next(c for c in m.classes if c["id"] == 1)
    assert person["eligible"] == n_person and person["dropped"] == round(0.3 * n_person + 1e-9)
    kept_ids = {a["id"] for a in curated["annotations"]}
    orig_ids = {a["id"] for a in original["annotations"]}
    assert set(m.box_ids.tolist()) == orig_ids - kept_ids  # manifest lists exactly the missing ones
    assert len(curated["annotations"]) == len(original["annotations"]) - m.num_dropped
    assert m.num_dropped == 285  # sum over classes of round(0.3 * n_c); coco128 meets every target at 30%
    assert all(c["note"] == "" for c in m.classes)
    assert not any(a["iscrowd"] for a in original["annotations"] if a["id"] in set(m.box_ids.tolist()))
    assert curated["images"] == original["images"] and curated["categories"] == original["categories"]
    assert coco128_json.read_bytes() == input_bytes  # input untouched
    assert m.input_sha256 == sha256_of_input(coco128_json)

    # same input + seed -> byte-identical files, also into another folder
    out2 = tmp_path / "again" / "train_drop30.json"
    assert _cli(*args[:-1], str(out2)) == 0
    assert out2.read_bytes() == out.read_bytes()
    assert (
        out2.with_name("train_drop30.manifest.json").read_bytes()
        == out.with_name("train_drop30.manifest.json").read_bytes()
    )

    # existing output without --force: exit 2 and a clear message; with --force: fine
    capsys.readouterr()
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert "output already exists" in err and "--force" in err
    assert _cli(*args, "--force") == 0


def test_cli_rejects_rate_with_preset_and_self_overwrite(coco128_json, tmp_path, capsys):
    base = ["curate", "--input", str(coco128_json), "--format", "coco", "--seed", "0"]
    assert _cli(*base, "--preset", "easy", "--drop-rate", "0.3", "--out", str(tmp_path / "a.json")) == 2
    assert "takes no drop rate" in capsys.readouterr().err
    assert _cli(*base, "--out", str(tmp_path / "b.json")) == 2
    assert "drop rate" in capsys.readouterr().err
    assert _cli(*base, "--drop-rate", "0.3", "--force", "--out", str(coco128_json)) == 2
    assert "overwrite an input file" in capsys.readouterr().err
    assert _cli(*base, "--drop-rate", "0.3", "--split", "train", "--out", str(tmp_path / "c.json")) == 2
    assert "--split does not apply to --format coco" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_cli_extreme_preset_on_coco128(coco128_json, tmp_path):
    out = tmp_path / "extreme.json"
    assert (
        _cli(
            "curate",
            "--input",
            str(coco128_json),
            "--format",
            "coco",
            "--preset",
            "extreme",
            "--seed",
            "3",
            "--out",
            str(out),
        )
        == 0
    )
    curated = json.loads(out.read_text())
    original = json.loads(coco128_json.read_text())
    images_with_boxes = {a["image_id"] for a in original["annotations"] if not a["iscrowd"]}
    kept_non_crowd = [a["image_id"] for a in curated["annotations"] if not a["iscrowd"]]
    assert sorted(kept_non_crowd) == sorted(images_with_boxes)  # exactly one non-crowd box per image
    m = read_manifest(out)
    assert m.preset == "extreme" and m.rate is None


def test_cli_voc_folder_end_to_end(tmp_path, capsys):
    from softsampling.data.voc import read_voc, write_voc

    ds = random_dataset(4, num_images=25, crowd_rate=0.0)
    ds.image_ids = [f"{i:06d}" for i in range(ds.num_images)]
    ds.file_names = [f"{i:06d}.jpg" for i in range(ds.num_images)]
    src = tmp_path / "VOC2007"
    write_voc(ds, src, split="train")
    original = read_voc(src, split="train")
    out = tmp_path / "curated" / "voc_drop40"
    args = [
        "curate",
        "--input",
        str(src),
        "--format",
        "voc",
        "--split",
        "train",
        "--drop-rate",
        "0.4",
        "--seed",
        "1",
        "--out",
        str(out),
    ]
    assert _cli(*args) == 0
    assert (out / "ImageSets" / "Main" / "train.txt").is_file()
    m = read_manifest(out)
    assert m.path == out / "manifest.json" and find_manifest(out) == m.path
    curated = read_voc(out, split="train")
    assert curated.num_boxes == original.num_boxes - m.num_dropped
    targets = [int(np.floor(0.4 * n + 0.5)) for n in np.bincount(original.labels, minlength=6)[1:]]
    assert [c["target"] for c in m.classes] == targets
    assert m.num_dropped == sum(c["dropped"] for c in m.classes) > 0

    def rows(image_ids, labels, boxes):
        return sorted((str(i), int(c), *map(float, b)) for i, c, b in zip(image_ids, labels, boxes, strict=True))

    all_rows = rows([original.image_ids[i] for i in original.box_image], original.labels, original.boxes)
    kept_rows = rows([curated.image_ids[i] for i in curated.box_image], curated.labels, curated.boxes)
    dropped_rows = rows(m.image_ids, m.labels, m.boxes)
    assert sorted(kept_rows + dropped_rows) == all_rows  # the manifest lists exactly the missing boxes
    assert np.array_equal(np.sort(m.box_ids), np.sort(np.flatnonzero(curate(original, rate=0.4, seed=1).dropped)))
    assert m.options["split"] == "train" and m.input_sha256 == sha256_of_input(src)

    before = {p.name: p.read_bytes() for p in (out / "Annotations").iterdir()}
    manifest_bytes = m.path.read_bytes()
    assert _cli(*args, "--force") == 0  # rerun: byte-identical folder and manifest
    assert {p.name: p.read_bytes() for p in (out / "Annotations").iterdir()} == before
    assert m.path.read_bytes() == manifest_bytes
    capsys.readouterr()
    assert _cli(*args) == 2 and "output already exists" in capsys.readouterr().err
    assert _cli(*args[:-1], str(src / "sub"), "--force") == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_cli_openimages_csv_end_to_end(tmp_path, capsys):
    from softsampling.data.openimages import read_openimages

    header = (
        "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
        "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
    )
    rows = []
    rng = np.random.default_rng(0)
    for i in range(30):
        for k in range(int(rng.integers(1, 6))):
            label = ["/m/a", "/m/b", "/m/c"][int(rng.integers(0, 3))]
            group = int(k == 4)  # a few group-of boxes
            rows.append(f"img{i:02d},xclick,{label},1,0.1,0.{k + 2},0.2,0.9,0,0,{group},0,0\n")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(header + "".join(rows))
    classes = tmp_path / "classes.csv"
    classes.write_text("/m/a,Apple\n/m/b,Bear\n/m/c,Cat\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("ImageID,Source,LabelName,Confidence\nimg00,verification,/m/a,1\nimg01,verification,/m/b,0\n")
    out = tmp_path / "cur" / "oi_50.csv"
    args = [
        "curate",
        "--input",
        str(boxes),
        "--format",
        "openimages",
        "--classes",
        str(classes),
        "--labels",
        str(labels),
        "--drop-rate",
        "0.5",
        "--seed",
        "2",
        "--out",
        str(out),
    ]
    assert _cli(*args) == 0
    assert "Apple" in capsys.readouterr().out
    m = read_manifest(out)
    assert m.path == tmp_path / "cur" / "oi_50.manifest.json"
    kept_lines = out.read_text().splitlines()[1:]
    assert len(kept_lines) == len(rows) - m.num_dropped
    # box ids are data rows of the input file: the kept rows are exactly the input rows not in the manifest
    assert sorted(kept_lines) == sorted(r.rstrip("\n") for i, r in enumerate(rows) if i not in set(m.box_ids.tolist()))
    group_of_rows = {i for i, r in enumerate(rows) if r.split(",")[10] == "1"}
    assert group_of_rows and not group_of_rows & set(m.box_ids.tolist())  # group-of boxes are never dropped
    assert set(m.class_names.tolist()) <= {"Apple", "Bear", "Cat"}
    assert (tmp_path / "cur" / "oi_50-image-labels.csv").is_file()
    ds = read_openimages(boxes, classes_csv=classes)
    assert m.num_dropped == int(curate(ds, rate=0.5, seed=2).dropped.sum()) > 0
    capsys.readouterr()
    assert _cli(*args[:-1], str(labels), "--force") == 2  # would overwrite the labels input
    assert "overwrite an input file" in capsys.readouterr().err
