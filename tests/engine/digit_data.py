"""Tiny digit scenes with a 50%-dropped training split, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

from softsampling.cli import main
from tests.conftest import REPO

# tiny, fast training settings for the CLI tests
TINY = ["--set", "train.batch_size=2", "--set", "train.log_every=1", "--set", "train.warmup_iterations=2"]
TINY += ["--set", "train.threads=1", "--no-progress"]


def curated_digits(root: Path, *, train: int, val: int, test: int) -> Path:
    """``root`` holding digit scenes (seed 0) and ``annotations/train_drop50.json`` curated from them."""
    from softsampling.data.digits import make_digit_scenes

    make_digit_scenes(root, train=train, val=val, test=test, seed=0)
    annotations = root / "annotations"
    args = ["curate", "--input", str(annotations / "train.json"), "--format", "coco", "--drop-rate", "0.5"]
    assert main([*args, "--seed", "0", "--out", str(annotations / "train_drop50.json")]) == 0
    return root


def train_on_curated(data: Path, out: Path, *extra: str, iterations: int = 2) -> int:
    """``softsampling train`` with configs/digits.yaml on ``data``'s 50%-dropped split (val: its val split)."""
    annotations = data / "annotations"
    return main(
        [
            "train",
            "--config",
            str(REPO / "configs" / "digits.yaml"),
            "--out",
            str(out),
            "--set",
            f"data.train={annotations / 'train_drop50.json'}",
            "--set",
            f"data.val={annotations / 'val.json'}",
            "--set",
            f"train.iterations={iterations}",
            *TINY,
            *extra,
        ]
    )
