"""GPU-only training settings: mixed precision, cuDNN autotuning, channels-last memory format.

``train.amp``, ``train.cudnn_benchmark`` and ``train.channels_last`` only make
sense on CUDA; on any other device they are refused with one error naming
them (a CPU run never silently ignores what the config asked for).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from softsampling.engine.config import TrainConfig
from softsampling.errors import SoftSamplingError

GPU_ONLY = ("amp", "cudnn_benchmark", "channels_last")


def check_gpu_settings(t: TrainConfig, device: torch.device) -> None:
    """Refuse CUDA-only settings off CUDA, and cuDNN autotuning together with deterministic algorithms."""
    asked = [key for key in GPU_ONLY if getattr(t, key)]
    if asked and device.type != "cuda":
        sets = " ".join(f"--set train.{key}=false" for key in asked)
        raise SoftSamplingError(
            f"{', '.join(f'train.{k}=true' for k in asked)} needs a CUDA GPU, but this run "
            f"uses the {device.type.upper()}",
            fix=f"run on a GPU, or turn it off: {sets}",
        )
    if t.cudnn_benchmark and t.deterministic:
        raise SoftSamplingError(
            "train.cudnn_benchmark=true picks convolution algorithms by timing them, which "
            "contradicts train.deterministic=true",
            fix="--set train.deterministic=false to use cudnn_benchmark, or leave it false",
        )


def apply_gpu_settings(model: torch.nn.Module, t: TrainConfig) -> torch.nn.Module:
    """Set cuDNN autotuning and the model's memory format as ``t`` says (after :func:`check_gpu_settings`)."""
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(t.cudnn_benchmark)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def autocast(t: TrainConfig, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` (float16) around the forward pass when ``train.amp``; a no-op otherwise."""
    with torch.autocast(device.type, dtype=torch.float16, enabled=bool(t.amp)):
        yield


def grad_scaler(t: TrainConfig) -> torch.amp.GradScaler:
    """The loss scaler of float16 training (disabled, a pass-through, without ``train.amp``)."""
    return torch.amp.GradScaler("cuda", enabled=bool(t.amp))
