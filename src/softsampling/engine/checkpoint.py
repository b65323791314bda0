"""Checkpoints that survive a kill at any moment.

A checkpoint is written to a temp file, fsynced and renamed over
``last.pt`` (``softsampling.io.atomic_write``), so ``last.pt`` is always a
complete earlier or later checkpoint, never a torn one. Files hold only
tensors and plain containers and are loaded with ``torch.load(weights_only=True)``:
a pickle that would run code is refused.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import torch

from softsampling.engine.faults import kill_point
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write, check_input_file

# A run folder's checkpoints: the resumable state (written every train.checkpoint_every) and the final weights.
LAST = "last.pt"
FINAL = "model.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
        if "iteration" in state:  # a resumable checkpoint: the kill tests may stop here, before the rename
            f.flush()
            kill_point("ckpt", state["iteration"])


# What each kind of checkpoint must hold: the final weights (model.pt) and the resumable state (last.pt).
FINAL_KEYS: tuple[str, ...] = ("model", "labels", "config")
RESUME_KEYS: tuple[str, ...] = ("model", "optimizer", "scheduler", "iteration", "rng")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) as a dict holding at least the keys ``required``.

    Missing, empty, torn, code-carrying or incomplete files raise :class:`SoftSamplingError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise SoftSamplingError("checkpoint not found", file=path, fix="check the run folder, or train it first")
    check_input_file(path, option="the run folder", what="checkpoint file")  # a FIFO would block torch.load
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests an unsafe way round; we do not repeat it
        raise SoftSamplingError(
            "refusing to load: the file holds Python objects other than tensors and plain containers, "
            "and loading those could run code",
            file=path,
            fix="load only checkpoints written by softsampling; save other weights as a plain state dict of tensors",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise SoftSamplingError(
            f"checkpoint is unreadable ({_first_line(exc)})",
            file=path,
            fix="delete it and resume from an earlier checkpoint, or retrain",
        ) from None
    except (IndexError, KeyError, TypeError, struct.error) as exc:
        # torch's weights-only unpickler reports a corrupt opcode stream this way (an empty stack, an unknown memo
        # key, a short read: found by bench/fuzz_inputs.py); the call does nothing but parse the file
        raise SoftSamplingError(
            f"checkpoint is corrupt (its pickle stream is broken: {type(exc).__name__} {_first_line(exc)})",
            file=path,
            fix="delete it and resume from an earlier checkpoint, or retrain",
        ) from None
    if not isinstance(state, dict):
        raise SoftSamplingError(
            f"not a softsampling checkpoint (it holds a {type(state).__name__}, not a mapping)",
            file=path,
            fix="pass a run folder written by `softsampling train`",
        )
    missing = [key for key in required if key not in state]
    if missing:
        raise SoftSamplingError(
            f"checkpoint is incomplete: no {', '.join(repr(k) for k in missing)} "
            f"(a {path.name} written by `softsampling train` holds {', '.join(required)})",
            file=path,
            fix="retrain the run, or resume it from a complete checkpoint",
        )
    return state


def load_state(module: Any, state: Any, path: str | Path, what: str) -> None:
    """``module.load_state_dict(state)`` (a model or an optimizer) with a clear error when they do not fit."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SoftSamplingError(
            f"the {what} state in the checkpoint does not fit this run ({_first_line(exc)})",
            file=path,
            fix="the checkpoint was written for another model or config; retrain, or point at the run it belongs to",
        ) from None
