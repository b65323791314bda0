"""The reproduction grid: data preparation, the cells (one training run each), and the scheduler.

Layout of the output folder ``OUT`` (every path inside configs is relative to
``OUT``; cells run with ``OUT`` as their working directory, so the folder can
be moved and resumed elsewhere)::

    OUT/data/digits/...                       generated benchmark (digits presets)
    OUT/data/curated/seed{S}/train_drop30.json + .manifest.json   curated training sets
    OUT/runs/seed{S}/{name}-{digest}/         one cell: config.yaml, model.pt, DONE,
                                              cell_spec.json, cell.log, results.json

A cell is a resolved :class:`~softsampling.engine.config.RunConfig`; the
first 12 hex digits of its :meth:`RunConfig.digest` name its folder. A score
soft sampling cell names its prior run's folder in ``prior_run``, so its
digest changes whenever the prior's does. A cell whose folder holds ``DONE``
and a ``results.json`` computed with the same evaluation settings is reused,
never rerun: interrupting ``softsampling reproduce`` and starting it again
continues where it stopped (unfinished trainings resume from their last
checkpoint).

Cells per seed: the preset's ``methods`` on the data as given (default
``baseline``, ``overlap_soft``, ``pseudo_label``, ``objectness_mining`` and
``overlap_soft+pseudo_label`` on the full data; open50: ``baseline``,
``hard_negative_0.1``, ``overlap_soft`` on Open Images as annotated), and for
every drop rate the preset's ``rate_methods`` (default ``baseline``,
``hard_negative_0.1``, ``hard_negative_0.2``, ``overlap_soft``, ``score_soft``,
``upper_bound``, ``pseudo_label``, ``objectness_mining`` and
``overlap_soft+pseudo_label``; digits-one-stage: ``baseline``,
``overlap_soft``, ``brl`` and ``upper_bound``). A cell whose strategy
has a rule needing a round-one run (``softsampling.sampling.PRIOR_RULES``:
score soft sampling's prior, pseudo labels' teacher) uses the run of the same
data and seed that :data:`PRIOR_ROWS` names, by default the baseline
(``overlap_soft+pseudo_label`` learns from ``overlap_soft``);
``upper_bound`` gets the curation manifest. Pseudo labels choose
their thresholds on the validation split, so their rows are left out when the
preset has none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from softsampling.engine.config import RunConfig, apply_overrides, load_config
from softsampling.errors import SoftSamplingError
from softsampling.experiments.presets import Preset
from softsampling.io import write_json
from softsampling.sampling import PRIOR_RULES, resolve_strategy

# Row keys of Table 1, in the paper's order, then later work, with their strategy and parameters
# (names and parameters from the rule table, softsampling.sampling.RULES; checked at import).
METHODS: dict[str, tuple[str | list[str], dict[str, Any]]] = {
    "baseline": ("baseline", {}),
    "hard_negative_0.1": ("hard_negative", {"min_overlap": 0.1}),
    "hard_negative_0.2": ("hard_negative", {"min_overlap": 0.2}),
    "overlap_soft": ("overlap_soft", {"a": 0.25, "b": 50.0, "c": 20.0}),
    "score_soft": ("score_soft", {"a": 0.25, "b": 50.0, "c": 20.0}),
    "upper_bound": ("upper_bound", {}),
    "pseudo_label": ("pseudo_label", {}),
    "objectness_mining": ("objectness_mining", {}),
    "overlap_soft+pseudo_label": (["overlap_soft", "pseudo_label"], {"a": 0.25, "b": 50.0, "c": 20.0}),
    "brl": ("brl", {}),  # Background Recalibration Loss: one-stage detectors only (digits-one-stage)
}
# The row whose run is a two-round row's prior (score soft sampling) or teacher (pseudo labels), on the same
# data; rows not listed use the baseline. Our combination learns from the overlap soft sampling run: on seed 0's
# validation split it was level with or above the baseline-taught one at every rate (+0.03 / +0.74 / +0.02
# / +0.03 points at 0 / 30 / 40 / 50%), and its pseudo boxes recalled more of the dropped boxes at 50%
# (0.612 vs 0.559, precision 0.871 vs 0.877): docs/results/digits/README.md.
PRIOR_ROWS: dict[str, str] = {"overlap_soft+pseudo_label": "overlap_soft"}


def prior_row(method: str) -> str | None:
    """The row key of ``method``'s round-one run, or ``None`` when it trains in one round."""
    if not any(r in PRIOR_RULES for r in _rules(METHODS[method][0])):
        return None
    return PRIOR_ROWS.get(method, "baseline")


for _strategy, _params in METHODS.values():
    resolve_strategy(_strategy, _params)  # a typo here fails at import, not hours into a study


def _rules(strategy: str | list[str]) -> tuple[str, ...]:
    return resolve_strategy(strategy).rules


def rate_tag(rate: float) -> str:
    """``0.0 -> 'full'``, ``0.3 -> 'drop30'``.

    >>> rate_tag(0.0), rate_tag(0.3), rate_tag(0.45)
    ('full', 'drop30', 'drop45')
    """
    return "full" if rate == 0 else f"drop{round(rate * 100):d}"


# --------------------------------------------------------------------------- data
PATH_OPTIONS = ("image_root", "labels_csv")  # reader options that are paths (relative to OUT)


@dataclass(frozen=True)
class SplitSpec:
    """A dataset on disk as :func:`softsampling.data.formats.load_dataset` reads it (paths relative to OUT)."""

    path: str
    format: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "options": dict(self.options)}

    def load(self, base: Path = Path(".")) -> Any:
        from softsampling.data.formats import load_dataset

        options = dict(self.options)
        for key in PATH_OPTIONS:
            if key in options:
                options[key] = base / options[key]
        return load_dataset(base / self.path, self.format, **options)


@dataclass
class DataLayout:
    """The study's datasets: full train, optional val, test, and the curated train sets per (seed, rate)."""

    train: SplitSpec
    test: SplitSpec
    val: SplitSpec | None
    curated: dict[tuple[int, float], SplitSpec]


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it, else absolute (as POSIX text)."""
    path, base = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def prepare_data(preset: Preset, seeds: list[int], out: Path, *, log: Callable[[str], None] = print) -> DataLayout:
    """Build (or reuse) the dataset under ``out/data`` and write the nested curated training sets.

    Digits: :func:`make_digit_scenes` into ``out/data/digits`` unless its
    annotations exist. VOC: trainval/test read from ``preset.voc_root``.
    Open Images (open50): ``train.csv`` / ``test.csv`` of ``preset.oi_root``
    with images under ``images/train`` and ``images/test``; the test split
    also reads ``test-image-labels.csv`` (the metric's verified labels).
    Curation uses the paper's uniform protocol with the replicate's seed, so
    for one seed the 30% drops are a subset of the 40% ones, and so on.
    Existing curated files (with their manifests) are reused.
    """
    from softsampling.data.curate import curate, manifest_path_for, sha256_of_input, write_manifest
    from softsampling.data.formats import save_dataset

    data_dir = out / "data"
    if preset.dataset == "digits":
        from softsampling.data.digits import make_digit_scenes

        d = preset.digits
        assert d is not None
        root = data_dir / "digits"
        if not (root / "annotations" / "test.json").exists():
            tic = time.perf_counter()
            make_digit_scenes(
                root, train=d.train, val=d.val, test=d.test, size=d.size, seed=d.seed, force=True, preset=d.preset
            )
            log(
                f"built {d.preset} digit scenes ({d.train}/{d.val}/{d.test} images, {d.size} px) in "
                f"{time.perf_counter() - tic:.1f} s: {root}"
            )
        else:
            log(f"reusing digit scenes in {root}")

        def split(name: str) -> SplitSpec:
            return SplitSpec(
                _rel(root / "annotations" / f"{name}.json", out),
                "coco",
                {"image_root": _rel(root / "images" / name, out)},
            )

        train, val, test = split("train"), (split("val") if d.val > 0 else None), split("test")
        curated_fmt, suffix = "coco", ".json"
    elif preset.dataset == "voc":
        assert preset.voc_root is not None
        voc = Path(preset.voc_root)
        train = SplitSpec(voc.as_posix(), "voc", {"split": "trainval"})
        test = SplitSpec(voc.as_posix(), "voc", {"split": "test"})
        val = None
        curated_fmt, suffix = "voc", ""
    elif preset.dataset == "openimages":
        assert preset.oi_root is not None
        oi = Path(preset.oi_root)
        train = SplitSpec(_rel(oi / "train.csv", out), "openimages", {"image_root": _rel(oi / "images" / "train", out)})
        test = SplitSpec(
            _rel(oi / "test.csv", out),
            "openimages",
            {"image_root": _rel(oi / "images" / "test", out), "labels_csv": _rel(oi / "test-image-labels.csv", out)},
        )
        val = None
        curated_fmt, suffix = "openimages", ".csv"
    else:
        raise SoftSamplingError(
            f"unknown dataset kind {preset.dataset!r} in preset {preset.name!r}", fix="use digits, voc or openimages"
        )

    full = None
    curated: dict[tuple[int, float], SplitSpec] = {}
    for seed in seeds:
        for rate in preset.rates:
            target = data_dir / "curated" / f"seed{seed}" / f"train_{rate_tag(rate)}{suffix}"
            manifest = manifest_path_for(target, is_dir=curated_fmt == "voc")
            options = {"split": "trainval"} if curated_fmt == "voc" else dict(train.options)
            spec = SplitSpec(_rel(target, out), curated_fmt, options)
            curated[(seed, rate)] = spec
            if target.exists() and manifest.exists():
                continue
            if full is None:
                full = train.load(out)
            result = curate(full, rate=rate, seed=seed, preset="uniform")
            if curated_fmt == "voc":
                save_dataset(result.dataset, target, "voc", split="trainval")
            else:
                save_dataset(result.dataset, target, curated_fmt)
            write_manifest(
                manifest,
                full,
                result,
                input_path=train.path,
                input_format=train.format,
                input_sha256=sha256_of_input(out / train.path),
                options={"rate": str(rate)},
            )
            t = result.totals()
            log(f"curated seed {seed} at {rate:.0%}: kept {t['boxes_after']} of {t['boxes_before']} boxes -> {target}")
    return DataLayout(train=train, test=test, val=val, curated=curated)


# --------------------------------------------------------------------------- cells
@dataclass
class Cell:
    """One training run of the grid and how to evaluate it.

    ``method`` is a row key of :data:`METHODS`; ``rate`` 0.0 means the full
    annotations. ``eval_train``: also score the (fully annotated) training
    images, for Fig. 2's train panel. ``prior``: key of the cell whose run is
    this cell's prior (score soft sampling) or teacher (pseudo labels).
    """

    seed: int
    method: str
    rate: float
    config: RunConfig
    evaluation: dict[str, Any]
    prior: str | None = None

    @property
    def name(self) -> str:
        return f"{self.method}-{rate_tag(self.rate)}"

    @property
    def key(self) -> str:
        return f"seed{self.seed}/{self.name}"

    @property
    def digest(self) -> str:
        return self.config.digest()

    @property
    def run_dir(self) -> str:
        """Run folder relative to OUT."""
        return f"runs/seed{self.seed}/{self.name}-{self.digest}"

    def spec(self) -> dict[str, Any]:
        """What ``python -m softsampling.experiments.cell SPEC.json`` needs."""
        return {
            "key": self.key,
            "seed": self.seed,
            "method": self.method,
            "rate": self.rate,
            "run_dir": self.run_dir,
            "config": self.config.to_dict(),
            "evaluation": self.evaluation,
        }


def base_config(preset: Preset, overrides: list[str]) -> RunConfig:
    """The preset's YAML config with the preset's and the user's ``key=value`` overrides."""
    return apply_overrides(load_config(preset.config_path()), list(preset.overrides) + list(overrides))


def _with_data(cfg: RunConfig, spec: SplitSpec, val: SplitSpec | None) -> RunConfig:
    data = dataclasses.replace(
        cfg.data,
        format=spec.format,
        train=spec.path,
        images=spec.options.get("image_root"),
        split=spec.options.get("split", cfg.data.split),
        manifest=None,
        val=None if val is None or cfg.data.val is None else val.path,
        val_images=None if val is None or cfg.data.val is None else val.options.get("image_root"),
        val_split=cfg.data.val_split if val is None else val.options.get("split", cfg.data.val_split),
    )
    return dataclasses.replace(cfg, data=data)


def build_cells(preset: Preset, seeds: list[int], layout: DataLayout, base: RunConfig) -> list[Cell]:
    """Every cell of the study, priors before the cells that need them.

    Evaluation: every cell on test; the full-data baseline and the baseline at
    the smallest drop rate also on the training images (Fig. 2).
    """
    from softsampling.data.curate import manifest_path_for

    def evaluation(on_train: bool) -> dict[str, Any]:
        return {
            "test": layout.test.to_json(),
            "train": layout.train.to_json() if on_train and preset.train_eval_images != 0 else None,
            "train_images": preset.train_eval_images,
            "iou": 0.5,
            "metric": preset.metric,
            "sweep_thresholds": list(preset.sweep_thresholds),
            "batch_size": preset.eval_batch_size,
        }

    unknown = [m for m in (*preset.methods, *preset.rate_methods) if m not in METHODS]
    if unknown:
        raise SoftSamplingError(
            f"preset {preset.name!r} names unknown rows {', '.join(unknown)}",
            fix=f"use keys of softsampling.experiments.grid.METHODS: {', '.join(METHODS)}",
        )
    for rows in (preset.methods, preset.rate_methods):
        for i, method in enumerate(rows):
            needs = prior_row(method)
            if needs is not None and needs not in rows[:i]:
                raise SoftSamplingError(
                    f"preset {preset.name!r}: row {method!r} needs a round-one run, the {needs} row of its data",
                    fix=f"list {needs!r} before it in the preset's methods / rate_methods",
                )
    fig2_rate = min(preset.rates) if preset.rates else None
    cells: list[Cell] = []

    def add(
        seed: int, method: str, rate: float, data_cfg: RunConfig, done: dict[str, Cell], curated: SplitSpec | None
    ) -> Cell | None:
        strategy, params = METHODS[method]
        rules = _rules(strategy)
        if "pseudo_label" in rules and data_cfg.data.val is None:
            return None  # thresholds are chosen on the validation split
        strategy = list(strategy) if isinstance(strategy, list) else strategy
        cfg = dataclasses.replace(data_cfg, seed=seed, strategy=strategy, strategy_params=dict(params), prior_run=None)
        prior = None
        if "upper_bound" in rules:
            assert curated is not None
            manifest = manifest_path_for(curated.path, is_dir=curated.format == "voc")
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=manifest.as_posix()))
        needs = prior_row(method)
        if needs is not None:
            if needs not in done:
                return None  # its round-one row was left out (a pseudo-label row without a validation split)
            prior_cell = done[needs]
            cfg = dataclasses.replace(cfg, prior_run=prior_cell.run_dir)
            prior = prior_cell.key
        on_train = method == "baseline" and rate in (0.0, fig2_rate)
        cell = Cell(seed, method, rate, cfg, evaluation(on_train=on_train), prior)
        cells.append(cell)
        return cell

    for seed in seeds:
        full_cfg = _with_data(base, layout.train, layout.val)
        full: dict[str, Cell] = {}
        for method in preset.methods:
            cell = add(seed, method, 0.0, full_cfg, full, None)
            if cell is not None:
                full[method] = cell
        for rate in preset.rates:
            curated = layout.curated[(seed, rate)]
            data_cfg = _with_data(base, curated, layout.val)
            at_rate: dict[str, Cell] = {}
            for method in preset.rate_methods:
                cell = add(seed, method, rate, data_cfg, at_rate, curated)
                if cell is not None:
                    at_rate[method] = cell
    return cells


def select_rows(cells: list[Cell], rows: list[str]) -> list[Cell]:
    """The cells of the given row keys (``--rows``); refuses an unknown row and a two-round row without its prior."""
    unknown = [r for r in rows if r not in METHODS]
    if unknown:
        raise SoftSamplingError(f"unknown row {unknown[0]!r} in --rows", fix=f"use row keys from: {', '.join(METHODS)}")
    keep = [c for c in cells if c.method in rows]
    kept = {c.key for c in keep}
    for c in keep:
        if c.prior is not None and c.prior not in kept:
            raise SoftSamplingError(
                f"row {c.method!r} trains from its prior {c.prior}, which --rows leaves out",
                fix=f"add {prior_row(c.method)} to --rows",
            )
    return keep


# --------------------------------------------------------------------------- running
@dataclass
class CellOutcome:
    """How a cell ended: ``done`` (ran now), ``reused`` (finished before), ``failed`` or ``skipped``."""

    cell: Cell
    status: str
    results: dict[str, Any] | None = None
    seconds: float = 0.0
    error: str = ""


Launcher = Callable[[Path, Path, Path], tuple[int, str]]
"""``launcher(spec_path, out_dir, log_path) -> (exit status, tail of its stderr)``."""


def is_finished(cell: Cell, out: Path) -> bool:
    """The cell's run has ``DONE`` and a ``results.json`` computed with the same evaluation settings."""
    run_dir = out / cell.run_dir
    results = load_results(run_dir)
    return (run_dir / "DONE").exists() and results is not None and results.get("evaluation") == cell.evaluation


def load_results(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "results.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def subprocess_launcher(command_prefix: list[str] | None = None, threads: int = 1) -> Launcher:
    """Run ``python -m softsampling.experiments.cell SPEC`` in ``OUT`` with ``OMP_NUM_THREADS=threads``.

    ``command_prefix`` replaces ``[python]`` (e.g. ``[python, -m, torch.distributed.run,
    --nproc-per-node, 8]`` for several GPUs). Output goes to ``log_path``.
    """
    prefix = command_prefix or [sys.executable]

    def launch(spec_path: Path, out_dir: Path, log_path: Path) -> tuple[int, str]:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.run(
                [*prefix, "-m", "softsampling.experiments.cell", str(spec_path.resolve())],
                cwd=out_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        return proc.returncode, tail

    return launch


class GridProgress:
    """Overall progress of the runs: runs done of total, time elapsed, and an estimate of the time left.

    On a terminal (stderr is a TTY, or ``bar=True``) a tqdm bar; otherwise
    plain lines through ``log``: one when a run starts, one when it ends, and
    one every ``heartbeat`` seconds while runs go on, so a log file shows that
    the study is alive. The estimate takes the mean wall time of the finished
    runs, counts the runs not finished (less what the running ones have done)
    and divides by the number that run at once. ``clock`` is injectable for
    tests.
    """

    def __init__(
        self,
        *,
        log: Callable[[str], None] = print,
        bar: bool | None = None,
        heartbeat: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.log, self.heartbeat, self.clock = log, heartbeat, clock
        self.use_bar = sys.stderr.isatty() if bar is None else bar
        self.total = self.done = 0
        self.jobs = 1
        self.started_at = self.last_line = 0.0
        self.run_seconds: list[float] = []
        self.running: dict[str, float] = {}  # key -> start time
        self._bar: Any = None

    @property
    def poll_seconds(self) -> float:
        """How long the scheduler may wait for a run before calling :meth:`tick`."""
        return 1.0 if self.use_bar else self.heartbeat

    def begin(self, total: int, jobs: int) -> None:
        self.total, self.jobs = total, max(1, jobs)
        self.started_at = self.last_line = self.clock()
        if self.use_bar and total:
            self._bar = tqdm(
                total=total,
                unit="run",
                desc="reproduce",
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed} elapsed{postfix}",
            )
            self._bar.set_postfix_str(self.eta_text(), refresh=True)

    def eta_seconds(self) -> float | None:
        """Estimated seconds until every run is done; ``None`` before the first run finishes."""
        if not self.run_seconds:
            return None
        mean = sum(self.run_seconds) / len(self.run_seconds)
        left = self.total - self.done
        if left <= 0:
            return 0.0
        now = self.clock()
        work = mean * left - sum(min(now - t, mean) for t in self.running.values())
        return max(work, 0.0) / min(self.jobs, left)

    def eta_text(self) -> str:
        eta = self.eta_seconds()
        return "time left known after the first run" if eta is None else f"about {tqdm.format_interval(eta)} left"

    def status(self) -> str:
        """E.g. ``3/14 runs done, 2 running, 12:30 elapsed, about 45:10 left``."""
        return (
            f"{self.done}/{self.total} runs done, {len(self.running)} running, "
            f"{tqdm.format_interval(self.clock() - self.started_at)} elapsed, {self.eta_text()}"
        )

    def started(self, key: str) -> None:
        self.running[key] = self.clock()
        if not self.use_bar:
            self._line(f"started {key}; {self.status()}")

    def finished(self, key: str, line: str, detail: str = "") -> None:
        """A run ended (done or failed); ``line`` says how, ``detail`` (lines below it) why."""
        self.run_seconds.append(self.clock() - self.running.pop(key))
        self.done += 1
        if self._bar is not None:
            self.write(line + (f"\n{detail}" if detail else ""))
            self._bar.update(1)
            self._bar.set_postfix_str(self.eta_text())
        else:
            self._line(f"{line}; {self.status()}" + (f"\n{detail}" if detail else ""))

    def write(self, text: str) -> None:
        """Any other message, through ``log``, without breaking the bar."""
        if self._bar is None:
            self.log(text)
            return
        with tqdm.external_write_mode():
            self.log(text)

    def tick(self) -> None:
        """Called while runs go on: refresh the bar, or a heartbeat line every ``heartbeat`` seconds."""
        if self._bar is not None:
            self._bar.set_postfix_str(self.eta_text())
        elif self.running and self.clock() - self.last_line >= self.heartbeat:
            self._line(f"progress: {self.status()}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, text: str) -> None:
        self.last_line = self.clock()
        self.log(text)


def run_cells(
    cells: list[Cell],
    out: Path,
    *,
    jobs: int = 2,
    launcher: Launcher | None = None,
    log: Callable[[str], None] = print,
    progress: GridProgress | None = None,
) -> list[CellOutcome]:
    """Run every unfinished cell, ``jobs`` at a time, a cell only after its prior finished.

    Finished cells (:func:`is_finished`) are reused without launching. A
    failed cell is reported (its log tail) and the others go on; cells whose
    prior failed are ``skipped``. Returns one outcome per cell, in input order.
    ``progress`` shows runs done of total, elapsed time and time left (default:
    a :class:`GridProgress` that writes through ``log``).
    """
    launcher = launcher or subprocess_launcher()
    progress = progress or GridProgress(log=log)
    outcomes: dict[str, CellOutcome] = {}
    pending: list[Cell] = []
    for cell in cells:
        if is_finished(cell, out):
            outcomes[cell.key] = CellOutcome(cell, "reused", load_results(out / cell.run_dir))
        else:
            pending.append(cell)
    if outcomes:
        log(f"reusing {len(outcomes)} finished run(s); {len(pending)} to run")
    total, finished = len(pending), 0
    progress.begin(total, jobs)

    def start(cell: Cell) -> float:
        run_dir = out / cell.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "cell_spec.json", cell.spec())
        return time.perf_counter()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running: dict[Future, tuple[Cell, float]] = {}
        while pending or running:
            for cell in list(pending):
                if len(running) >= max(1, jobs):
                    break
                prior = outcomes.get(cell.prior) if cell.prior else None
                if cell.prior and prior is None:
                    continue  # prior still to run
                pending.remove(cell)
                if prior is not None and prior.status not in ("done", "reused"):
                    outcomes[cell.key] = CellOutcome(cell, "skipped", error=f"prior run {cell.prior} {prior.status}")
                    progress.write(f"[skip] {cell.key}: its prior {cell.prior} {prior.status}")
                    continue
                tic = start(cell)
                progress.started(cell.key)
                run_dir = out / cell.run_dir
                fut = pool.submit(launcher, run_dir / "cell_spec.json", out, run_dir / "cell.log")
                running[fut] = (cell, tic)
            if not running:
                if pending:  # only cells whose prior is unknown remain: impossible with build_cells' order
                    for cell in pending:
                        outcomes[cell.key] = CellOutcome(cell, "skipped", error=f"prior {cell.prior} not in the grid")
                    pending.clear()
                continue
            done, _ = wait(list(running), timeout=progress.poll_seconds, return_when=FIRST_COMPLETED)
            if not done:
                progress.tick()
            for fut in done:
                cell, tic = running.pop(fut)
                seconds = time.perf_counter() - tic
                finished += 1
                try:
                    code, tail = fut.result()
                except Exception as exc:  # a launcher that raises counts as a failed cell
                    code, tail = 1, repr(exc)
                results = load_results(out / cell.run_dir)
                if code == 0 and results is not None:
                    outcomes[cell.key] = CellOutcome(cell, "done", results, seconds)
                    m = results.get("test", {}).get("mAP")
                    score = f"test mAP {100 * m:.2f}" if isinstance(m, (int, float)) else "no test mAP"
                    progress.finished(cell.key, f"[{finished}/{total}] {cell.key}: {score} ({seconds:.0f} s)")
                else:
                    outcomes[cell.key] = CellOutcome(cell, "failed", results, seconds, tail)
                    progress.finished(
                        cell.key,
                        f"[{finished}/{total}] {cell.key}: FAILED after {seconds:.0f} s "
                        f"(exit {code}); log: {out / cell.run_dir / 'cell.log'}",
                        detail="\n".join("    " + ln for ln in tail.splitlines()),
                    )
    progress.close()
    return [outcomes[c.key] for c in cells]
