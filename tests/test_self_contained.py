"""The tests read only files inside the repository, so a fresh clone passes them with nothing beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from tests.conftest import REPO

TESTS = REPO / "tests"
THIS = Path(__file__).resolve()

# The sibling folder of benchmarks and experiments, never read by tests. Its name is spelled in two pieces so
# that this guard itself (which only scans text) names no path outside the repository.
SIBLING = "sha" + "red"
ENV_VAR = "SOFTSAMPLING_" + SIBLING.upper()
# A path that leaves the repository for the sibling folder ("../X/...", "/work/X/...", REPO.parent / "X"),
# or the environment variable that used to point there.
OUTSIDE = re.compile(rf"""[/\\"']{SIBLING}[/\\"']|{ENV_VAR}|REPO\.parent\b""")


def test_no_test_names_a_folder_outside_the_repository() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == THIS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], "tests must read tests/data/, not a folder beside the repository:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_should() -> None:
    assert OUTSIDE.search(f'DATA = REPO.parent / "{SIBLING}"')
    assert OUTSIDE.search(f'Path("../{SIBLING}/data/coco128_coco_json")')
    assert OUTSIDE.search(f'os.environ["{ENV_VAR}"]')
    assert not OUTSIDE.search('"""Shared test fixtures."""')
    assert not OUTSIDE.search("runs/shared_weights")


def test_data_fixtures_live_in_the_repository(coco128_json: Path, coco128_images: Path, cartucho_dir: Path) -> None:
    for path in (coco128_json, coco128_images, cartucho_dir):
        assert path.exists(), path
        assert path.resolve().is_relative_to(TESTS / "data"), f"{path} is outside tests/data"


def test_stand_in_images_match_the_annotated_sizes(coco128_json: Path, coco128_images: Path) -> None:
    images = json.loads(coco128_json.read_text())["images"]
    assert sorted(p.name for p in coco128_images.iterdir()) == sorted(im["file_name"] for im in images)
    first = coco128_images / images[0]["file_name"]
    with Image.open(first) as im:
        assert im.size == (images[0]["width"], images[0]["height"])
    assert first.stat().st_size < 10_000  # a stand-in, not the photo


def test_shipped_test_data_stays_small() -> None:
    total = sum(p.stat().st_size for p in (TESTS / "data").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 4_000_000, f"tests/data holds {total / 1e6:.1f} MB; keep the shipped test data to a few MB"
