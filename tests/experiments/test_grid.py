"""The reproduction grid: which cells exist, how their digests key the run folders, and the scheduler's
reuse / ordering / failure rules (with a fake launcher instead of training)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from softsampling.engine.config import RunConfig, apply_overrides
from softsampling.errors import SoftSamplingError
from softsampling.experiments.grid import (
    DataLayout,
    GridProgress,
    SplitSpec,
    build_cells,
    is_finished,
    rate_tag,
    run_cells,
    select_rows,
)
from softsampling.experiments.presets import smoke_preset
from softsampling.io import write_json

RATES = (0.3, 0.5)


def layout(seeds=(0, 1)) -> DataLayout:
    img = {"image_root": "data/digits/images/train"}
    return DataLayout(
        train=SplitSpec("data/digits/annotations/train.json", "coco", img),
        test=SplitSpec("data/digits/annotations/test.json", "coco", {"image_root": "data/digits/images/test"}),
        val=None,
        curated={
            (s, r): SplitSpec(f"data/curated/seed{s}/train_{rate_tag(r)}.json", "coco", img)
            for s in seeds
            for r in RATES
        },
    )


def preset():
    return dataclasses.replace(smoke_preset(), rates=RATES)


def base(iterations: int = 5) -> RunConfig:
    return apply_overrides(RunConfig(), [f"train.iterations={iterations}", "train.threads=1"])


def cells_for(seeds=(0, 1), iterations: int = 5):
    return build_cells(preset(), list(seeds), layout(seeds), base(iterations))


def test_cells_of_the_study():
    cells = cells_for()  # no validation split: no pseudo-label rows (their thresholds are chosen on val)
    assert len(cells) == 2 * (2 + 2 * 7)
    names = [c.key for c in cells if c.seed == 0]
    assert names == [
        "seed0/baseline-full",
        "seed0/overlap_soft-full",
        *[
            f"seed0/{m}-{t}"
            for t in ("drop30", "drop50")
            for m in (
                "baseline",
                "hard_negative_0.1",
                "hard_negative_0.2",
                "overlap_soft",
                "score_soft",
                "upper_bound",
                "objectness_mining",
            )
        ],
    ]
    by = {c.key: c for c in cells}
    assert by["seed1/hard_negative_0.2-drop50"].config.strategy == "hard_negative"
    assert by["seed1/hard_negative_0.2-drop50"].config.strategy_params == {"min_overlap": 0.2}
    assert by["seed0/overlap_soft-full"].config.strategy_params == {"a": 0.25, "b": 50.0, "c": 20.0}
    assert by["seed0/overlap_soft-full"].config.data.train == "data/digits/annotations/train.json"
    assert by["seed1/baseline-drop30"].config.data.train == "data/curated/seed1/train_drop30.json"
    assert by["seed1/baseline-drop30"].config.data.images == "data/digits/images/train"
    assert by["seed1/baseline-drop30"].config.seed == 1
    # the upper bound finds its manifest; score soft sampling's prior is that seed's and rate's baseline
    assert by["seed0/upper_bound-drop50"].config.data.manifest == "data/curated/seed0/train_drop50.manifest.json"
    ss = by["seed1/score_soft-drop30"]
    assert ss.config.prior_run == by["seed1/baseline-drop30"].run_dir and ss.prior == "seed1/baseline-drop30"
    # Fig. 2 needs train-set scores of the full-data baseline and the lowest-rate baseline only
    on_train = sorted(c.key for c in cells if c.evaluation["train"] is not None)
    assert on_train == ["seed0/baseline-drop30", "seed0/baseline-full", "seed1/baseline-drop30", "seed1/baseline-full"]
    assert all(c.evaluation["sweep_thresholds"] == [round(0.1 * i, 1) for i in range(10)] for c in cells)


def test_pseudo_label_rows_learn_from_the_baseline_and_the_combination_from_overlap_soft():
    with_val = dataclasses.replace(layout((0,)), val=SplitSpec("data/digits/annotations/val.json", "coco", {}))
    cells = build_cells(preset(), [0], with_val, apply_overrides(base(), ["data.val=val.json"]))
    by = {c.key: c for c in cells}
    assert len(cells) == 3 + 2 * 9
    rows = [("overlap_soft+pseudo_label", "full")]  # on full data only the combination
    rows += [(m, rate) for rate in ("drop30", "drop50") for m in ("pseudo_label", "overlap_soft+pseudo_label")]
    for method, rate in rows:
        cell = by[f"seed0/{method}-{rate}"]
        teacher = "baseline" if method == "pseudo_label" else "overlap_soft"  # grid.PRIOR_ROWS
        assert cell.prior == f"seed0/{teacher}-{rate}" and cell.config.prior_run == by[cell.prior].run_dir
        assert cell.config.data.val == "data/digits/annotations/val.json"
    assert by["seed0/overlap_soft+pseudo_label-drop50"].config.strategy == ["overlap_soft", "pseudo_label"]
    assert by["seed0/objectness_mining-drop30"].prior is None


def test_run_folders_are_keyed_by_config_digest():
    cells = cells_for()
    for c in cells:
        assert c.run_dir == f"runs/seed{c.seed}/{c.name}-{c.config.digest()}"
        assert len(c.digest) == 12
    assert len({c.run_dir for c in cells}) == len(cells)
    assert [c.run_dir for c in cells_for()] == [c.run_dir for c in cells]  # stable
    longer = {c.key: c.run_dir for c in cells_for(iterations=6)}
    assert all(longer[c.key] != c.run_dir for c in cells)


def test_score_soft_digest_follows_its_prior():
    cells = {c.key: c for c in cells_for()}
    lay = layout()
    changed = dict(lay.curated)
    changed[(0, 0.3)] = SplitSpec("elsewhere/train_drop30.json", "coco", {"image_root": "data/digits/images/train"})
    other = {c.key: c for c in build_cells(preset(), [0, 1], dataclasses.replace(lay, curated=changed), base())}
    assert other["seed0/baseline-drop30"].run_dir != cells["seed0/baseline-drop30"].run_dir
    assert other["seed0/score_soft-drop30"].config.prior_run == other["seed0/baseline-drop30"].run_dir
    assert other["seed0/score_soft-drop30"].run_dir != cells["seed0/score_soft-drop30"].run_dir
    assert other["seed0/baseline-drop50"].run_dir == cells["seed0/baseline-drop50"].run_dir


class FakeLauncher:
    """Pretends to train: writes DONE and results.json like the cell process does; records launches."""

    def __init__(self, fail: set[str] = frozenset(), raise_for: set[str] = frozenset()):
        self.launched: list[str] = []
        self.fail, self.raise_for = fail, raise_for
        self.lock = threading.Lock()

    def __call__(self, spec_path: Path, out: Path, log_path: Path) -> tuple[int, str]:
        spec = json.loads(spec_path.read_text())
        with self.lock:
            self.launched.append(spec["key"])
        if spec["config"]["prior_run"]:  # the prior must be finished before this cell starts
            assert (out / spec["config"]["prior_run"] / "results.json").exists()
        if spec["key"] in self.raise_for:
            raise RuntimeError("launcher broke")
        if spec["key"] in self.fail:
            return 1, "Traceback ...\nValueError: loss became nan"
        run_dir = out / spec["run_dir"]
        (run_dir / "DONE").write_text("5\n")
        mAP = 0.5 + 0.01 * len(spec["key"])
        write_json(
            run_dir / "results.json",
            {
                **{k: spec[k] for k in ("key", "seed", "method", "rate")},
                "evaluation": spec["evaluation"],
                "test": {"mAP": mAP, "sweep": {"thresholds": [0.0], "mAP": [mAP]}},
            },
        )
        return 0, ""


def test_run_cells_runs_everything_then_reuses(tmp_path):
    cells = cells_for()
    fake = FakeLauncher()
    lines: list[str] = []
    outcomes = run_cells(cells, tmp_path, jobs=2, launcher=fake, log=lines.append)
    assert [o.status for o in outcomes] == ["done"] * len(cells)
    assert sorted(fake.launched) == sorted(c.key for c in cells)
    assert all((tmp_path / c.run_dir / "cell_spec.json").exists() for c in cells)
    assert sum(line.startswith("[") and "test mAP" in line for line in lines) == len(cells)
    assert outcomes[0].results["test"]["mAP"] == pytest.approx(0.5 + 0.01 * len("seed0/baseline-full"))

    again = FakeLauncher()
    outcomes = run_cells(cells, tmp_path, jobs=2, launcher=again, log=lambda s: None)
    assert again.launched == []
    assert {o.status for o in outcomes} == {"reused"}


def test_only_unfinished_or_stale_cells_rerun(tmp_path):
    cells = cells_for(seeds=(0,))
    run_cells(cells, tmp_path, jobs=2, launcher=FakeLauncher(), log=lambda s: None)
    by = {c.key: c for c in cells}
    (tmp_path / by["seed0/upper_bound-drop30"].run_dir / "results.json").unlink()  # killed during evaluation
    (tmp_path / by["seed0/overlap_soft-drop50"].run_dir / "DONE").unlink()  # killed during training
    stale = by["seed0/baseline-full"]
    stale.evaluation = {**stale.evaluation, "sweep_thresholds": [0.0, 0.5]}  # evaluation settings changed
    assert not is_finished(stale, tmp_path)
    fake = FakeLauncher()
    outcomes = run_cells(cells, tmp_path, jobs=2, launcher=fake, log=lambda s: None)
    assert sorted(fake.launched) == ["seed0/baseline-full", "seed0/overlap_soft-drop50", "seed0/upper_bound-drop30"]
    assert sum(o.status == "reused" for o in outcomes) == len(cells) - 3


def test_failed_cell_is_reported_and_its_dependent_skipped(tmp_path):
    cells = cells_for(seeds=(0,))
    fake = FakeLauncher(fail={"seed0/baseline-drop30"}, raise_for={"seed0/hard_negative_0.1-drop50"})
    lines: list[str] = []
    outcomes = {o.cell.key: o for o in run_cells(cells, tmp_path, jobs=1, launcher=fake, log=lines.append)}
    assert outcomes["seed0/baseline-drop30"].status == "failed"
    assert "loss became nan" in outcomes["seed0/baseline-drop30"].error
    assert outcomes["seed0/score_soft-drop30"].status == "skipped"
    assert "seed0/score_soft-drop30" not in fake.launched
    assert outcomes["seed0/hard_negative_0.1-drop50"].status == "failed"
    assert "launcher broke" in outcomes["seed0/hard_negative_0.1-drop50"].error
    assert outcomes["seed0/score_soft-drop50"].status == "done"
    assert sum(o.status == "done" for o in outcomes.values()) == len(cells) - 3
    assert any("FAILED" in line and "loss became nan" in line for line in lines)


class FakeClock:
    """A clock that only moves when a fake run says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_count_runs_elapsed_and_time_left(tmp_path):
    cells = cells_for(seeds=(0,))
    n = len(cells)
    clock, fake = FakeClock(), FakeLauncher()

    def hundred_seconds(spec_path, out, log_path):
        clock.now += 100.0
        return fake(spec_path, out, log_path)

    def mmss(seconds: int) -> str:
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    lines: list[str] = []
    progress = GridProgress(log=lines.append, bar=False, heartbeat=3600, clock=clock)
    run_cells(cells, tmp_path, jobs=1, launcher=hundred_seconds, progress=progress)
    assert lines[0] == (
        f"started seed0/baseline-full; 0/{n} runs done, 1 running, 00:00 elapsed, time left known after the first run"
    )
    # one run took 100 s, one at a time: the n - 1 left take (n - 1) * 100 s
    assert lines[1].startswith(f"[1/{n}] seed0/baseline-full: test mAP ")
    assert lines[1].endswith(f"; 1/{n} runs done, 0 running, 01:40 elapsed, about {mmss((n - 1) * 100)} left")
    assert lines[3].endswith(f"; 2/{n} runs done, 0 running, 03:20 elapsed, about {mmss((n - 2) * 100)} left")
    assert lines[-1].startswith(f"[{n}/{n}] ")
    assert lines[-1].endswith(f"{n}/{n} runs done, 0 running, {mmss(n * 100)} elapsed, about 00:00 left")
    assert len(lines) == 2 * n


def test_time_left_counts_parallel_runs_and_what_running_ones_did():
    clock = FakeClock()
    progress = GridProgress(log=lambda s: None, bar=False, clock=clock)
    progress.begin(total=6, jobs=2)
    assert progress.eta_seconds() is None
    progress.started("a")
    progress.started("b")
    clock.now = 100.0
    progress.finished("a", "a done")
    progress.started("c")
    clock.now = 130.0
    # mean run 100 s; 5 runs not done = 500 s of work, less 100 s (b, capped at the mean) and 30 s (c); 2 at a time
    assert progress.eta_seconds() == pytest.approx((500 - 100 - 30) / 2)


def test_heartbeat_lines_while_a_run_goes_on(tmp_path):
    cells = cells_for(seeds=(0,))[:2]  # the two full-data runs, no priors
    fake = FakeLauncher()

    def slow(spec_path, out, log_path):
        time.sleep(0.3)
        return fake(spec_path, out, log_path)

    lines: list[str] = []
    run_cells(
        cells, tmp_path, jobs=1, launcher=slow, progress=GridProgress(log=lines.append, bar=False, heartbeat=0.05)
    )
    beats = [line for line in lines if line.startswith("progress: ")]
    assert len(beats) >= 4
    assert beats[0].startswith("progress: 0/2 runs done, 1 running, 00:00 elapsed, time left known after the first run")
    assert any(b.startswith("progress: 1/2 runs done, 1 running") and "left" in b for b in beats)


def test_progress_bar_on_a_terminal(tmp_path, capsys):
    cells = cells_for(seeds=(0,))[:2]
    lines: list[str] = []
    run_cells(cells, tmp_path, jobs=1, launcher=FakeLauncher(), progress=GridProgress(log=lines.append, bar=True))
    err = capsys.readouterr().err
    assert "reproduce: 2/2 runs |" in err and "elapsed" in err and "left" in err
    # the bar replaces the start lines; the result lines still go through log
    assert [line.split(":")[0] for line in lines] == ["[1/2] seed0/baseline-full", "[2/2] seed0/overlap_soft-full"]


def test_select_rows_keeps_the_named_rows_and_refuses_a_missing_prior():
    with_val = dataclasses.replace(layout((0,)), val=SplitSpec("data/digits/annotations/val.json", "coco", {}))
    cells = build_cells(preset(), [0], with_val, apply_overrides(base(), ["data.val=val.json"]))
    kept = select_rows(cells, ["baseline", "overlap_soft", "overlap_soft+pseudo_label"])
    assert [c.key for c in kept] == [
        f"seed0/{m}-{t}"
        for t in ("full", "drop30", "drop50")
        for m in ("baseline", "overlap_soft", "overlap_soft+pseudo_label")
    ]
    assert [c.run_dir for c in kept] == [c.run_dir for c in cells if c in kept]  # same configs, same hashes
    with pytest.raises(SoftSamplingError, match="which --rows leaves out"):
        select_rows(cells, ["pseudo_label"])
    with pytest.raises(SoftSamplingError, match="unknown row 'pseudo'"):
        select_rows(cells, ["baseline", "pseudo"])


def test_a_row_can_take_another_row_as_its_teacher():
    with_val = dataclasses.replace(layout((0,)), val=SplitSpec("data/digits/annotations/val.json", "coco", {}))
    cells = build_cells(preset(), [0], with_val, apply_overrides(base(), ["data.val=val.json"]))
    by = {c.key: c for c in cells}
    for tag in ("full", "drop30", "drop50"):
        combo = by[f"seed0/overlap_soft+pseudo_label-{tag}"]
        assert combo.prior == f"seed0/overlap_soft-{tag}"
        assert combo.config.prior_run == by[f"seed0/overlap_soft-{tag}"].run_dir
    assert by["seed0/pseudo_label-drop30"].prior == "seed0/baseline-drop30"  # other rows keep the baseline
    with pytest.raises(SoftSamplingError, match="which --rows leaves out") as info:
        select_rows(cells, ["baseline", "overlap_soft+pseudo_label"])
    assert "add overlap_soft to --rows" in str(info.value)
    assert len(select_rows(cells, ["overlap_soft", "overlap_soft+pseudo_label"])) == 6
    reordered = ("baseline", "overlap_soft+pseudo_label", "overlap_soft")
    with pytest.raises(SoftSamplingError, match="needs a round-one run, the overlap_soft row"):
        build_cells(dataclasses.replace(preset(), rate_methods=reordered), [0], with_val, base())
