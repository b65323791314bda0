"""GPU-only training settings are refused on CPU, before any work, with one line naming them."""

from __future__ import annotations

import pytest
import torch

from softsampling.engine.config import RunConfig, apply_overrides
from softsampling.engine.gpu import check_gpu_settings
from softsampling.engine.train import train
from softsampling.errors import SoftSamplingError


def test_amp_on_cpu_is_refused_before_training(tmp_path) -> None:
    cfg = apply_overrides(RunConfig(), ["data.train=nowhere.json", "train.amp=true", "train.device=cpu"])
    with pytest.raises(
        SoftSamplingError,
        match=r"train.amp=true needs a CUDA GPU, but this run uses the CPU "
        r"\(fix: run on a GPU, or turn it off: --set train.amp=false\)",
    ):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_gpu_settings_on_cpu_and_cudnn_benchmark_with_determinism() -> None:
    t = apply_overrides(
        RunConfig(), ["train.cudnn_benchmark=true", "train.channels_last=true", "train.deterministic=false"]
    ).train
    with pytest.raises(
        SoftSamplingError, match="train.cudnn_benchmark=true, train.channels_last=true needs a CUDA GPU"
    ):
        check_gpu_settings(t, torch.device("cpu"))
    t.deterministic = True
    with pytest.raises(SoftSamplingError, match="contradicts train.deterministic=true"):
        check_gpu_settings(t, torch.device("cuda"))
    check_gpu_settings(RunConfig().train, torch.device("cpu"))  # the defaults pass everywhere
