"""Presets of ``softsampling reproduce``: which data, drop rates, config and budget.

A preset is a plain frozen dataclass; the command line may override its
seeds, and (for ``voc``) must give the dataset location. Three are shipped:

- ``digits`` (default): the built-in digit-scene benchmark with the digit
  module's default sizes, drop rates 30/40/50%, iterations from
  ``configs/digits.yaml``. About 30 minutes per seed on 2 CPU cores.
- ``smoke``: a tiny digit set (40 train / 10 val / 20 test images), one drop
  rate (50%), a handful of iterations; every method and every output, in
  well under 3 minutes on 2 cores. Used by CI.
- ``voc``: the paper's configuration (``configs/voc.yaml``, ResNet-50-FPN) on
  PASCAL VOC 2007, trainval -> test; needs ``--voc-root`` and a GPU.

Example:
    >>> p = get_preset("smoke")
    >>> p.rates, p.dataset, p.digits.train
    ((0.5,), 'digits', 40)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from softsampling.errors import SoftSamplingError

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))  # 0.0 .. 0.9 (Fig. 2)


@dataclass(frozen=True)
class DigitsData:
    """Arguments of :func:`softsampling.data.digits.make_digit_scenes` (image counts, side in pixels, seed)."""

    train: int
    val: int
    test: int
    size: int
    seed: int = 0


def digit_defaults() -> DigitsData:
    """The digit module's own defaults (so the preset follows the benchmark when it changes)."""
    from softsampling.data.digits import make_digit_scenes

    params = inspect.signature(make_digit_scenes).parameters
    return DigitsData(train=params["train"].default, val=params["val"].default, test=params["test"].default,
                      size=params["size"].default, seed=0)


@dataclass(frozen=True)
class Preset:
    """One reproduction study.

    - ``config``: YAML run config every cell starts from (a name in ``configs/`` or a path);
    - ``overrides``: ``key=value`` strings applied to every cell after the YAML;
    - ``rates``: drop rates of the curated training sets (each also gets the full set);
    - ``dataset``: ``digits`` (generated into OUT/data) or ``voc`` (read from ``--voc-root``);
    - ``train_eval_images``: training images scored for Fig. 2's train panel (``None``: all);
    - ``overlap_images``: training images whose proposals Fig. 3 analyses;
    - ``example_images``: test images shown in Fig. 5;
    - ``eval_batch_size``: images per forward pass at evaluation.
    """

    name: str
    description: str
    config: str
    rates: tuple[float, ...]
    dataset: str
    seeds: tuple[int, ...] = (0,)
    digits: DigitsData | None = None
    overrides: tuple[str, ...] = ()
    sweep_thresholds: tuple[float, ...] = SWEEP_THRESHOLDS
    train_eval_images: int | None = 500
    overlap_images: int = 200
    example_images: int = 4
    eval_batch_size: int = 8
    budget: str = ""
    voc_root: str | None = None

    def config_path(self) -> Path:
        """The YAML file: an existing path as given, else ``configs/<config>`` of the source tree."""
        given = Path(self.config)
        if given.exists():
            return given
        for candidate in (CONFIG_DIR / self.config, Path("configs") / self.config):
            if candidate.exists():
                return candidate
        raise SoftSamplingError(f"config {self.config!r} of preset {self.name!r} not found", file=CONFIG_DIR / self.config,
                                fix="run from the softsampling source tree or pass --config PATH")


def digits_preset() -> Preset:
    return Preset(
        name="digits",
        description="built-in digit scenes (real MNIST digits + unlabeled clutter), 30/40/50% drop",
        config="digits.yaml",
        rates=(0.3, 0.4, 0.5),
        dataset="digits",
        digits=digit_defaults(),
        overrides=("train.threads=1",),
        train_eval_images=500,
        overlap_images=200,
        budget="about 30 minutes per seed on 2 CPU cores (two runs at a time)",
    )


def smoke_preset() -> Preset:
    return Preset(
        name="smoke",
        description="tiny digit set, one drop rate, a few iterations: checks every output (CI)",
        config="digits.yaml",
        rates=(0.5,),
        dataset="digits",
        digits=DigitsData(train=40, val=10, test=20, size=128, seed=0),
        overrides=("train.threads=1", "train.iterations=6", "train.batch_size=2", "train.warmup_iterations=2",
                   "train.checkpoint_every=6", "train.log_every=2", "data.val=null"),
        train_eval_images=10,
        overlap_images=10,
        example_images=3,
        eval_batch_size=10,
        budget="under 3 minutes on 2 CPU cores",
    )


def voc_preset(voc_root: str | None = None, backbone_weights: str | None = None) -> Preset:
    overrides: tuple[str, ...] = ()
    if backbone_weights:
        from softsampling.model.weights import is_weights_name

        value = backbone_weights if is_weights_name(backbone_weights) else Path(backbone_weights).resolve()
        overrides = (f"model.backbone_weights={value}",)
    return Preset(
        name="voc",
        description="the paper's configuration on PASCAL VOC 2007 (trainval -> test), ResNet-50-FPN; needs a GPU",
        config="voc.yaml",
        rates=(0.3, 0.4, 0.5),
        dataset="voc",
        overrides=overrides,
        train_eval_images=500,
        overlap_images=200,
        budget="about a day per seed on one GPU (13 runs of 20k iterations); use --nproc-per-node with several GPUs",
        voc_root=None if voc_root is None else str(Path(voc_root).resolve()),
    )


PRESET_NAMES = ("digits", "smoke", "voc")


def get_preset(name: str, *, voc_root: str | None = None, backbone_weights: str | None = None) -> Preset:
    """The preset called ``name``; ``voc`` needs ``voc_root`` (a ``VOCdevkit/VOC2007`` folder)."""
    if name == "digits":
        return digits_preset()
    if name == "smoke":
        return smoke_preset()
    if name == "voc":
        if not voc_root:
            raise SoftSamplingError("the voc preset needs the VOC 2007 folder",
                                    fix="pass --voc-root PATH/VOCdevkit/VOC2007 (with Annotations, ImageSets, JPEGImages)")
        if not Path(voc_root).is_dir():
            raise SoftSamplingError("VOC folder not found", file=voc_root, fix="pass --voc-root PATH/VOCdevkit/VOC2007")
        from softsampling.model.builders import RESNET50_WEIGHTS_HINT
        from softsampling.model.weights import is_weights_name

        if backbone_weights and not is_weights_name(backbone_weights) and not Path(backbone_weights).is_file():
            raise SoftSamplingError("backbone weights file not found", file=backbone_weights, fix=RESNET50_WEIGHTS_HINT)
        return voc_preset(voc_root, backbone_weights)
    raise SoftSamplingError(f"unknown preset {name!r}", fix=f"use one of {', '.join(PRESET_NAMES)}")
