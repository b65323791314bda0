"""predict, calibrate and evaluate --run: 2 gloo processes give one process's output; a killed predict resumes."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softsampling.cli import main
from softsampling.engine.build import build_model
from softsampling.engine.checkpoint import save_checkpoint
from softsampling.engine.config import RunConfig, apply_overrides
from softsampling.engine.data import LabelMap
from tests.conftest import REPO


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run folder holding an untrained digit model (its scores still rank boxes) and 5 val scenes listed in a file."""
    from softsampling.data.coco import read_coco
    from softsampling.data.digits import make_digit_scenes

    root = tmp_path_factory.mktemp("inference")
    make_digit_scenes(root / "digits", train=1, val=5, test=1, size=64, seed=0)
    val = root / "digits" / "annotations" / "val.json"
    cfg = apply_overrides(
        RunConfig(), [f"data.train={val}", f"data.val={val}", "model.min_size=64", "model.max_size=64"]
    )
    label_map = LabelMap.from_dataset(read_coco(val))
    torch.manual_seed(0)
    model = build_model(cfg, label_map.num_classes)
    run = root / "run"
    save_checkpoint(
        run / "model.pt", {"model": model.state_dict(), "labels": label_map.to_json(), "config": cfg.to_dict()}
    )
    images = sorted((root / "digits" / "images" / "val").iterdir())
    image_list = root / "images.txt"
    image_list.write_text("# the val scenes\n" + "".join(f"digits/images/val/{p.name}\n" for p in images))
    return run, image_list


def test_two_gloo_processes_write_what_one_process_writes(untrained_run, tmp_path, monkeypatch) -> None:
    run, image_list = untrained_run
    script = REPO / "tests" / "engine" / "torchrun_inference.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*torchrun, str(script), str(run), str(image_list), str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[:3000]
    one, two = tmp_path / "one", tmp_path / "two"
    monkeypatch.setattr(sys, "argv", [str(script), str(run), str(image_list), str(one)])
    with pytest.raises(SystemExit) as exit_status:  # the same script in this (one) process
        runpy.run_path(str(script), run_name="__main__")
    assert exit_status.value.code == 0
    dets = json.loads((one / "preds" / "detections.json").read_text())
    assert len({d["file_name"] for d in dets}) == 5 and all("image_id" not in d for d in dets)  # every image, by name
    assert (two / "preds" / "detections.json").read_bytes() == (one / "preds" / "detections.json").read_bytes()
    assert not (two / "preds" / "detections.partial").exists()
    assert (two / "thresholds.json").read_bytes() == (one / "thresholds.json").read_bytes()
    assert (two / "eval.json").read_bytes() == (one / "eval.json").read_bytes()
    assert json.loads((one / "eval.json").read_text())["num_detections"] > 0


def test_a_killed_prediction_resumes_where_it_stopped(untrained_run, tmp_path, monkeypatch, capsys) -> None:
    import softsampling.engine.predict as predict_module

    run, image_list = untrained_run
    args = [
        "predict",
        "--run",
        str(run),
        "--image-list",
        str(image_list),
        "--chunk-size",
        "2",
        "--score-threshold",
        "0",
        "--no-progress",
    ]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    calls = []
    original = predict_module.predict_images

    def killed_at_fourth_image(model, images, device="cpu"):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as a kill in the middle of chunk 1 (images 2, 3)
        return original(model, images, device)

    monkeypatch.setattr(predict_module, "predict_images", killed_at_fourth_image)
    out = tmp_path / "resumed"
    assert main([*args, "--out", str(out)]) == 130
    assert sorted(p.name for p in (out / "detections.partial").iterdir()) == ["chunk-0000000.json", "job.json"]
    calls.clear()
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    assert "resuming: 1 chunk(s) of 2 images already done" in capsys.readouterr().out
    assert len(calls) == 3  # images 2, 3, 4 only
    monkeypatch.undo()
    assert (out / "detections.json").read_bytes() == (tmp_path / "whole" / "detections.json").read_bytes()
    # other settings on an interrupted folder are refused, not mixed in
    assert main([*args, "--out", str(out)]) == 2  # finished: detections.json exists
    (out / "detections.partial").mkdir()
    (out / "detections.partial" / "job.json").write_text('{"run": "elsewhere"}')
    (out / "detections.json").unlink()
    assert main([*args, "--out", str(out)]) == 2
    assert "interrupted prediction with other settings" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--force"]) == 0
    assert (out / "detections.json").read_bytes() == (tmp_path / "whole" / "detections.json").read_bytes()
