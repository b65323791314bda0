"""Shared test fixtures: the real data shipped with the tests in tests/data/ (see its README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
COCO128 = TEST_DATA / "coco128"
CARTUCHO = TEST_DATA / "cartucho"


@pytest.fixture(scope="session")
def coco128_json() -> Path:
    """The original COCO128 annotation file (128 real COCO train2017 images, 939 boxes)."""
    return COCO128 / "annotations" / "instances_train2017.json"


@pytest.fixture(scope="session")
def coco128_images() -> Path:
    """Grey stand-ins with the real images' file names and sizes (the JSON's default image root)."""
    return COCO128 / "images" / "train2017"


@pytest.fixture(scope="session")
def cartucho_dir() -> Path:
    """Cartucho/mAP's sample: ground-truth/ and detection-results/ txt files, images/ as stand-ins."""
    return CARTUCHO
