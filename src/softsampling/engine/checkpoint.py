"""Checkpoints that survive a kill at any moment.

A checkpoint is written to a temp file, fsynced and renamed over
``last.pt`` (``softsampling.io.atomic_write``), so ``last.pt`` is always a
complete earlier or later checkpoint, never a torn one. Files hold only
tensors and plain containers and are loaded with ``torch.load(weights_only=True)``:
a pickle that would run code is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write, check_input_file


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``), with clear errors for missing or hostile files."""
    path = Path(path)
    if not path.exists():
        raise SoftSamplingError("checkpoint not found", file=path, fix="check the run folder, or train it first")
    check_input_file(path, option="the run folder", what="checkpoint file")  # a FIFO would block torch.load
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SoftSamplingError(
            f"refusing to load: the file is not a plain-weights checkpoint ({str(exc).splitlines()[0]})",
            file=path, fix="only load checkpoints written by softsampling or other weights-only files you trust",
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise SoftSamplingError(f"checkpoint is unreadable ({str(exc).splitlines()[0]})", file=path,
                                fix="delete it and resume from an earlier checkpoint, or retrain") from None
