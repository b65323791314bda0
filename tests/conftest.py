"""Shared test fixtures: where the real data in shared/ lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOFTSAMPLING_SHARED", REPO.parent / "shared"))
COCO128 = SHARED / "data" / "coco128_coco_json"
CARTUCHO = SHARED / "data" / "cartucho_map_sample"


@pytest.fixture(scope="session")
def coco128_json() -> Path:
    path = COCO128 / "annotations" / "instances_train2017.json"
    assert path.exists(), f"shared test data missing: {path} (set SOFTSAMPLING_SHARED to the shared/ folder)"
    return path


@pytest.fixture(scope="session")
def coco128_images() -> Path:
    return COCO128 / "images" / "train2017"


@pytest.fixture(scope="session")
def cartucho_dir() -> Path:
    assert CARTUCHO.exists(), f"shared test data missing: {CARTUCHO}"
    return CARTUCHO
