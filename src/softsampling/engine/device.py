"""The torch device a command runs on, from the ``--device`` / ``train.device`` text.

Training, prediction, evaluation and calibration all take a device name; they
resolve it here so that every command accepts and refuses the same names.
"""

from __future__ import annotations

import torch

from softsampling.errors import SoftSamplingError


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; anything else is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if name != "cpu" and not (kind == "cuda" and (index == "" or index.isdecimal())):
        raise SoftSamplingError(f"unknown device {name!r}", fix="use auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SoftSamplingError(f"device {name} asked for, but no CUDA GPU is available", fix="use the cpu device")
    if index and int(index) >= torch.cuda.device_count():
        raise SoftSamplingError(
            f"device {name} asked for, but there are {torch.cuda.device_count()} CUDA GPU(s)",
            fix="use cuda:0 ... or auto",
        )
    return torch.device(name)
