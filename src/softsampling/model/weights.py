"""Pretrained weights by torchvision name or by local path.

``model.backbone_weights`` and ``model.weights`` take either

- a torchvision weights name, ``<Enum>.<member>`` as torchvision spells it
  (``ResNet50_Weights.IMAGENET1K_V2``, ``FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1``).
  It resolves through :func:`torchvision.models.get_weight` and
  ``WeightsEnum.get_state_dict(check_hash=True)``, so torchvision downloads the
  file once into its cache (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``), checks its hash on download, and reads
  it from the cache afterwards; or
- the path of a local file: a ``state_dict``, or a checkpoint holding one
  under ``"model"`` (a softsampling ``model.pt`` / ``last.pt``) or ``"state_dict"``.

Nothing here downloads except torchvision itself, for a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from softsampling.errors import SoftSamplingError

# ``Enum.member`` with no path separator; a name that is also an existing file is read as the file.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_Weights\.[A-Za-z0-9_]+$")

# torchvision enums whose weights fit our builders, by model.name.
BACKBONE_ENUMS = {"ResNet50_Weights": ("resnet50_fpn", "resnet50_fpn_v2")}
DETECTOR_ENUMS = {
    "FasterRCNN_ResNet50_FPN_Weights": "resnet50_fpn",
    "FasterRCNN_ResNet50_FPN_V2_Weights": "resnet50_fpn_v2",
}

# Keys of the box predictor (class scores and per-class box deltas): re-initialised for the dataset's classes.
PREDICTOR_PREFIX = "roi_heads.box_predictor."


def is_weights_name(value: str | Path) -> bool:
    """True when ``value`` is spelled like a torchvision weights name and is not an existing file.

    >>> is_weights_name("ResNet50_Weights.IMAGENET1K_V2"), is_weights_name("weights/resnet50.pth")
    (True, False)
    """
    text = str(value)
    return bool(_NAME.match(text)) and not Path(text).exists()


def offline_hint(name: str) -> str:
    """How to get a named file onto a machine without internet access."""
    return (
        f'on a machine with internet access run `python -c "import torchvision; '
        f"torchvision.models.get_weight('{name}').get_state_dict()\"`, then copy its "
        "$TORCH_HOME/hub/checkpoints folder (default ~/.cache/torch/hub/checkpoints) here; "
        "or pass the path of a local weights file"
    )


def torchvision_weights(name: str, allowed: dict[str, Any], what: str) -> Any:
    """The torchvision ``WeightsEnum`` member called ``name``, if its enum is one of ``allowed``."""
    from torchvision.models import get_weight

    enum_name = name.split(".", 1)[0]
    if enum_name not in allowed:
        raise SoftSamplingError(
            f"{name!r} is not usable as {what}",
            fix=f"use weights of {', '.join(sorted(allowed))}, e.g. {_example(allowed)}",
        )
    try:
        return get_weight(name)
    except (KeyError, ValueError, AttributeError):
        raise SoftSamplingError(
            f"torchvision has no weights called {name!r}", fix=f"use one of {', '.join(_members(enum_name))}"
        ) from None


def _members(enum_name: str) -> list[str]:
    from torchvision.models import get_weight

    enum = type(get_weight(f"{enum_name}.DEFAULT"))
    return [str(w) for w in enum]


def _example(allowed: dict[str, Any]) -> str:
    return _members(sorted(allowed)[0])[-1]


def read_state_dict(
    source: str | Path, *, allowed: dict[str, Any], what: str, hint: str
) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, description)`` of a torchvision weights name or a local file.

    Raises:
        SoftSamplingError: unknown name, failed download, missing or unreadable file,
            or a file that holds no ``state_dict``.
    """
    if is_weights_name(source):
        weights = torchvision_weights(str(source), allowed, what)
        try:
            state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
        except Exception as error:  # noqa: BLE001 - no network, hash mismatch, torn cache file: one user problem
            first = str(error).splitlines()[0] if str(error) else ""
            raise SoftSamplingError(
                f"cannot get torchvision weights {source} from {weights.url} ({type(error).__name__}: {first})",
                fix=offline_hint(str(source)),
            ) from None
        return state, str(source)
    path = Path(source)
    if not path.is_file():
        raise SoftSamplingError(f"{what} not found", file=path, fix=hint)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        raise SoftSamplingError(f"cannot read {what} ({type(error).__name__}: {error})", file=path, fix=hint) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SoftSamplingError(f"{what} file does not hold a state_dict", file=path, fix=hint)
    return state, str(path)


@dataclass
class WeightsReport:
    """What :func:`load_detector_weights` did: tensors loaded, and keys skipped (with why)."""

    source: str
    loaded: int
    skipped: dict[str, str] = field(default_factory=dict)  # key -> reason

    def summary(self) -> str:
        """One line: the source, tensors loaded, and the skipped keys (a few named per reason)."""
        text = f"detector weights {self.source}: {self.loaded} tensors loaded"
        for key in self.skipped:
            if key.startswith(PREDICTOR_PREFIX):
                text += f"; skipped {key}: {self.skipped[key]}"
        counters = [k for k in self.skipped if not k.startswith(PREDICTOR_PREFIX)]
        if counters:
            text += f"; skipped {len(counters)} batch-norm counters (e.g. {counters[0]}): frozen batch norm keeps none"
        return text


DETECTOR_HINT = (
    "pass a torchvision detector weights name such as FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1 "
    "(with model.name=resnet50_fpn_v2), or the path of a detector state_dict or softsampling model.pt"
)


def read_detector_weights(source: str | Path, *, model_name: str) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, description)`` of detector weights for ``model_name``, checked by name before any download."""
    if is_weights_name(source):
        enum_name = str(source).split(".", 1)[0]
        expected = DETECTOR_ENUMS.get(enum_name)
        if expected is not None and expected != model_name:
            raise SoftSamplingError(
                f"{source} are weights of model.name={expected}, not {model_name}", fix=f"--set model.name={expected}"
            )
    return read_state_dict(source, allowed=DETECTOR_ENUMS, what="detector weights", hint=DETECTOR_HINT)


def load_detector_weights(
    model: nn.Module, source: str | Path | tuple[dict[str, Tensor], str], *, model_name: str
) -> WeightsReport:
    """Load a whole detector's weights into ``model``; its box predictor keeps its fresh initialisation.

    ``source``: a torchvision name, a local file, or what :func:`read_detector_weights` returned.
    The box predictor (``roi_heads.box_predictor.*``: class scores and box deltas)
    is sized for the source's classes (91 for torchvision's COCO weights), so it
    is skipped and stays as built, for the dataset's classes. Every other key must
    match: a missing, unexpected or differently shaped key is an error. The skipped
    keys are returned in the report.

    Raises:
        SoftSamplingError: the weights do not fit the model of ``model_name``.
    """
    state, description = source if isinstance(source, tuple) else read_detector_weights(source, model_name=model_name)
    own = model.state_dict()
    skipped: dict[str, str] = {}
    kept: dict[str, Tensor] = {}
    cls_score = model.get_submodule("roi_heads.box_predictor.cls_score")
    assert isinstance(cls_score, nn.Linear)  # torchvision's FastRCNNPredictor
    classes = cls_score.out_features
    for key, value in state.items():
        if key.startswith(PREDICTOR_PREFIX):
            shape = f"{tuple(value.shape)} -> {tuple(own[key].shape)}, " if key in own else ""
            skipped[key] = f"{shape}re-initialised for {classes} classes"
        elif key.endswith("num_batches_tracked") and key not in own:
            skipped[key] = "frozen batch norm keeps no counter"
        else:
            kept[key] = value
    missing = [
        k for k in own if k not in kept and not k.startswith(PREDICTOR_PREFIX) and not k.endswith("num_batches_tracked")
    ]  # batch norm starts its counter at 0
    unexpected = [k for k in kept if k not in own]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in kept.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        raise SoftSamplingError(
            f"detector weights do not fit model.name={model_name}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(shapes)} of another shape (e.g. {shapes[:2]})",
            file=description,
            fix=DETECTOR_HINT,
        )
    model.load_state_dict(kept, strict=False)
    return WeightsReport(description, len(kept), skipped)
