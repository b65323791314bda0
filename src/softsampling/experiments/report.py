"""Everything ``softsampling reproduce`` writes after the grid ran: tables, figures and ``report.md``.

Files in ``OUT``:

- ``table1.md`` (Table 1, gap closed, mAP with detections below 0.8 discarded,
  validation mAP, pseudo boxes vs. dropped boxes, the best new strategy chosen
  on validation mAP, targets) and ``table1.csv`` (Table 1 only, same layout),
  ``gap_closed.csv``, ``targets.csv``;
- ``results.csv``: one line per finished run with its raw numbers;
- ``fig2_score_threshold.png``, ``fig3_overlap.png`` (+ ``fig3_overlap.json``), ``fig5_examples.png``;
- ``report.md``: all of the above with configs, seeds, versions and wall times.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.experiments.cell import run_extras
from softsampling.experiments.grid import CellOutcome, DataLayout, rate_tag
from softsampling.experiments.one_stage_targets import one_stage_tables
from softsampling.experiments.presets import Preset
from softsampling.experiments.table import (
    ROW_LABEL,
    PseudoBoxes,
    Scores,
    best_new_strategy,
    column_label,
    evaluate_new_targets,
    evaluate_targets,
    format_cell,
    gap_table,
    markdown,
    pseudo_table,
    table1,
    targets_table,
    to_csv,
)
from softsampling.io import atomic_write, write_json

SCORE_THRESHOLD = 0.8  # target (d) and the third table


def _write(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def finished_results(outcomes: list[CellOutcome]) -> list[dict[str, Any]]:
    return [o.results for o in outcomes if o.status in ("done", "reused") and o.results]


def add_run_extras(out: Path, outcomes: list[CellOutcome]) -> None:
    """Give results read from ``results.json`` files older than the ``val`` and ``pseudo_boxes`` keys
    those numbers, from their run folders (:func:`softsampling.experiments.cell.run_extras`)."""
    for o in outcomes:
        r = o.results
        if r and ("val" not in r or "pseudo_boxes" not in r):
            for key, value in run_extras(out / str(r.get("run_dir", o.cell.run_dir))).items():
                r.setdefault(key, value)


def metric_label(preset: Preset) -> str:
    return "official Open Images metric" if preset.metric == "openimages" else "VOC area metric"


def plain_table(scores: Scores, preset: Preset, seeds: int) -> tuple[list[str], list[list[str]]]:
    """The table of a preset without drop rates: one row per method, ours, ours at score >= 0.8, and the paper's."""
    paper = dict(preset.paper)
    header = ["method", "mAP@0.5 (%)", f"score >= {SCORE_THRESHOLD:g}", "paper"]
    rows = [
        [
            ROW_LABEL.get(m, m),
            format_cell(scores.values_of(m, 0.0), expected=seeds),
            format_cell(scores.values_of(m, 0.0, SCORE_THRESHOLD), expected=seeds),
            f"{paper[m]:.2f}" if m in paper else "-",
        ]
        for m in preset.methods
    ]
    return header, rows


def write_tables(out: Path, outcomes: list[CellOutcome], preset: Preset, seeds: list[int]) -> dict[str, str]:
    """Write table1.md/.csv, gap_closed.csv, targets.csv, results.csv; return the Markdown pieces.

    A preset without drop rates (open50) gets one table (:func:`plain_table`)
    in table1.md/.csv, and no gap or targets files.
    """
    add_run_extras(out, outcomes)
    results = finished_results(outcomes)
    scores = Scores.from_results(results)
    rates = list(preset.rates)
    if not rates:
        header, rows = plain_table(scores, preset, len(seeds))
        md = {"table1": markdown(header, rows)}
        _write(
            out / "table1.md",
            f"# {preset.name}: test mAP@0.5 (%), {metric_label(preset)}, mean ± std over seeds "
            f"{', '.join(str(s) for s in seeds)}\n\n{md['table1']}",
        )
        _write(out / "table1.csv", to_csv(header, rows))
        _write_results_csv(out, outcomes)
        return md
    val_scores = Scores.from_results(results, split="val")
    pseudo = PseudoBoxes.from_results(results)
    choice = None  # the two-stage study's best new strategy; the one-stage study has no new rows
    if preset.kind == "one_stage":  # its own rows and targets: softsampling.experiments.one_stage_targets
        (h1, r1), (hg, rg), (ht, rt), targets = one_stage_tables(
            scores, preset, seeds=len(seeds), score_threshold=SCORE_THRESHOLD
        )
    else:
        h1, r1 = table1(scores, rates, seeds=len(seeds))
        hg, rg = gap_table(scores, rates)
        ht, rt = table1(scores, rates, seeds=len(seeds), threshold=SCORE_THRESHOLD)
        choice = best_new_strategy(val_scores, rates)
        targets = evaluate_targets(scores, rates, score_threshold=SCORE_THRESHOLD) + evaluate_new_targets(
            scores, choice, pseudo, rates, score_threshold=SCORE_THRESHOLD
        )
    hx, rx = targets_table(targets)
    md = {
        "table1": markdown(h1, r1),
        "gap": markdown(hg, rg),
        "score": markdown(ht, rt),
        "targets": markdown(hx, rx, numeric=False),
    }
    if choice is not None:
        md["choice"] = f"Best new strategy: {choice.describe()}."
    if val_scores.values:
        hv, rv = table1(val_scores, rates, seeds=len(seeds))
        md["val"] = markdown(hv, rv)
    hp, rp = pseudo_table(pseudo, rates, seeds=len(seeds))
    if rp:
        md["pseudo"] = markdown(hp, rp)
    seeds_text = ", ".join(str(s) for s in seeds)
    sections = [
        f"# Table 1: test mAP@0.5 (%), VOC area metric, mean ± std over seeds {seeds_text}\n\n{md['table1']}",
        f"## Gap closed towards the upper bound: (method - baseline) / (upper bound - baseline)\n\n{md['gap']}",
        f"## mAP@0.5 (%) with detections below score {SCORE_THRESHOLD:g} discarded\n\n{md['score']}",
    ]
    if "val" in md:
        sections.append(f"## Validation mAP@0.5 (%), measured by training after its last step\n\n{md['val']}")
    if "pseudo" in md:
        sections.append(f"## Pseudo boxes vs. dropped boxes (precision, recall: fractions)\n\n{md['pseudo']}")
    if "choice" in md:
        sections.append(f"## Best new strategy (chosen on validation mAP)\n\n{md['choice']}\n")
    sections.append(f"## Targets (means over seeds)\n\n{md['targets']}")
    _write(out / "table1.md", "\n".join(sections))
    _write(out / "table1.csv", to_csv(h1, r1))
    _write(out / "gap_closed.csv", to_csv(hg, rg))
    _write(out / "targets.csv", to_csv(hx, rx))
    _write_results_csv(out, outcomes)
    md["targets_list"] = "\n".join(f"- ({t.name}) {t.verdict}: {t.requirement} -- {t.measured}" for t in targets)
    return md


def _write_results_csv(out: Path, outcomes: list[CellOutcome]) -> None:
    header = [
        "seed",
        "method",
        "rate",
        "status",
        "test_mAP",
        f"test_mAP_score{SCORE_THRESHOLD:g}",
        "train_mAP",
        "val_mAP",
        "pseudo_boxes",
        "pseudo_precision_vs_dropped",
        "pseudo_recall_vs_dropped",
        "train_seconds",
        "eval_seconds",
        "run_dir",
    ]
    lines = []
    for o in outcomes:
        r = o.results or {}
        test, train, val = r.get("test") or {}, r.get("train") or {}, r.get("val") or {}
        pseudo = r.get("pseudo_boxes") or {}
        lines.append(
            [
                o.cell.seed,
                o.cell.method,
                o.cell.rate,
                o.status,
                _pct(test.get("mAP")),
                _pct(_at(test, SCORE_THRESHOLD)),
                _pct(train.get("mAP")),
                _pct(val.get("mAP")),
                _blank(pseudo.get("count")),
                _blank(pseudo.get("precision_vs_dropped")),
                _blank(pseudo.get("recall_vs_dropped")),
                r.get("train_seconds", ""),
                r.get("eval_seconds", ""),
                o.cell.run_dir,
            ]
        )
    _write(out / "results.csv", to_csv(header, [[str(v) for v in line] for line in lines]))


def _pct(v: Any) -> str:
    return "" if v is None else f"{100 * float(v):.2f}"


def _blank(v: Any) -> Any:
    return "" if v is None else v


def _at(part: dict[str, Any], threshold: float) -> float | None:
    sweep = part.get("sweep") or {}
    for t, m in zip(sweep.get("thresholds", []), sweep.get("mAP", []), strict=True):
        if abs(float(t) - threshold) < 1e-6:
            return float(m)
    return None


# --------------------------------------------------------------------------- figures
def make_fig2(out: Path, outcomes: list[CellOutcome], preset: Preset) -> Path:
    """Score-threshold sweeps of the full-data and smallest-rate baselines, train and test panels."""
    from softsampling.experiments.figures import plot_score_threshold

    results = finished_results(outcomes)
    if preset.rates:
        low = min(preset.rates)
        wanted = [
            ("baseline", 0.0, "baseline, full annotations"),
            ("baseline", low, f"baseline, {column_label(low)} dropped"),
        ]
        splits: tuple[tuple[str, str], ...] = (("train", "train (full annotations)"), ("test", "test"))
    else:  # no drop rates (open50): every method on test
        wanted = [(m, 0.0, ROW_LABEL.get(m, m)) for m in preset.methods]
        splits = (("test", "test"),)
    panels: dict[str, dict[str, tuple[list[float], list[float], list[float] | None]]] = {}
    for split, title in splits:
        curves = {}
        for method, rate, label in wanted:
            sweeps = [
                r[split]["sweep"]
                for r in results
                if r["method"] == method and float(r["rate"]) == rate and r.get(split)
            ]
            if not sweeps:
                continue
            m = 100 * np.array([s["mAP"] for s in sweeps], float)
            std = list(m.std(axis=0, ddof=1)) if len(m) > 1 else None
            curves[label] = (sweeps[0]["thresholds"], list(m.mean(axis=0)), std)
        panels[title] = curves
    path = out / "fig2_score_threshold.png"
    plot_score_threshold(panels, path)
    return path


def _find(outcomes: list[CellOutcome], seed: int, method: str, rate: float) -> CellOutcome | None:
    for o in outcomes:
        if o.cell.seed == seed and o.cell.method == method and o.cell.rate == rate and o.status in ("done", "reused"):
            return o
    return None


def make_fig3(
    out: Path, outcomes: list[CellOutcome], preset: Preset, layout: DataLayout, seed: int
) -> dict[str, Any] | None:
    """Overlap analysis with the baseline trained at the largest drop rate, on its curated training images."""
    from softsampling.data.curate import read_manifest
    from softsampling.engine.data import dropped_by_image
    from softsampling.engine.predict import load_run
    from softsampling.experiments.figures import plot_overlap
    from softsampling.experiments.overlap_analysis import analyze_overlap

    rate = max(preset.rates)
    run = _find(outcomes, seed, "baseline", rate)
    if run is None:
        return None
    spec = layout.curated[(seed, rate)]
    ds = spec.load(out)
    manifest = read_manifest(out / spec.path)
    model, _, _ = load_run(out / run.cell.run_dir)
    analysis = analyze_overlap(
        ds,
        dropped_by_image(ds, manifest.image_ids.tolist(), manifest.boxes),
        model,
        images=preset.overlap_images,
        seed=seed,
    )
    data = {**analysis.to_json(), "run_dir": run.cell.run_dir, "curated": spec.path, "drop_rate": rate}
    write_json(out / "fig3_overlap.json", data)
    plot_overlap(
        data,
        out / "fig3_overlap.png",
        title=f"{column_label(rate)} dropped, seed {seed}: background proposals of "
        f"{analysis.images} training images (RPN of the baseline)",
    )
    return data


def fig5_rate(rates: list[float]) -> float:
    """The drop rate Fig. 5 shows: 40% as in the paper, else the closest one run."""
    return min(rates, key=lambda r: (abs(r - 0.4), r))


def make_fig5(
    out: Path,
    outcomes: list[CellOutcome],
    preset: Preset,
    layout: DataLayout,
    seed: int,
    *,
    score_threshold: float = 0.3,
) -> list[str]:
    """The same test images (the ones with most objects) under baseline-full, baseline-R and overlap-soft-R."""
    from softsampling.engine.data import load_image
    from softsampling.engine.draw import render_detections
    from softsampling.engine.predict import load_run, predict_images
    from softsampling.experiments.figures import plot_examples

    if preset.rates:
        rate = fig5_rate(list(preset.rates))
        wanted = [
            ("baseline", 0.0, "baseline, full annotations"),
            ("baseline", rate, f"baseline, {column_label(rate)} dropped"),
            ("overlap_soft", rate, f"overlap soft sampling, {column_label(rate)} dropped"),
        ]
    else:
        wanted = [(m, 0.0, ROW_LABEL.get(m, m)) for m in preset.methods]
    found = [(_find(outcomes, seed, m, r), title) for m, r, title in wanted]
    runs = [(o, t) for o, t in found if o is not None]
    test = layout.test.load(out)
    n_boxes = test.boxes_per_image()
    rows_idx = sorted(np.argsort(-n_boxes, kind="stable")[: preset.example_images].tolist())
    images = [load_image(test.image_path(r)) for r in rows_idx]
    scale = max(1, int(round(384 / max(1, max(im.shape[-1] for im in images))))) if images else 1
    rendered: list[list[Any]] = [[] for _ in rows_idx]
    for outcome, _ in runs:
        model, label_map, _ = load_run(out / outcome.cell.run_dir)
        preds = predict_images(model, images)
        names = dict(zip(label_map.category_ids, label_map.names, strict=True))
        for i, (im, p) in enumerate(zip(images, preds, strict=True)):
            keep = p["scores"] >= score_threshold
            labels = label_map.to_dataset(p["labels"][keep].numpy())
            rendered[i].append(
                render_detections(
                    im,
                    p["boxes"][keep].numpy(),
                    [names[int(c)] for c in labels],
                    p["scores"][keep].numpy(),
                    scale=scale,
                )
            )
    plot_examples(
        [
            (f"test {test.file_names[r]} ({int(n_boxes[r])} objects)", ims)
            for r, ims in zip(rows_idx, rendered, strict=True)
        ],
        out / "fig5_examples.png",
        column_titles=[t for _, t in runs],
    )
    return [t for _, t in runs]


# --------------------------------------------------------------------------- report
def environment() -> dict[str, str]:
    """Package versions and machine, for the report."""
    import torch
    import torchvision

    from softsampling import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "python": sys.version.split()[0],
        "softsampling": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, GPU: {gpu}",
        "processor": platform.processor() or platform.machine(),
    }


def write_report(
    out: Path,
    preset: Preset,
    seeds: list[int],
    outcomes: list[CellOutcome],
    md: dict[str, str],
    *,
    wall_seconds: float,
    figures: dict[str, str],
    command: str,
) -> Path:
    """``report.md``: tables, targets, figures, the run list (configs, wall times) and the environment."""
    env = environment()
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    lines = [
        f"# Soft Sampling reproduction: preset `{preset.name}`",
        "",
        f"{preset.description}. Seeds: {', '.join(map(str, seeds))}. Drop rates: "
        f"{', '.join(column_label(r) for r in preset.rates) or 'none (annotations as given)'}. "
        f"Budget: {preset.budget}.",
        "",
        f"Command: `{command}`  ",
        f"Wall time of this invocation: {wall_seconds / 60:.1f} min "
        f"({sum(o.status == 'done' for o in outcomes)} runs trained now, "
        f"{sum(o.status == 'reused' for o in outcomes)} reused, {len(failed)} failed or skipped).",
        "",
    ]
    if preset.rates:
        lines += [
            "## Table 1: test mAP@0.5 (%)",
            "",
            "VOC metric (area under the precision envelope), IoU 0.5, mean ± sample std over seeds.",
            "`-`: not run (needs missing annotations); `n/a`: run failed.",
            "",
            md["table1"],
            "### Gap closed towards the upper bound",
            "",
            "(method - baseline) / (upper bound - baseline), on the means over seeds.",
            "",
            md["gap"],
            f"### mAP@0.5 (%) with detections below score {SCORE_THRESHOLD:g} discarded",
            "",
            md["score"],
        ]
        if "val" in md:
            lines += [
                "### Validation mAP@0.5 (%)",
                "",
                "Measured by each training run on the validation split after its last step; the best new "
                "strategy is chosen on these numbers, never on test.",
                "",
                md["val"],
            ]
        if "pseudo" in md:
            lines += [
                "### Pseudo boxes vs. dropped boxes",
                "",
                "The teacher's pseudo boxes on the curated training set, matched to the boxes curation dropped "
                "(same class, IoU >= 0.5); precision and recall as fractions, mean ± std over seeds.",
                "",
                md["pseudo"],
            ]
        if "choice" in md:
            lines += ["## Best new strategy", "", md["choice"] + " Targets (e)-(g) measure this strategy on test.", ""]
        lines += [
            "## Targets",
            "",
            md["targets"],
        ]
    else:
        lines += [
            "## Test mAP@0.5 (%)",
            "",
            f"{metric_label(preset)[0].upper()}{metric_label(preset)[1:]}, IoU 0.5, mean ± sample std over seeds; "
            f"the score column discards detections below {SCORE_THRESHOLD:g}. `n/a`: run failed.",
            "",
            md["table1"],
        ]
    lines += ["## Figures", ""]
    captions = {
        "fig2": "Fig. 2: mAP vs. score threshold of the full-data and lowest-drop baselines, on training images "
        "(full annotations) and test."
        if preset.rates
        else "mAP vs. score threshold of every method on test.",
        "fig3": "Fig. 3: for background proposals of the curated training set, the probability that a proposal lies "
        "on a dropped object vs. its overlap with the annotated boxes, with the paper's Gompertz weight and one "
        "fitted to 1 - P.",
        "fig5": "Fig. 5: the same test images under each model (detections with score >= 0.3).",
    }
    for key, file in figures.items():
        lines += [f"![{key}]({file})", "", captions.get(key, ""), ""]
    if "fig3_fit" in md:
        lines += [md["fig3_fit"], ""]
    lines += [
        "## Runs",
        "",
        "| seed | method | drop | status | test mAP | val mAP | train s | eval s | config |",
        "|---:|:---|---:|:---|---:|---:|---:|---:|:---|",
    ]
    for o in outcomes:
        r = o.results or {}
        test, val = r.get("test") or {}, r.get("val") or {}
        config = f"[config.yaml]({o.cell.run_dir}/config.yaml)"
        lines.append(
            f"| {o.cell.seed} | {ROW_LABEL.get(o.cell.method, o.cell.method)} | {column_label(o.cell.rate)} | "
            f"{o.status} | {_pct(test.get('mAP'))} | {_pct(val.get('mAP'))} | "
            f"{r.get('train_seconds', '')} | {r.get('eval_seconds', '')} "
            f"| {config} |"
        )
    if failed:
        lines += ["", "### Failed runs", ""]
        for o in failed:
            tail = "\n".join("    " + ln for ln in (o.error or "").splitlines()[-10:])
            lines += [f"- `{o.cell.key}` ({o.status}), log `{o.cell.run_dir}/cell.log`:", "", tail, ""]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    lines += [
        "",
        f"Runs live in `runs/seed<S>/<method>-<{rate_tag(0.3)}|full>-<config digest>/`; rerunning the same "
        "command reuses every finished run.",
    ]
    path = out / "report.md"
    _write(path, "\n".join(lines) + "\n")
    return path


def build_outputs(
    out: Path,
    preset: Preset,
    seeds: list[int],
    layout: DataLayout,
    outcomes: list[CellOutcome],
    *,
    wall_seconds: float,
    command: str,
    log: Callable[[str], None] = print,
) -> Path:
    """Tables, figures and report; a figure that cannot be made is reported and left out."""
    md = write_tables(out, outcomes, preset, seeds)
    figures: dict[str, str] = {}
    make_fig2(out, outcomes, preset)
    figures["fig2"] = "fig2_score_threshold.png"
    try:
        fig3 = bool(preset.rates) and preset.kind == "two_stage"  # Fig. 3 analyses an RPN's proposals
        data = make_fig3(out, outcomes, preset, layout, seeds[0]) if fig3 else None
        if data is not None:
            figures["fig3"] = "fig3_overlap.png"
            fit = data.get("fitted")
            md["fig3_fit"] = (
                f"Fitted Gompertz weight to 1 - P(dropped | overlap): a = {fit['a']:.3f}, "
                f"b = {fit['b']:.3g}, c = {fit['c']:.3g} (paper: a = 0.25, b = 50, c = 20); "
                "curve data in `fig3_overlap.json`."
                if fit
                else "Too few overlap bins with proposals to fit a, b, c; see `fig3_overlap.json`."
            )
        elif fig3:
            log("fig3: skipped, the baseline at the largest drop rate did not finish")
    except Exception as exc:  # a figure must not cost the tables
        log(f"fig3: failed ({exc!r})")
    try:
        if make_fig5(out, outcomes, preset, layout, seeds[0]):
            figures["fig5"] = "fig5_examples.png"
    except Exception as exc:
        log(f"fig5: failed ({exc!r})")
    return write_report(out, preset, seeds, outcomes, md, wall_seconds=wall_seconds, figures=figures, command=command)
