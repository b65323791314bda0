"""Shared by the reliability tests: the corpus folder, a tiny saved run, and the one-line-error check."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from softsampling.cli import main

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"


def copy_bad(name: str, dest: Path) -> Path:
    """Copy corpus file ``name`` to ``dest`` (a folder, created, or a full path) and return the copy."""
    target = dest / name if dest.suffix == "" else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BAD / name, target)
    return target


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``softsampling ARGV`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, *expected: str) -> str:
    """Exit 2, exactly one line ``softsampling COMMAND: error: ...`` holding ``expected`` and a fix, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    line = lines[0]
    assert line.startswith(f"softsampling {command}: error: "), line
    # look for the expected texts with folder names cut from paths (tmp folders are named after the test)
    without_folders = line
    for root in (tempfile.gettempdir(), str(BAD.parents[2])):
        without_folders = re.sub(re.escape(root) + r"/[^\s'\"]*/", "", without_folders)
    for text in expected:
        assert text in without_folders, f"{text!r} not in {without_folders!r}"
    assert "(fix: " in line, f"no fix in {line!r}"
    return line


def files_under(folder: Path) -> list[Path]:
    """Every file or link under ``folder`` (hidden temp files included); [] if it does not exist."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def save_tiny_run(run_dir: Path, class_names: tuple[str, ...] = ("cat", "dog")) -> Path:
    """A run folder with an untrained digits model (what `predict --run` loads); no training needed."""
    from softsampling.engine.build import build_model
    from softsampling.engine.checkpoint import FINAL, save_checkpoint
    from softsampling.engine.config import RunConfig, save_config
    from softsampling.engine.data import LabelMap

    cfg = RunConfig()
    label_map = LabelMap(tuple(range(1, len(class_names) + 1)), class_names)
    model = build_model(cfg, label_map.num_classes)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        run_dir / FINAL, {"model": model.state_dict(), "labels": label_map.to_json(), "config": cfg.to_dict()}
    )
    save_config(cfg, run_dir / "config.yaml")
    return run_dir
