"""The one-stage study's tables and targets (preset ``digits-one-stage``), from per-cell results.

The rows are the preset's: ``rate_methods`` at every drop rate, ``methods``
(the baseline) also on the full annotations; a row the study does not run on
full data shows ``-`` there. Cells follow :func:`softsampling.experiments.table.format_cell`
(mean ± sample std over seeds, ``n/a`` for a failed run). The targets, on the
means over seeds, at the largest drop rate ("50%"):

- (os-a) the baseline loses >= 5 mAP points against the full-data baseline;
- (os-b) overlap soft sampling recovers >= 50% of that loss:
  ``(overlap soft - baseline) / (full - baseline) >= 0.5``.

Example:
    >>> from softsampling.experiments.table import Scores
    >>> rows = [("baseline", 0.0, 0.80), ("baseline", 0.5, 0.70), ("overlap_soft", 0.5, 0.76)]
    >>> s = Scores.from_results([{"seed": 0, "method": m, "rate": r, "test": {"mAP": v}} for m, r, v in rows])
    >>> [(t.name, t.verdict) for t in one_stage_targets(s, [0.5])]
    [('os-a', 'PASS'), ('os-b', 'PASS')]
"""

from __future__ import annotations

from softsampling.experiments.presets import Preset
from softsampling.experiments.table import (
    ROW_LABEL,
    Scores,
    Target,
    column_label,
    format_cell,
    gap_closed,
)

MIN_LOSS_POINTS = 5.0  # (os-a): the baseline at the largest drop rate loses at least this much
MIN_RECOVERY = 0.5  # (os-b): the share of that loss overlap soft sampling recovers

Table = tuple[list[str], list[list[str]]]


def one_stage_table(scores: Scores, preset: Preset, *, seeds: int, threshold: float | None = None) -> Table:
    """Header and rows: the preset's rows, columns ``no drop`` then each drop rate."""
    columns = [0.0, *(float(r) for r in preset.rates)]
    header = ["method"] + [column_label(r) for r in columns]
    rows = []
    for method in _rows(preset):
        cells = [
            format_cell(scores.values_of(method, r, threshold), expected=seeds)
            if (r > 0 and method in preset.rate_methods) or (r == 0 and method in preset.methods)
            else "-"
            for r in columns
        ]
        rows.append([ROW_LABEL.get(method, method), *cells])
    return header, rows


def one_stage_gap_table(scores: Scores, preset: Preset) -> Table:
    """Share of the baseline-to-upper-bound gap each method closes, per drop rate (means over seeds)."""
    header = ["method"] + [column_label(r) for r in preset.rates]
    rows = []
    for method in preset.rate_methods:
        if method in ("baseline", "upper_bound"):
            continue
        cells = []
        for r in preset.rates:
            g = gap_closed(scores.mean(method, r), scores.mean("baseline", r), scores.mean("upper_bound", r))
            cells.append("n/a" if g is None else f"{100 * g:.0f}%")
        rows.append([ROW_LABEL.get(method, method), *cells])
    return header, rows


def one_stage_targets(scores: Scores, rates: list[float]) -> list[Target]:
    """Targets (os-a) and (os-b) of the module docstring; ``passed`` is ``None`` when runs are missing."""
    hi = max(rates)
    col = column_label(hi)
    full, base, oss = scores.mean("baseline", 0.0), scores.mean("baseline", hi), scores.mean("overlap_soft", hi)
    req_a = f"baseline at {col} >= {MIN_LOSS_POINTS:g} mAP points below full data"
    req_b = f"at {col}, overlap soft sampling recovers >= {100 * MIN_RECOVERY:.0f}% of the baseline's loss"
    if full is None or base is None:
        return [Target("os-a", req_a, "missing runs", None), Target("os-b", req_b, "missing runs", None)]
    loss = full - base
    targets = [
        Target(
            "os-a",
            req_a,
            f"full {full:.2f}, baseline {col} {base:.2f}: {loss:.2f} points lower",
            loss >= MIN_LOSS_POINTS,
        )
    ]
    if oss is None:
        targets.append(Target("os-b", req_b, "missing runs", None))
    elif loss <= 0:
        targets.append(Target("os-b", req_b, f"baseline lost nothing ({full:.2f} -> {base:.2f}): undefined", None))
    else:
        rec = (oss - base) / loss
        measured = f"recovers {100 * rec:.0f}% ({base:.2f} -> {oss:.2f} of {full:.2f})"
        targets.append(Target("os-b", req_b, measured, rec >= MIN_RECOVERY))
    return targets


def one_stage_tables(
    scores: Scores, preset: Preset, *, seeds: int, score_threshold: float
) -> tuple[Table, Table, Table, list[Target]]:
    """What the report shows for a ``one_stage`` preset: the table, the gap table, the table at
    ``score_threshold``, and the targets."""
    return (
        one_stage_table(scores, preset, seeds=seeds),
        one_stage_gap_table(scores, preset),
        one_stage_table(scores, preset, seeds=seeds, threshold=score_threshold),
        one_stage_targets(scores, list(preset.rates)),
    )


def _rows(preset: Preset) -> list[str]:
    """The full-data rows, then the drop-rate rows, each once, in the preset's order."""
    return list(dict.fromkeys([*preset.methods, *preset.rate_methods]))
