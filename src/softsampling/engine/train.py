"""The training loop: one function, :func:`train`, readable top to bottom.

Reproducibility and resume:
- the global batch of iteration ``i`` is a pure function of ``(seed, i)``
  (a seeded permutation per epoch), so a resumed run sees the same images;
- checkpoints hold model, optimizer, scheduler, iteration and the torch RNG
  state (used by torchvision's RoI/anchor samplers); on CPU with
  ``train.deterministic`` a killed-and-resumed run ends bit-identical to an
  uninterrupted one;
- under ``torchrun`` each process takes an equal slice of the same global
  batch, DDP averages gradients, and only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from softsampling.data.formats import image_check_options, load_dataset
from softsampling.engine.build import build_model
from softsampling.engine.checkpoint import FINAL, LAST, RESUME_KEYS, load_checkpoint, load_state, save_checkpoint
from softsampling.engine.config import RunConfig, composition_of, save_config
from softsampling.engine.data import DetectionTrainingSet, LabelMap, collate, dropped_by_image
from softsampling.engine.device import pick_device
from softsampling.engine.distributed import distributed_context
from softsampling.engine.faults import kill_point
from softsampling.engine.gpu import apply_gpu_settings, autocast, check_gpu_settings, grad_scaler
from softsampling.engine.splits import split_dataset
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write, check_can_write, remove_stale_temp_files, write_json
from softsampling.sampling import strategy_name
from softsampling.structures.records import DetectionDataset

if TYPE_CHECKING:
    from softsampling.model.one_stage import OneStageStrategy
    from softsampling.model.roi_heads import SoftSamplingRoIHeads


# --------------------------------------------------------------------------- helpers
def _strategy_head(model: torch.nn.Module) -> SoftSamplingRoIHeads | OneStageStrategy:
    """The module whose strategy rules read the training progress: ``roi_heads`` (two-stage) or ``head``."""
    from softsampling.model.one_stage import OneStageStrategy
    from softsampling.model.roi_heads import SoftSamplingRoIHeads

    head = model.get_submodule("roi_heads" if hasattr(model, "roi_heads") else "head")
    if not isinstance(head, (SoftSamplingRoIHeads, OneStageStrategy)):
        raise TypeError(f"{type(head).__name__} has no strategy installed (build the model with build_model)")
    return head


def global_batch(seed: int, iteration: int, batch_size: int, num_images: int) -> np.ndarray:
    """Image rows of the global batch at ``iteration``: consecutive slices of per-epoch seeded permutations."""
    start = iteration * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_images)
        perm = np.random.default_rng([seed, epoch]).permutation(num_images)
        out.extend(perm[offset : offset + batch_size - len(out)].tolist())
    return np.array(out, dtype=np.int64)


def lr_factor(iteration: int, cfg: RunConfig) -> float:
    """Linear warm-up, then x0.1 at each fraction in ``train.lr_steps``."""
    t = cfg.train
    warm = min(1.0, (iteration + 1) / t.warmup_iterations) if t.warmup_iterations > 0 else 1.0
    steps = sum(iteration >= int(s * t.iterations) for s in t.lr_steps)
    return warm * (0.1**steps)


def load_training_data(
    cfg: RunConfig, *, allow_outside_root: bool = False
) -> tuple[DetectionDataset, LabelMap, dict[int, np.ndarray] | None]:
    """Read the training annotations (images checked, see :func:`image_check_options`),
    and the curation manifest when the run needs the dropped boxes."""
    options = image_check_options(cfg.data.format, cfg.data.images, allow_outside_root)
    if cfg.data.format == "voc":
        options["split"] = cfg.data.split
    ds = load_dataset(cfg.data.train, cfg.data.format, option="data.train", **options)
    label_map = LabelMap.from_dataset(ds)
    dropped = None
    if "upper_bound" in _rules(cfg) or cfg.rpn_full_annotations:
        from softsampling.data.curate import find_manifest, read_manifest

        manifest_path = Path(cfg.data.manifest) if cfg.data.manifest else find_manifest(Path(cfg.data.train))
        if manifest_path is None or not manifest_path.exists():
            need = "the upper_bound rule" if "upper_bound" in _rules(cfg) else "rpn_full_annotations"
            raise SoftSamplingError(
                f"{need} needs the curation manifest (the list of dropped boxes)",
                file=cfg.data.train,
                fix="curate with `softsampling curate` (it writes the manifest) or --set data.manifest=PATH",
            )
        manifest = read_manifest(manifest_path)
        dropped = dropped_by_image(ds, list(manifest.image_ids), manifest.boxes)
    return ds, label_map, dropped


def _rules(cfg: RunConfig) -> tuple[str, ...]:
    return composition_of(cfg).rules


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, before_iteration: int) -> None:
    """On resume, forget log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if _iteration_of(line) <= before_iteration
    ]
    with atomic_write(path) as f:
        f.write("".join(line + "\n" for line in keep))


def _iteration_of(line: str) -> float:
    """The iteration a metrics line logs; +inf (dropped on resume) for a line torn by a kill."""
    try:
        return json.loads(line).get("iteration", -1)
    except (json.JSONDecodeError, AttributeError):
        return math.inf


def evaluate_split(
    model: torch.nn.Module,
    cfg: RunConfig,
    label_map: LabelMap,
    split: str,
    device: torch.device,
    *,
    allow_outside_root: bool = False,
) -> dict[str, Any]:
    """VOC-area mAP@0.5 of ``model`` on a split of the run's data (model left in train mode afterwards)."""
    from softsampling.engine.predict import predict_dataset
    from softsampling.evaluation.voc_metric import voc_ap

    ds = split_dataset(cfg, split, allow_outside_root=allow_outside_root)
    was_training = model.training
    model.eval()
    try:
        dets = predict_dataset(model, ds, label_map, device=device)
    finally:
        model.train(was_training)
    return voc_ap(ds, dets)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in ("data", "model", "train"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Keys that do not change what is trained: resuming with other values is fine.
RUNTIME_KEYS = (
    "train.device",
    "train.threads",
    "train.checkpoint_every",
    "train.log_every",
    "data.test",
    "data.test_images",
    "data.test_split",
)


def config_changes(state: dict[str, Any], cfg: RunConfig, path: Path, *, allow: bool) -> dict[str, list[Any]]:
    """Keys whose value differs between the checkpoint's config and ``cfg``: {key: [saved, now]}.

    Refused unless ``allow``; keys of :data:`RUNTIME_KEYS` are always allowed.
    A checkpoint that holds only the digest (older versions) reports ``{"config_digest": [...]}``.
    """
    saved = state.get("config")
    if isinstance(saved, dict):
        before, now = _flatten(saved), _flatten(cfg.to_dict())
        changed = {
            k: [before.get(k), now.get(k)]
            for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k) and k not in RUNTIME_KEYS
        }
    elif "config_digest" in state and state["config_digest"] != cfg.digest():
        changed = {"config_digest": [state["config_digest"], cfg.digest()]}
    else:
        changed = {}
    if changed and not allow:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changed.items())[:5])
        raise SoftSamplingError(
            f"the config differs from the one this checkpoint was trained with ({shown})",
            file=path,
            fix="undo the change (config.yaml or --set), or pass --allow-config-change "
            "to continue with it (recorded in metrics.jsonl)",
        )
    return changed


# --------------------------------------------------------------------------- main loop
def train(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    allow_outside_root: bool = False,
    allow_config_change: bool = False,
    report: bool = True,
) -> Path:
    """Train a detector as ``cfg`` says; write everything under ``out_dir``; return the final weights' path.

    The data (annotations and image headers) is checked before ``out_dir`` is
    created, so bad input leaves no run folder behind; and if the run fails
    (or is interrupted) before its first checkpoint, what it wrote is removed
    again (a folder it created, or the files it added to an existing one), so
    a failed start never leaves a half run. ``allow_outside_root`` lets
    annotation files name images outside their image folder. ``report``
    prints the final validation mAP (``progress`` only drives the bar). On resume, a
    config that differs from the one the checkpoint was trained with is refused
    unless ``allow_config_change`` (then the change is logged in metrics.jsonl).
    """
    out_dir = Path(out_dir)
    before = set(os.listdir(out_dir)) if out_dir.is_dir() else None
    try:
        return _train(
            cfg,
            out_dir,
            resume=resume,
            progress=progress,
            allow_outside_root=allow_outside_root,
            allow_config_change=allow_config_change,
            report=report,
        )
    except BaseException:
        if distributed_context()[0] == 0 and not (out_dir / LAST).exists():
            _remove_failed_start(out_dir, before)
        raise


def _remove_failed_start(out_dir: Path, before: set[str] | None) -> None:
    """Undo a start that failed before the first checkpoint: nothing of it stays to be mistaken for a run."""
    if before is None:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for name in set(os.listdir(out_dir)) - before if out_dir.is_dir() else ():
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _train(
    cfg: RunConfig,
    out_dir: Path,
    *,
    resume: bool,
    progress: bool,
    allow_outside_root: bool,
    allow_config_change: bool,
    report: bool,
) -> Path:
    rank, world = distributed_context()
    is_main = rank == 0
    t = cfg.train
    if t.batch_size % world != 0:
        raise SoftSamplingError(
            f"train.batch_size={t.batch_size} is not divisible by {world} processes",
            fix="choose a global batch size that is a multiple of the process count",
        )
    last_path = out_dir / LAST
    if not resume and (last_path.exists() or (out_dir / FINAL).exists()):
        raise SoftSamplingError(
            "run folder already holds a training run",
            file=out_dir,
            fix="pass --resume to continue it, or choose another --out",
        )
    if is_main:
        check_can_write(out_dir / LAST, force=True)  # a writable folder (or one we can create), before any work

    device = pick_device(t.device)
    check_gpu_settings(t, device)
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(cfg.seed + rank)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    ds, label_map, dropped = load_training_data(cfg, allow_outside_root=allow_outside_root)
    if is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SoftSamplingError(
                f"cannot create the run folder ({exc.strerror})", file=out_dir, fix="choose a writable --out"
            ) from None
    train_set = DetectionTrainingSet(ds, label_map, dropped=dropped, cache=ds.num_images <= 20_000)
    if ds.num_images == 0:
        raise SoftSamplingError("training set has no images", file=cfg.data.train, fix="check data.train")

    prior = thresholds = None
    rules = _rules(cfg)
    if "score_soft" in rules:
        from softsampling.engine.prior import prepare_prior

        prior, thresholds = prepare_prior(cfg, train_set, out_dir if is_main else None, device)
    if "pseudo_label" in rules:
        from softsampling.engine.prior import prepare_pseudo_boxes

        train_set.pseudo = prepare_pseudo_boxes(
            cfg, train_set, out_dir if is_main else None, device, allow_outside_root=allow_outside_root
        )
    model = build_model(
        cfg, label_map.num_classes, prior=prior, thresholds=thresholds, load_weights=not (resume and last_path.exists())
    )
    weights_report = getattr(model, "weights_report", None)  # set by build_model
    if is_main and progress and weights_report is not None:
        print(weights_report.summary())
    model.to(device)
    model = apply_gpu_settings(model, t)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, cfg))
    scaler = grad_scaler(t)

    start = 0
    changed: dict[str, list[Any]] = {}
    if resume and last_path.exists():
        state = load_checkpoint(last_path, required=RESUME_KEYS)
        changed = config_changes(state, cfg, last_path, allow=allow_config_change)
        load_state(model, state["model"], last_path, "model")
        load_state(optimizer, state["optimizer"], last_path, "optimizer")
        load_state(scheduler, state["scheduler"], last_path, "scheduler")
        start = state["iteration"]
        rng = state["rng"]
        if (
            isinstance(start, bool)
            or not isinstance(start, int)
            or not 0 <= start <= t.iterations
            or not isinstance(rng, list)
            or not rng
            or not all(isinstance(r, torch.Tensor) for r in rng)
        ):
            raise SoftSamplingError(
                f"checkpoint is corrupt: iteration {start!r} (train.iterations={t.iterations}) "
                "or its RNG state is invalid",
                file=last_path,
                fix="delete it and retrain, or raise train.iterations if it was lowered",
            )
        try:
            torch.set_rng_state(rng[rank] if rank < len(rng) else rng[0])
        except (RuntimeError, TypeError) as exc:
            raise SoftSamplingError(
                f"checkpoint is corrupt: bad RNG state ({exc})", file=last_path, fix="delete it and retrain"
            ) from None
    metrics_path = out_dir / "metrics.jsonl"
    if is_main:
        if resume:
            remove_stale_temp_files(out_dir)  # left by writes that a kill interrupted
        save_config(cfg, out_dir / "config.yaml")
        write_json(out_dir / "labels.json", label_map.to_json())
        _truncate_metrics(metrics_path, start)
        if changed:
            _append_metrics(metrics_path, {"iteration": start, "event": "config_changed_on_resume", "changed": changed})

    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    def checkpoint(iteration: int) -> None:
        rng = [torch.get_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            torch_dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if is_main:
            save_checkpoint(
                last_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "iteration": iteration,
                    "rng": rng,
                    "config_digest": cfg.digest(),
                    "config": cfg.to_dict(),
                },
            )

    model.train()
    bar = tqdm(
        range(start, t.iterations),
        initial=start,
        total=t.iterations,
        disable=not (progress and is_main),
        desc=f"train {strategy_name(cfg.strategy)}",
        unit="it",
        dynamic_ncols=True,
    )
    per_rank = t.batch_size // world
    tic = time.perf_counter()
    for it in bar:
        rows = global_batch(cfg.seed, it, t.batch_size, ds.num_images)[rank * per_rank : (rank + 1) * per_rank]
        images, targets = collate([train_set[int(r)] for r in rows])
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in tg.items()} for tg in targets]
        _strategy_head(model).set_progress(it, t.iterations)  # warm-ups
        with autocast(t, device):
            losses = ddp_model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise SoftSamplingError(
                f"loss became {loss.item()} at iteration {it} ({parts}); the last good checkpoint is kept",
                file=last_path if last_path.exists() else out_dir,
                fix="lower train.lr or lengthen train.warmup_iterations, and check the dataset for degenerate boxes; "
                "then --resume",
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        done = it + 1
        if done % t.log_every == 0 or done == t.iterations:
            logged = torch.stack([loss.detach(), *(v.detach() for v in losses.values())]).float()
            if world > 1:  # log the loss of the global batch: the mean over processes
                torch_dist.all_reduce(logged)
                logged /= world
            values = [round(v, 6) for v in logged.tolist()]
        if is_main and (done % t.log_every == 0 or done == t.iterations):
            elapsed = time.perf_counter() - tic
            record = {
                "iteration": done,
                "loss": values[0],
                **dict(zip(losses.keys(), values[1:], strict=True)),
                "lr": optimizer.param_groups[0]["lr"],
                "sec_per_iter": round(elapsed / t.log_every, 4),
            }
            if device.type == "cuda":  # peak GPU memory of this process so far
                record["max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            _append_metrics(metrics_path, record)
            bar.set_postfix(loss=f"{values[0]:.3f}", s_it=f"{record['sec_per_iter']:.2f}")
            tic = time.perf_counter()
        kill_point("iter", done)  # test only (SOFTSAMPLING_TEST_KILL_AT): a kill between step and checkpoint
        if done % t.checkpoint_every == 0 or done == t.iterations:
            checkpoint(done)
    bar.close()

    final_path = out_dir / FINAL
    if is_main:
        save_checkpoint(
            final_path, {"model": model.state_dict(), "labels": label_map.to_json(), "config": cfg.to_dict()}
        )
        if cfg.data.val:
            result = evaluate_split(model, cfg, label_map, "val", device, allow_outside_root=allow_outside_root)
            _append_metrics(metrics_path, {"iteration": t.iterations, "val_mAP50": round(result["mAP"], 6)})
            if report:
                print(f"val mAP@0.5 (VOC area): {100 * result['mAP']:.2f}")
        with atomic_write(out_dir / "DONE") as f:
            f.write(f"{t.iterations}\n")
    if world > 1:
        torch_dist.barrier()
    return final_path
