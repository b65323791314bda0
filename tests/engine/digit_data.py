"""Tiny digit scenes with a 50%-dropped training split, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

from softsampling.cli import main


def curated_digits(root: Path, *, train: int, val: int, test: int) -> Path:
    """``root`` holding digit scenes (seed 0) and ``annotations/train_drop50.json`` curated from them."""
    from softsampling.data.digits import make_digit_scenes

    make_digit_scenes(root, train=train, val=val, test=test, seed=0)
    annotations = root / "annotations"
    args = ["curate", "--input", str(annotations / "train.json"), "--format", "coco", "--drop-rate", "0.5"]
    assert main([*args, "--seed", "0", "--out", str(annotations / "train_drop50.json")]) == 0
    return root
