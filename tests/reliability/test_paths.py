"""Paths, outputs, concurrency, interrupts and partial outputs (docs/reliability.md, "Paths and outputs").

- Every path argument that is the wrong kind of thing (a folder for a file, a file for a
  folder, an empty file, a FIFO, a symlink loop, an unreadable file, an output under a
  file) is one line naming the path and the option, exit 2, nothing written -- and a FIFO
  never blocks.
- An output is never an input, with or without --force: every command refuses an output
  that equals, contains or lies inside one of its inputs (train and reproduce before any
  training or data building).
- Two runs into one output: the second stops. SIGINT/SIGTERM leave no temp file and never a
  curated file without its manifest.
- Validate first, then write: a command that fails leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.reliability.helpers import BAD, assert_one_line_error, copy_bad, files_under, run_cli, save_tiny_run

CURATE = ["--drop-rate", "0.5", "--seed", "0"]
CLI = [sys.executable, "-m", "softsampling.cli"]


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A FIFO that is opened blocks forever: fail the test after 30 s instead."""

    def alarm(signum, frame):
        raise TimeoutError("the command blocked (opened a FIFO?)")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return save_tiny_run(tmp_path_factory.mktemp("run") / "run")


def _images(folder: Path, names=("a.png", "b.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (64, 48), (90, 90, 90)).save(folder / name)
    return folder


def _digest(path: Path) -> dict[str, str]:
    """Content of a file or every file under a folder, to check that inputs are untouched."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# ------------------------------------------------------------------ path arguments of the wrong kind
def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _loop(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)  # a link to itself
    return path


def _path_cases(tmp: Path, run: Path) -> list[tuple[str, list, tuple[str, ...]]]:
    """(command, argv, texts of the error line): one wrong path each; outputs go under tmp/out."""
    good, det = BAD / "coco_good.json", BAD / "det_good.json"
    out = tmp / "out"
    gt_txt = tmp / "gt"
    copy_bad("txt_gt_good.txt", gt_txt / "a.txt")
    bad_run = tmp / "badrun"
    _empty(bad_run / "model.pt")
    fifo_run = tmp / "fiforun"
    _fifo(fifo_run / "model.pt")
    return [
        # curate
        (
            "curate",
            ["curate", "--input", _folder(tmp / "in_dir"), "--format", "openimages", *CURATE, "--out", out / "x.csv"],
            ("in_dir", "is a folder", "--input"),
        ),
        (
            "curate",
            ["curate", "--input", _folder(tmp / "in_dir2"), "--format", "coco", *CURATE, "--out", out / "x.json"],
            ("in_dir2", "is a folder", "--input"),
        ),
        (
            "curate",
            ["curate", "--input", _fifo(tmp / "fifo.json"), "--format", "coco", *CURATE, "--out", out / "x.json"],
            ("fifo.json", "FIFO", "--input"),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                _fifo(tmp / "fifo.csv"),
                "--format",
                "openimages",
                "--classes",
                BAD / "oi_classes.csv",
                *CURATE,
                "--out",
                out / "x.csv",
            ],
            ("fifo.csv", "FIFO"),
        ),
        (
            "curate",
            ["curate", "--input", _empty(tmp / "empty.json"), "--format", "coco", *CURATE, "--out", out / "x.json"],
            ("empty.json", "empty file"),
        ),
        (
            "curate",
            ["curate", "--input", _loop(tmp / "loop.json"), "--format", "coco", *CURATE, "--out", out / "x.json"],
            ("loop.json", "cannot be accessed"),
        ),
        (
            "curate",
            ["curate", "--input", good, "--format", "voc", *CURATE, "--out", out / "voc"],
            ("coco_good.json", "is a file, expected a VOC dataset folder"),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                BAD / "oi_sizes.csv",
                "--format",
                "openimages",
                "--classes",
                _fifo(tmp / "classes.csv"),
                *CURATE,
                "--out",
                out / "x.csv",
            ],
            ("classes.csv", "FIFO", "--classes"),
        ),
        (
            "curate",
            ["curate", "--input", good, "--format", "coco", *CURATE, "--out", _folder(out / "adir"), "--force"],
            ("adir", "is a folder, expected a file path"),
        ),
        (
            "curate",
            ["curate", "--input", good, "--format", "coco", *CURATE, "--out", BAD / "coco_good.json" / "x.json"],
            ("lies under a file",),
        ),
        # evaluate
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                _folder(tmp / "gt_dir"),
                "--gt-format",
                "coco",
                "--detections",
                det,
                "--out",
                out / "r.json",
            ],
            ("gt_dir", "is a folder", "--gt"),
        ),
        (
            "evaluate",
            ["evaluate", "--gt", good, "--gt-format", "txt", "--detections", gt_txt, "--out", out / "r.json"],
            ("coco_good.json", "expected a folder", "--gt"),
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                good,
                "--gt-format",
                "coco",
                "--detections",
                _fifo(tmp / "d.json"),
                "--out",
                out / "r.json",
            ],
            ("d.json", "FIFO", "--detections"),
        ),
        (
            "evaluate",
            ["evaluate", "--gt", good, "--gt-format", "coco", "--detections", det, "--out", _folder(out / "rdir")],
            ("rdir", "is a folder, expected a file path", "--out"),
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                good,
                "--gt-format",
                "coco",
                "--detections",
                det,
                "--metric",
                "openimages",
                "--hierarchy",
                _fifo(tmp / "h.json"),
                "--out",
                out / "r.json",
            ],
            ("h.json", "FIFO", "--hierarchy"),
        ),
        # train
        (
            "train",
            ["train", "--config", _fifo(tmp / "cfg.yaml"), "--out", out / "run"],
            ("cfg.yaml", "FIFO", "--config"),
        ),
        ("train", ["train", "--config", _folder(tmp / "cfg_dir"), "--out", out / "run"], ("cfg_dir", "is a folder")),
        (
            "train",
            ["train", "--out", out / "run", "--set", f"data.train={_folder(tmp / 'train_dir')}"],
            ("train_dir", "is a folder"),
        ),
        # predict
        (
            "predict",
            ["predict", "--run", run, "--images", _fifo(tmp / "imgs" / "x.png"), "--out", out / "p"],
            ("x.png", "FIFO", "--images"),
        ),
        (
            "predict",
            ["predict", "--run", run, "--images", _folder(tmp / "imgs2" / "d.png").parent, "--out", out / "p"],
            ("d.png", "is a folder", "--images"),
        ),
        (
            "predict",
            [
                "predict",
                "--run",
                run,
                "--images",
                BAD / "img_good.png",
                "--thresholds",
                _fifo(tmp / "t.json"),
                "--out",
                out / "p",
            ],
            ("t.json", "FIFO", "--thresholds"),
        ),
        (
            "predict",
            ["predict", "--run", fifo_run, "--images", BAD / "img_good.png", "--out", out / "p"],
            ("model.pt", "FIFO"),
        ),
        # calibrate
        ("calibrate", ["calibrate", "--run", bad_run, "--out", out / "t.json"], ("model.pt", "empty file")),
        # analyze
        (
            "analyze",
            [
                "analyze",
                "overlap",
                "--data",
                _folder(tmp / "data_dir"),
                "--manifest",
                good,
                "--run",
                run,
                "--out",
                out / "a",
            ],
            ("data_dir", "is a folder", "--data"),
        ),
        (
            "analyze",
            [
                "analyze",
                "overlap",
                "--data",
                good,
                "--manifest",
                _fifo(tmp / "m.json"),
                "--run",
                run,
                "--out",
                out / "a",
            ],
            ("m.json", "FIFO", "--manifest"),
        ),
        # reproduce, data
        (
            "reproduce",
            ["reproduce", "--preset", "smoke", "--config", _fifo(tmp / "r.yaml"), "--out", out / "r", "--dry-run"],
            ("r.yaml", "FIFO", "--config"),
        ),
        (
            "reproduce",
            ["reproduce", "--preset", "smoke", "--out", _empty(out / "r_file"), "--dry-run"],
            ("r_file", "not a folder"),
        ),
        (
            "data",
            [
                "data",
                "digits",
                "--out",
                _empty(out / "d_file"),
                "--force",
                "--train",
                "1",
                "--val",
                "1",
                "--test",
                "1",
                "--size",
                "32",
            ],
            ("d_file", "not a folder"),
        ),
    ]


def test_every_wrong_path_is_one_line_naming_it_and_nothing_is_written(tiny_run, tmp_path, capsys):
    cases = _path_cases(tmp_path, tiny_run)
    for command, argv, expected in cases:
        before = {p for p in files_under(tmp_path / "out")}
        code, _, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, command, *expected)
        assert set(files_under(tmp_path / "out")) == before, argv  # nothing new, no temp or lock file
    assert len(cases) >= 25
    assert {c for c, _, _ in cases} == {
        "curate",
        "evaluate",
        "train",
        "predict",
        "calibrate",
        "analyze",
        "reproduce",
        "data",
    }


def test_fifos_inside_input_folders_are_refused_not_opened(tmp_path, capsys):
    """txt ground truth and detections: a FIFO or a folder named *.txt is named, never opened."""
    gt = tmp_path / "gt"
    copy_bad("txt_gt_good.txt", gt / "a.txt")
    _fifo(gt / "b.txt")
    argv = [
        "evaluate",
        "--gt",
        gt,
        "--gt-format",
        "txt",
        "--detections",
        _folder(tmp_path / "det"),
        "--out",
        tmp_path / "out" / "r.json",
    ]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "evaluate", "b.txt", "FIFO", "--gt")
    os.unlink(gt / "b.txt")
    _folder(gt / "c.txt")
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "evaluate", "c.txt", "is a folder")
    assert files_under(tmp_path / "out") == []


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    """Root reads anything, so the permission error is simulated where the check opens the file."""
    from softsampling.errors import SoftSamplingError
    from softsampling.io import check_input_file

    path = tmp_path / "secret.json"
    path.write_text("{}")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(SoftSamplingError, match=r"secret.json: cannot be read \(Permission denied\).*--input"):
        check_input_file(path, option="--input")


# ------------------------------------------------------------------ outputs are never inputs
def _voc_dataset(root: Path, images: Path) -> Path:
    """A VOC2007 folder whose JPEGImages is a symlink, as our writer makes it."""
    voc = root / "VOC2007"
    copy_bad("voc_good.xml", voc / "Annotations" / "000001.xml")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
    os.symlink(os.path.relpath(images, voc), voc / "JPEGImages", target_is_directory=True)
    return voc


def _self_overwrite_cases(tmp: Path, run: Path) -> list[tuple[str, list, Path, tuple[str, ...]]]:
    """(command, argv, the input that must stay untouched, texts of the error)."""

    def copy(name: str, dest: Path) -> Path:
        return copy_bad(name, dest)

    gt = copy("coco_good.json", tmp / "e" / "gt.json")
    det = copy("det_good.json", tmp / "e" / "det.json")
    cfg_dir = tmp / "t" / "cfgdir"
    cfg = cfg_dir / "config.yaml"
    cfg_dir.mkdir(parents=True)
    cfg.write_text("# my settings\nseed: 3\n")
    train_json = copy("coco_good.json", tmp / "t" / "data" / "train.json")
    _images(tmp / "t" / "data" / "images")
    voc_images = _images(tmp / "v" / "orig" / "JPEGImages", ("000001.png",))
    voc = _voc_dataset(tmp / "v" / "X", voc_images)
    img_dir = _images(tmp / "p" / "imgs")
    run_copy = tmp / "c" / "run"
    shutil.copytree(run, run_copy)
    hard = tmp / "h" / "hard.json"
    hard.parent.mkdir()
    src = copy("coco_good.json", tmp / "h" / "src.json")
    os.link(src, hard)
    manifest_data = copy("coco_good.json", tmp / "a" / "data" / "curated.json")
    repro_cfg = tmp / "r" / "cfg" / "digits.yaml"
    repro_cfg.parent.mkdir(parents=True)
    shutil.copyfile(Path(__file__).resolve().parents[2] / "configs" / "digits.yaml", repro_cfg)
    txt_gt = tmp / "x" / "gt"
    copy("txt_gt_good.txt", txt_gt / "a.txt")
    txt_det = tmp / "x" / "det"
    txt_det.mkdir()
    (txt_det / "a.txt").write_text("cat 0.9 5 5 14 14\n")
    equal = ("would overwrite an input",)
    contains = ("would contain the input",)
    return [
        (
            "data",
            ["data", "digits", "--out", gt, "--force", "--train", "1", "--val", "1", "--test", "1", "--size", "32"],
            gt,
            ("not a folder",),
        ),
        ("curate", ["curate", "--input", gt, "--format", "coco", *CURATE, "--out", gt, "--force"], gt, equal),
        ("curate", ["curate", "--input", src, "--format", "coco", *CURATE, "--out", hard, "--force"], src, equal),
        (
            "curate",
            ["curate", "--input", voc, "--format", "voc", *CURATE, "--out", voc.parent, "--force"],
            voc,
            contains,
        ),
        (
            "curate",
            ["curate", "--input", voc, "--format", "voc", *CURATE, "--out", voc_images.parent, "--force"],
            voc_images,
            ("which the input", "links to"),
        ),
        ("train", ["train", "--config", cfg, "--out", cfg_dir, "--set", f"data.train={train_json}"], cfg, contains),
        ("train", ["train", "--out", train_json.parent, "--set", f"data.train={train_json}"], train_json, contains),
        (
            "predict",
            ["predict", "--run", run_copy, "--images", img_dir, "--out", img_dir, "--force"],
            img_dir,
            ("output would overwrite an input folder",),
        ),
        (
            "predict",
            ["predict", "--run", run_copy, "--images", img_dir / "a.png", "--out", run_copy],
            run_copy,
            contains,
        ),
        (
            "evaluate",
            ["evaluate", "--gt", gt, "--gt-format", "coco", "--detections", det, "--out", gt, "--force"],
            gt,
            equal,
        ),
        (
            "evaluate",
            ["evaluate", "--gt", gt, "--gt-format", "coco", "--detections", det, "--plot", det, "--force"],
            det,
            equal,
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                txt_gt,
                "--gt-format",
                "txt",
                "--detections",
                txt_det,
                "--out",
                txt_gt / "results.json",
            ],
            txt_gt,
            ("lies inside the input folder",),
        ),
        ("calibrate", ["calibrate", "--run", run_copy, "--out", run_copy / "model.pt", "--force"], run_copy, equal),
        (
            "analyze",
            [
                "analyze",
                "overlap",
                "--data",
                manifest_data,
                "--manifest",
                gt,
                "--run",
                run_copy,
                "--out",
                manifest_data.parent,
            ],
            manifest_data,
            contains,
        ),
        (
            "reproduce",
            ["reproduce", "--preset", "smoke", "--config", repro_cfg, "--out", repro_cfg.parent, "--dry-run"],
            repro_cfg,
            contains,
        ),
    ]


def test_no_command_writes_over_or_around_its_inputs_even_with_force(tiny_run, tmp_path, capsys):
    cases = _self_overwrite_cases(tmp_path, tiny_run)
    assert {c for c, _, _, _ in cases} == {
        "data",
        "curate",
        "train",
        "predict",
        "evaluate",
        "calibrate",
        "analyze",
        "reproduce",
    }
    for command, argv, kept, expected in cases:
        before = _digest(kept)
        listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        code, _, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, command, *expected)
        assert _digest(kept) == before, argv
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing, argv  # nothing written


# ------------------------------------------------------------------ one writer per output
def test_a_second_run_into_the_same_output_stops(tmp_path, capsys):
    from softsampling.io import output_lock

    out = tmp_path / "out" / "curated.json"
    argv = ["curate", "--input", BAD / "coco_good.json", "--format", "coco", *CURATE, "--out", out]
    with output_lock(out):  # another run holds it
        code, _, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, "curate", "curated.json", "another softsampling run")
        assert not out.exists()
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert [p.name for p in files_under(tmp_path / "out")] == ["curated.json", "curated.manifest.json"]


# ------------------------------------------------------------------ interrupts
def test_ctrl_c_between_curated_file_and_manifest_leaves_neither(tmp_path, capsys, monkeypatch):
    import softsampling.commands.curate as cc

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cc, "write_manifest", interrupted)
    code, _, err = run_cli(
        [
            "curate",
            "--input",
            BAD / "coco_good.json",
            "--format",
            "coco",
            *CURATE,
            "--out",
            tmp_path / "out" / "c.json",
        ],
        capsys,
    )
    assert code == 130 and "interrupted" in err
    assert files_under(tmp_path) == []  # no curated file without its manifest, no temp file, no lock


def test_sigterm_during_curate_removes_temp_files_and_leaves_no_half_output(tmp_path):
    """A real process: SIGTERM arrives while the curated file is written but not yet committed."""
    script = (
        "import os, signal, sys, time\n"
        "import softsampling.commands.curate as cc\n"
        "real = cc.write_manifest\n"
        "def slow(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); real(*a, **k)\n"
        "cc.write_manifest = slow\n"
        "from softsampling.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out"
    argv = ["curate", "--input", str(BAD / "coco_good.json"), "--format", "coco", *CURATE, "--out", str(out / "c.json")]
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == "softsampling curate: terminated"
    assert files_under(tmp_path) == []


# ------------------------------------------------------------------ validate first, then write
def test_predict_draw_leaves_no_drawing_when_a_later_image_is_bad(tiny_run, tmp_path, capsys):
    imgs = _images(tmp_path / "imgs", ("a.png",))
    copy_bad("img_not_an_image.png", imgs / "b.png")
    code, _, err = run_cli(
        ["predict", "--run", tiny_run, "--images", imgs, "--out", tmp_path / "out", "--draw"], capsys
    )
    assert_one_line_error(code, err, "predict", "b.png", "cannot read image")
    assert files_under(tmp_path / "out") == [] and not (tmp_path / "out").exists()


def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")  # a run that died before its first checkpoint
    code, _, err = run_cli(["train", "--out", run, "--resume"], capsys)
    assert_one_line_error(code, err, "train", "run", "nothing to resume", "no checkpoint (last.pt)")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_a_failed_score_soft_start_leaves_no_run_folder(tiny_run, tmp_path, capsys):
    """The prior run has other classes: refused after the data was read -- and the run folder goes again."""
    doc = json.loads((BAD / "coco_good.json").read_text())
    doc["categories"] = [{"id": c["id"], "name": f"other{c['id']}"} for c in doc["categories"]]
    (tmp_path / "train.json").write_text(json.dumps(doc))
    _images(tmp_path / "images")
    out = tmp_path / "out" / "run"
    code, _, err = run_cli(
        [
            "train",
            "--out",
            out,
            "--set",
            f"data.train={tmp_path / 'train.json'}",
            "--set",
            f"data.images={tmp_path / 'images'}",
            "--set",
            "data.val=null",
            "--set",
            "data.test=null",
            "--set",
            "strategy=score_soft",
            "--set",
            f"prior_run={tiny_run}",
            "--no-progress",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "train", "different classes")
    assert not out.exists()


def test_a_fresh_run_that_fails_before_its_first_checkpoint_removes_what_it_wrote(tmp_path, monkeypatch):
    from softsampling.engine import train as train_module
    from softsampling.engine.config import RunConfig

    def starts_then_breaks(cfg, out_dir: Path, **kwargs):
        out_dir.mkdir(exist_ok=True)
        (out_dir / "config.yaml").write_text("x")
        (out_dir / "labels.json").write_text("{}")
        raise KeyboardInterrupt  # e.g. Ctrl-C while the model is built

    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(train_module, "_train", starts_then_breaks)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(RunConfig(), out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # the user's file stays, ours go
    with pytest.raises(KeyboardInterrupt):
        train_module.train(RunConfig(), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_reproduce_checks_set_before_building_any_data(tmp_path, capsys):
    code, _, err = run_cli(
        ["reproduce", "--preset", "smoke", "--set", "train.lrate=1", "--out", tmp_path / "r", "--dry-run"], capsys
    )
    assert_one_line_error(code, err, "reproduce", "unknown config key 'train.lrate'")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ the image-root rule in every command
def test_analyze_refuses_images_outside_the_image_folder_like_train(tiny_run, tmp_path, capsys):
    secret = tmp_path / "secret"
    _images(secret, ("x.png",))
    images = _images(tmp_path / "data" / "images", ("a.png",))
    doc = json.loads((BAD / "coco_good.json").read_text())
    doc["images"][1]["file_name"] = "../../secret/x.png"
    data = tmp_path / "data" / "train.json"
    data.write_text(json.dumps(doc))
    code, _, err = run_cli(
        ["curate", "--input", data, "--format", "coco", *CURATE, "--out", tmp_path / "c.json"], capsys
    )
    assert code == 0, err
    code, _, err = run_cli(
        [
            "analyze",
            "overlap",
            "--data",
            tmp_path / "c.json",
            "--images-root",
            images,
            "--run",
            tiny_run,
            "--out",
            tmp_path / "out",
            "--images",
            "2",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "analyze", "../../secret/x.png", "leaves the image folder")
    assert files_under(tmp_path / "out") == []


def test_a_voc_split_line_cannot_reach_an_xml_outside_the_dataset(tmp_path, capsys):
    voc = tmp_path / "in" / "VOC2007"
    copy_bad("voc_good.xml", voc / "Annotations" / "000001.xml")
    copy_bad("voc_good.xml", tmp_path / "outside" / "secret.xml")  # exists: the old reader read it
    copy_bad("voc_split_path_traversal.txt", voc / "ImageSets" / "Main" / "trainval.txt")
    code, _, err = run_cli(["curate", "--input", voc, "--format", "voc", *CURATE, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "curate", "trainval.txt", "line 2", "not a plain file name")
    assert files_under(tmp_path / "out") == []
