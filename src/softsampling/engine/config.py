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

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from softsampling.errors import SoftSamplingError
from softsampling.io import check_input_file
from softsampling.parsing import parse_yaml

MODEL_NAMES = ("digits", "resnet50_fpn", "resnet50_fpn_v2")


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
    manifest: str | None = None  # curation manifest (default: found beside `train`); upper_bound and rpn_full_annotations read it


@dataclass
class ModelConfig:
    """Which detector to build. ``digits``: small CPU model; ``resnet50_fpn``: the paper's configuration."""

    name: str = "digits"  # digits | resnet50_fpn | resnet50_fpn_v2
    # ImageNet ResNet-50 weights: torchvision name (ResNet50_Weights.IMAGENET1K_V2) or local file
    backbone_weights: str | None = None
    # the whole detector: torchvision name (FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1) or local file;
    # the box predictor is re-initialised for the dataset's classes
    weights: str | None = None
    deformable_conv5: bool = False
    soft_nms: str | None = None  # None | gaussian | linear
    min_size: int | None = None  # resize (None: the builder's default)
    max_size: int | None = None
    # other torchvision FasterRCNN arguments for the builder, e.g. the paper's hard-negative setting
    # {rpn_post_nms_top_n_train: 6000} with strategy_params.hard_negative_topk=300
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
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise SoftSamplingError(
                f"unknown config key {where}{key!r}", fix=f"valid keys here: {', '.join(sorted(names))}"
            )
        sub = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}.get(key) if cls is RunConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise SoftSamplingError(f"config key {where}{key!r} must be a mapping", fix="see configs/*.yaml")
            kwargs[key] = _from_dict(sub, value, f"{where}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _safe_yaml(text: str) -> Any:
    return parse_yaml(text)  # no aliases, bounded nesting: see softsampling.parsing


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML config; ``None`` gives the defaults."""
    if path is None:
        return validate(RunConfig())
    path = Path(path)
    if not path.exists():
        raise SoftSamplingError("config file not found", file=path, fix="pass an existing YAML file, e.g. configs/digits.yaml")
    check_input_file(path, option="--config", what="YAML config file", allow_empty=True)  # a FIFO would block
    try:
        values = _safe_yaml(path.read_text(encoding="utf-8")) or {}
    except SoftSamplingError as exc:
        raise SoftSamplingError(exc.problem, file=path, record=exc.record, fix=exc.fix) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SoftSamplingError(f"file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path,
                                record=f"line {line}", fix="save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise SoftSamplingError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, record=where,
                                fix="correct the YAML syntax") from None
    if not isinstance(values, dict):
        raise SoftSamplingError("config must be a YAML mapping", file=path, fix="see configs/digits.yaml")
    try:
        return validate(_from_dict(RunConfig, values, ""))
    except SoftSamplingError as exc:
        raise SoftSamplingError(exc.problem, file=path, record=exc.record, fix=exc.fix) from None


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key=value`` strings (dotted keys, YAML-typed values) and validate."""
    values = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise SoftSamplingError(f"bad --set {item!r}", fix="write --set key=value, e.g. --set train.iterations=100")
        key, raw = item.split("=", 1)
        try:
            value = _safe_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; users mean a number
            try:
                value = float(value)
            except ValueError:
                pass
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise SoftSamplingError(f"unknown config key {key!r} in --set", fix="see configs/digits.yaml for the keys")
            node = node[part]
        if parts[-1] not in node and not (len(parts) == 2 and parts[0] == "strategy_params"):
            raise SoftSamplingError(f"unknown config key {key!r} in --set", fix="see configs/digits.yaml for the keys")
        node[parts[-1]] = value
    return validate(_from_dict(RunConfig, values, ""))


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
    """Check values users can get wrong; return ``cfg`` unchanged when fine."""
    def bad(key: str, msg: str, fix: str) -> SoftSamplingError:
        return SoftSamplingError(f"config {key}: {msg}", fix=fix)

    from softsampling.sampling import PRIOR_RULES, STRATEGIES

    if not isinstance(cfg.strategy_params, dict):
        raise bad("strategy_params", "must be a mapping", "e.g. --set strategy_params.a=0.25")
    try:
        composition = composition_of(cfg)
    except ValueError as exc:
        raise bad("strategy", str(exc), f"strategies: {', '.join(STRATEGIES)}; compose rules as a list, e.g. "
                  "--set strategy=[overlap_soft,pseudo_label]; parameters: docs/strategies.md") from None
    if cfg.sampling not in ("balanced", "all"):
        raise bad("sampling", f"unknown mode {cfg.sampling!r}", "use balanced or all")
    if cfg.normalization not in ("count", "weight_sum"):
        raise bad("normalization", f"unknown mode {cfg.normalization!r}", "use count or weight_sum")
    if cfg.data.format not in ("coco", "voc", "openimages"):
        raise bad("data.format", f"unknown format {cfg.data.format!r}", "use coco, voc or openimages")
    if cfg.model.name not in MODEL_NAMES:
        raise bad("model.name", f"unknown model {cfg.model.name!r}", f"use {', '.join(MODEL_NAMES)}")
    t = cfg.train
    for key in ("iterations", "batch_size", "checkpoint_every", "log_every"):
        v = getattr(t, key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise bad(f"train.{key}", f"must be a positive integer, got {v!r}", f"e.g. --set train.{key}=100")
    if not isinstance(t.lr, (int, float)) or t.lr <= 0:
        raise bad("train.lr", f"must be a positive number, got {t.lr!r}", "e.g. --set train.lr=0.02")
    if t.device not in ("auto", "cpu", "cuda"):
        raise bad("train.device", f"unknown device {t.device!r}", "use auto, cpu or cuda")
    needs_prior = [rule for rule in composition.rules if rule in PRIOR_RULES]
    if needs_prior and not cfg.prior_run:
        raise bad("prior_run", f"{needs_prior[0]} needs a prior run (the round-one detector)",
                  "train a baseline first, then --set prior_run=RUN_DIR")
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from softsampling.io import atomic_write

    with atomic_write(path) as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
