"""Run configuration: dataclasses, YAML files and ``--set key=value`` overrides.

A run is fully described by one :class:`RunConfig`. It is read from a YAML
file, overridden from the command line with dotted keys, validated, and the
resolved result is written next to the run's outputs (``config.yaml``).

Example:
    >>> cfg = RunConfig()
    >>> cfg = apply_overrides(cfg, ["strategy=overlap_soft", "train.iterations=50", "strategy_params.a=0.3"])
    >>> cfg.strategy, cfg.train.iterations, cfg.strategy_params
    ('overlap_soft', 50, {'a': 0.3})
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from softsampling.errors import SoftSamplingError
from softsampling.io import check_input_file
from softsampling.parsing import parse_yaml


@dataclass
class DataConfig:
    """Where the training data lives. Paths are relative to the current directory."""

    format: str = "coco"  # coco | voc | openimages
    train: str = ""  # annotations (COCO json, VOC20xx folder, Open Images boxes csv)
    val: str | None = None  # optional validation annotations, evaluated at the end of training
    images: str | None = None  # image root of `train` (default: the reader's guess)
    val_images: str | None = None  # image root of `val`
    split: str = "trainval"  # VOC image set of `train`
    val_split: str = "val"  # VOC image set of `val`
    test: str | None = None  # test annotations, for `softsampling evaluate --run RUN --split test`
    test_images: str | None = None  # image root of `test`
    test_split: str = "test"  # VOC image set of `test`
    manifest: str | None = (
        None  # curation manifest (default: found beside `train`); upper_bound and rpn_full_annotations read it
    )


@dataclass
class ModelConfig:
    """Which detector to build. ``digits``: small CPU model; ``resnet50_fpn``: the paper's configuration.

    One-stage: ``digits_retinanet``, ``digits_fcos`` (small CPU models), ``retinanet_resnet50_fpn``,
    ``fcos_resnet50_fpn`` (torchvision's, built without weights).
    """

    # digits | resnet50_fpn | resnet50_fpn_v2 | digits_retinanet | digits_fcos | retinanet_resnet50_fpn
    # | fcos_resnet50_fpn
    name: str = "digits"
    # ImageNet ResNet-50 weights: torchvision name (ResNet50_Weights.IMAGENET1K_V2) or local file
    backbone_weights: str | None = None
    # the whole detector: torchvision name (FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1) or local file;
    # the box predictor is re-initialised for the dataset's classes
    weights: str | None = None
    deformable_conv5: bool = False
    soft_nms: str | None = None  # None | gaussian | linear
    min_size: int | None = None  # resize (None: the builder's default)
    max_size: int | None = None
    # other torchvision FasterRCNN (one-stage models: RetinaNet / FCOS) arguments for the builder, e.g. the paper's
    # hard-negative setting {rpn_post_nms_top_n_train: 6000} with strategy_params.hard_negative_topk=300
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation. ``batch_size`` is the global batch (split across processes under torchrun)."""

    iterations: int = 600
    batch_size: int = 8
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 50
    lr_steps: list[float] = field(default_factory=lambda: [0.8])  # fractions of `iterations`, lr x0.1 at each
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # mixed precision: torch.autocast + GradScaler (CUDA only)
    cudnn_benchmark: bool = False  # let cuDNN pick the fastest conv algorithms (CUDA only; not deterministic)
    channels_last: bool = False  # NHWC memory format for the model, faster convs with amp (CUDA only)
    deterministic: bool = True  # deterministic algorithms (CPU runs are then bit-reproducible)
    threads: int | None = None  # torch intra-op threads (None: torch default)


@dataclass
class RunConfig:
    """Everything that determines a training run."""

    seed: int = 0
    # a name in softsampling.sampling.STRATEGIES or a list of rules, e.g. [overlap_soft, pseudo_label]
    strategy: str | list[str] = "baseline"
    strategy_params: dict[str, Any] = field(default_factory=dict)  # a, b, c, min_overlap, fg_iou, tau, ...
    sampling: str = "balanced"  # balanced | all
    normalization: str = "count"  # count | weight_sum
    prior_run: str | None = None  # score_soft / pseudo_label: the round-one run (prior, teacher)
    rpn_full_annotations: bool = False  # RPN trains on annotated + dropped boxes (paper's ablation; needs the manifest)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short stable hash of the config (keys sorted), for naming and cache keys.

        The ``data.test*`` keys are left out (test data never changes the trained
        model), and so is ``model.options`` while empty, so runs made before these
        keys existed keep their digest; likewise ``model.weights`` while null and
        ``train.cudnn_benchmark`` / ``train.channels_last`` while false.
        """
        values = self.to_dict()
        for key in ("test", "test_images", "test_split"):
            values["data"].pop(key)
        if not values["model"]["options"]:
            values["model"].pop("options")
        if values["model"]["weights"] is None:
            values["model"].pop("weights")
        for key in ("cudnn_benchmark", "channels_last"):  # speed settings added later; off by default
            if not values["train"][key]:
                values["train"].pop(key)
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``values``; whole-number floats (``1e3``) become ints for int fields.

    Types and ranges are checked by :func:`validate`, not here.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise SoftSamplingError(
                f"unknown config key {where}{key!r}", fix=f"valid keys here: {', '.join(sorted(names))}"
            )
        sub = _SECTIONS.get(key) if cls is RunConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise SoftSamplingError(f"config key {where}{key!r} must be a mapping", fix="see configs/*.yaml")
            kwargs[key] = _from_dict(sub, value, f"{where}{key}.")
        elif int in _allowed_types(hints[key]) and isinstance(value, float) and value.is_integer():
            kwargs[key] = int(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any], where: str = "") -> RunConfig:
    """A validated :class:`RunConfig` from its ``to_dict()`` form (e.g. the config saved in a checkpoint)."""
    if not isinstance(values, dict):
        raise SoftSamplingError(
            f"config {where}must be a mapping, got {type(values).__name__}", fix="see configs/*.yaml"
        )
    return validate(_from_dict(RunConfig, values, where))


def _safe_yaml(text: str) -> Any:
    return parse_yaml(text)  # no aliases, bounded nesting: see softsampling.parsing


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML config; ``None`` gives the defaults."""
    if path is None:
        return validate(RunConfig())
    path = Path(path)
    if not path.exists():
        raise SoftSamplingError(
            "config file not found", file=path, fix="pass an existing YAML file, e.g. configs/digits.yaml"
        )
    check_input_file(path, option="--config", what="YAML config file", allow_empty=True)  # a FIFO would block
    try:
        values = _safe_yaml(path.read_text(encoding="utf-8")) or {}
    except SoftSamplingError as exc:
        raise SoftSamplingError(exc.problem, file=path, record=exc.record, fix=exc.fix) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SoftSamplingError(
            f"file is not UTF-8 text ({exc.reason} at byte {exc.start})",
            file=path,
            record=f"line {line}",
            fix="save the config as UTF-8",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise SoftSamplingError(
            f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, record=where, fix="correct the YAML syntax"
        ) from None
    if not isinstance(values, dict):
        raise SoftSamplingError("config must be a YAML mapping", file=path, fix="see configs/digits.yaml")
    try:
        return validate(_from_dict(RunConfig, values, ""))
    except SoftSamplingError as exc:
        raise SoftSamplingError(exc.problem, file=path, record=exc.record, fix=exc.fix) from None


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# mappings whose keys are free (checked by validate): --set strategy_params.a=0.3, --set model.options.KEY=VALUE
_FREE_MAPPINGS = (("strategy_params",), ("model", "options"))
_NULL_WORDS = ("", "null", "Null", "NULL", "~")


def _allowed_types(hint: Any) -> tuple[Any, ...]:
    """``int | None`` -> (int, NoneType); ``list[float]`` -> (list[float],); ``str`` -> (str,)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return typing.get_args(hint)
    return (hint,)


def _field_hint(key: str) -> Any:
    """The type of dotted config key ``key`` (``train.lr`` -> float); None for keys inside free mappings."""
    parts = key.split(".")
    cls: type | None = RunConfig
    for part in parts[:-1]:
        cls = _SECTIONS.get(part) if cls is RunConfig else None
        if cls is None:
            return None
    return typing.get_type_hints(cls).get(parts[-1])


def _unknown_key(key: str, valid: list[str]) -> SoftSamplingError:
    return SoftSamplingError(f"unknown config key {key!r} in --set", fix=f"valid keys here: {', '.join(sorted(valid))}")


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key=value`` strings (dotted keys, YAML-typed values) and validate.

    Text keys (paths, names) take the value as written, so ``data.train=2007``
    is the file ``2007``; ``null`` (or nothing, for optional keys) means None.
    """
    values = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise SoftSamplingError(f"bad --set {item!r}", fix="write --set key=value, e.g. --set train.iterations=100")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        node = values
        for depth, part in enumerate(parts[:-1]):
            if part not in node or not isinstance(node[part], dict):
                prefix = ".".join(parts[:depth])
                raise _unknown_key(key, [f"{prefix}.{k}" if prefix else k for k in node])
            node = node[part]
        free = tuple(parts[:-1]) in _FREE_MAPPINGS
        if parts[-1] not in node and not free:
            prefix = ".".join(parts[:-1])
            raise _unknown_key(key, [f"{prefix}.{k}" if prefix else k for k in node])
        allowed = () if free else _allowed_types(_field_hint(key))
        as_list = any(typing.get_origin(t) is list for t in allowed) and raw.strip().startswith("[")
        if str in allowed and not as_list and not (type(None) in allowed and raw.strip() in _NULL_WORDS):
            node[parts[-1]] = raw  # text as written (a list-typed key such as strategy may take [a, b])
            continue
        try:
            value = _safe_yaml(raw) if raw.strip() != "" else None
        except yaml.YAMLError:
            value = raw
        except SoftSamplingError as exc:  # a YAML alias
            raise SoftSamplingError(f"--set {key}: {exc.problem}", fix=exc.fix) from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; users mean a number
            with contextlib.suppress(ValueError):
                value = float(value)
        node[parts[-1]] = value
    return config_from_dict(values)


def _between(
    low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False
) -> tuple[Callable[[float], bool], str]:
    """A range check and its description, e.g. ``_between(0, 1, high_open=True)`` -> "in [0, 1)"."""

    def check(v: float) -> bool:
        above = low is None or (v > low if low_open else v >= low)
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    if high is None:
        return check, f"{'>' if low_open else '>='} {low}"
    return check, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


INT64_MAX = 2**63 - 1
_POSITIVE_INT = (lambda v: v >= 1, "a positive integer")
# Numeric ranges by dotted key (checked after the types; None values of optional keys are not checked).
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "seed": _between(0, 2**32 - 1),
    "model.min_size": _between(1, 16384),
    "model.max_size": _between(1, 16384),
    "train.iterations": _POSITIVE_INT,
    "train.batch_size": _between(1, 65536),
    "train.lr": (lambda v: v > 0, "a positive number"),
    "train.momentum": _between(0, 1, high_open=True),
    "train.weight_decay": _between(0, None),
    "train.warmup_iterations": _between(0, None),
    "train.lr_steps": _between(0, 1),
    "train.checkpoint_every": _POSITIVE_INT,
    "train.log_every": _POSITIVE_INT,
    "train.threads": _between(1, 4096),
}
# Parameters of the RoI head that ride in strategy_params for every strategy (see model.use_strategy).
HEAD_PARAMS: dict[str, tuple[type, tuple[Callable[[float], bool], str]]] = {
    "batch_size_per_image": (int, _between(1, 65536)),
    "positive_fraction": (float, _between(0, 1, low_open=True)),
    "hard_negative_topk": (int, _between(0, None)),
}
# Given by the engine (the prior run and its thresholds), never by the config.
ENGINE_PARAMS = ("prior", "thresholds")


def _type_name(hint: Any) -> str:
    names = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text", type(None): "null"}
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(typing.get_args(hint)[0]).replace('a ', '', 1)}s"
    if typing.get_origin(hint) is dict:
        return "a mapping"
    return names.get(hint, str(hint))


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is list:
        return isinstance(value, list) and all(_is_instance(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= INT64_MAX
    return isinstance(value, hint)


def _check_types(obj: Any, where: str) -> None:
    """Every field of dataclass ``obj`` holds a value of its declared type (numbers finite, ints in int64)."""
    for f in dataclasses.fields(obj):
        key, value = f"{where}{f.name}", getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_types(value, f"{key}.")
            continue
        allowed = _allowed_types(typing.get_type_hints(type(obj))[f.name])
        if int in allowed and isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
            raise SoftSamplingError(
                f"config {key}: {value} is out of range (more than 2**63 - 1)",
                fix=f"e.g. --set {key}={_example(f.default, f.default_factory)}",
            )
        if not any(_is_instance(value, t) for t in allowed):
            want = " or ".join(_type_name(t) for t in allowed)
            got = f"{value!r} ({type(value).__name__})" if not isinstance(value, (int, float)) else repr(value)
            raise SoftSamplingError(
                f"config {key}: must be {want}, got {got}",
                fix=f"e.g. --set {key}={_example(f.default, f.default_factory)}",
            )
        check = RANGES.get(key)
        if check is not None and value is not None:
            for v in value if isinstance(value, list) else [value]:
                if not check[0](v):
                    raise SoftSamplingError(
                        f"config {key}: must be {_plain(check[1])}, got {v!r}",
                        fix=f"use {check[1]}" if check[1][0].isalpha() else f"choose a value {check[1]}",
                    )


def _plain(desc: str) -> str:
    """ "in [0, 1]" / ">= 0" / "a positive integer" as it reads after "must be"."""
    return desc if desc[0].isalpha() else desc.replace(">=", "at least", 1).replace(">", "above", 1)


def _example(default: Any, factory: Any) -> str:
    value = factory() if default is dataclasses.MISSING else default
    return "null" if value is None else json.dumps(value).replace(" ", "")


def _check_strategy_params(cfg: RunConfig) -> None:
    """Each of ``strategy_params`` has the type of its default; the RoI-head options their ranges.

    Names and ranges of the rules' own parameters are checked by
    :func:`softsampling.sampling.resolve_strategy` (see :func:`composition_of`).
    """
    from softsampling.sampling import parameter_defaults
    from softsampling.sampling.rules import REQUIRED

    def bad(msg: str, fix: str) -> SoftSamplingError:
        return SoftSamplingError(f"config strategy_params: {msg}", fix=fix)

    given = [k for k in ENGINE_PARAMS if k in cfg.strategy_params]
    if given:
        raise bad(
            f"{given[0]!r} is set by the engine, not the config",
            "remove it; score_soft and pseudo_label read their round-one run from prior_run",
        )
    try:
        defaults = parameter_defaults(cfg.strategy)
    except (ValueError, KeyError, TypeError):
        return  # an unknown strategy: composition_of words the error
    for key, value in cfg.strategy_params.items():
        if key in HEAD_PARAMS:
            kind, (check, desc) = HEAD_PARAMS[key]
            if not _is_instance(value, kind) or not check(value):
                raise bad(f"{key} must be {_type_name(kind)} {desc}, got {value!r}", f"choose {key} {desc}")
            continue
        default = defaults.get(key, REQUIRED)
        kind = type(default) if isinstance(default, (bool, str)) else float  # numbers, None and REQUIRED: a number
        if value is None and default is None:
            continue
        if not _is_instance(value, kind):
            raise bad(
                f"{key} must be {_type_name(kind)}, got {value!r}",
                f"see `{strategy_label(cfg.strategy)}` in docs/strategies.md",
            )


def strategy_label(strategy: Any) -> str:
    return "+".join(map(str, strategy)) if isinstance(strategy, list) else str(strategy)


# use_strategy's own RoI-head options, also accepted in strategy_params (not rule parameters)
HEAD_OPTIONS = ("batch_size_per_image", "positive_fraction")


def composition_of(cfg: RunConfig) -> Any:
    """``cfg``'s strategy resolved against the rule table (a :class:`softsampling.sampling.Composition`).

    Raises ``ValueError`` (unknown rule or parameter, value out of range); :func:`validate` words it for users.
    """
    from softsampling.sampling import resolve_strategy  # the rule table imports torch

    params = {k: v for k, v in cfg.strategy_params.items() if k not in HEAD_OPTIONS}
    return resolve_strategy(cfg.strategy, params)


def validate(cfg: RunConfig) -> RunConfig:
    """Check every value: its declared type, its range and its choices; return ``cfg`` unchanged when fine."""

    def bad(key: str, msg: str, fix: str) -> SoftSamplingError:
        return SoftSamplingError(f"config {key}: {msg}", fix=fix)

    # The valid names come from the modules that own them (imported here: they load torch, a config file does not).
    from softsampling.data.formats import FORMATS
    from softsampling.model.builders import MODEL_NAMES, ONE_STAGE_MODEL_NAMES
    from softsampling.model.soft_nms import METHODS as SOFT_NMS_METHODS
    from softsampling.sampling import NORMALIZATIONS, PRIOR_RULES, SAMPLING_MODES, STRATEGIES

    _check_types(cfg, "")
    if not isinstance(cfg.strategy_params, dict):
        raise bad("strategy_params", "must be a mapping", "e.g. --set strategy_params.a=0.25")
    _check_strategy_params(cfg)
    try:
        composition = composition_of(cfg)
    except ValueError as exc:
        raise bad(
            "strategy",
            str(exc),
            f"strategies: {', '.join(STRATEGIES)}; compose rules as a list, e.g. "
            "--set strategy=[overlap_soft,pseudo_label]; parameters: docs/strategies.md",
        ) from None
    if cfg.sampling not in SAMPLING_MODES:
        raise bad("sampling", f"unknown mode {cfg.sampling!r}", f"use {_one_of(SAMPLING_MODES)}")
    if cfg.normalization not in NORMALIZATIONS:
        raise bad("normalization", f"unknown mode {cfg.normalization!r}", f"use {_one_of(NORMALIZATIONS)}")
    if cfg.data.format not in FORMATS:
        raise bad("data.format", f"unknown format {cfg.data.format!r}", f"use {_one_of(FORMATS)}")
    if cfg.model.name not in MODEL_NAMES:
        raise bad("model.name", f"unknown model {cfg.model.name!r}", f"use {', '.join(MODEL_NAMES)}")
    try:
        composition.check_detector("one_stage" if cfg.model.name in ONE_STAGE_MODEL_NAMES else "two_stage")
    except ValueError as exc:
        raise bad(
            "strategy", str(exc), "choose another model.name or strategy (docs/strategies.md, One-stage detectors)"
        ) from None
    if cfg.model.soft_nms is not None and cfg.model.soft_nms not in SOFT_NMS_METHODS:
        raise bad(
            "model.soft_nms", f"unknown method {cfg.model.soft_nms!r}", f"use {_one_of(('null', *SOFT_NMS_METHODS))}"
        )
    if cfg.train.device not in ("auto", "cpu", "cuda"):
        raise bad("train.device", f"unknown device {cfg.train.device!r}", "use auto, cpu or cuda")
    needs_prior = [rule for rule in composition.rules if rule in PRIOR_RULES]
    if needs_prior and not cfg.prior_run:
        raise bad(
            "prior_run",
            f"{needs_prior[0]} needs a prior run (the round-one detector)",
            "train a baseline first, then --set prior_run=RUN_DIR",
        )
    if cfg.model.options:
        _check_model_options(cfg)
    return cfg


def _one_of(names: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _check_model_options(cfg: RunConfig) -> None:
    """``model.options`` names only arguments the builder passes on (the detector class and its transform)."""
    import inspect

    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from softsampling.model import build_digits_model, build_paper_model
    from softsampling.model.builders import HEAD_NORMS, ONE_STAGE_BUILDERS

    name = cfg.model.name
    builder = ONE_STAGE_BUILDERS.get(name, build_digits_model if name == "digits" else build_paper_model)
    detector = FCOS if "fcos" in name else RetinaNet if "retinanet" in name else FasterRCNN
    owned = {
        "self",
        "num_classes",
        "backbone",
        "backbone_weights",
        "deformable_conv5",
        "soft_nms",
        "min_size",
        "max_size",
        "faster_rcnn_kwargs",
        "kwargs",
        "weights",
        "weights_backbone",
        "progress",
        "retinanet_kwargs",
        "fcos_kwargs",
        "trainable_backbone_layers",
    }
    modules = ("_generator", "_pool", "_head", "_predictor")  # objects, not config values
    defaults: dict[str, Any] = {}
    for fn in (GeneralizedRCNNTransform.__init__, detector.__init__, builder):  # the builder's defaults win
        defaults.update(
            {
                n: p.default
                for n, p in inspect.signature(fn).parameters.items()
                if not n.startswith("_") and not n.endswith(modules) and n not in owned
            }
        )
    unknown = sorted(set(cfg.model.options) - set(defaults))
    if unknown:
        raise SoftSamplingError(
            f"config model.options: unknown option(s) {unknown} for model {cfg.model.name!r}",
            fix=f"valid options: {', '.join(sorted(defaults))} (sizes: model.min_size, model.max_size)",
        )
    for key, value in cfg.model.options.items():
        default = defaults[key]
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not _is_instance(value, float):
            raise SoftSamplingError(
                f"config model.options.{key}: must be a finite number, got {value!r}",
                fix=f"e.g. --set model.options.{key}={default}",
            )
        if isinstance(default, (tuple, list)) and not isinstance(value, list):
            raise SoftSamplingError(
                f"config model.options.{key}: must be a list, got {value!r}",
                fix=f"e.g. --set model.options.{key}={json.dumps(list(default))}",
            )
        if key == "head_norm" and value not in HEAD_NORMS:
            raise SoftSamplingError(
                f"config model.options.head_norm: must be one of {', '.join(HEAD_NORMS)}, got {value!r}",
                fix="e.g. --set model.options.head_norm=group",
            )


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from softsampling.io import atomic_write

    with atomic_write(path) as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
