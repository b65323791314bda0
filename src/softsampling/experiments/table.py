"""Table 1, the "gap closed" table and the issue's targets, from per-cell results (pure functions).

All mAP numbers here are in points (percent, 0..100). A cell of Table 1 is
the mean over seeds ``± `` the sample standard deviation (``ddof=1``); with a
single seed only the mean is shown; ``-`` marks combinations the study does
not run (hard negatives, score soft sampling and the upper bound need missing
annotations); ``n/a`` marks a combination that should exist but has no result
(a failed run). ``(n=k)`` is appended when fewer seeds than expected finished.

Example:
    >>> s = Scores.from_results(
    ...     [
    ...         {
    ...             "seed": 0,
    ...             "method": "baseline",
    ...             "rate": 0.0,
    ...             "test": {"mAP": 0.90, "sweep": {"thresholds": [0.8], "mAP": [0.7]}},
    ...         },
    ...         {
    ...             "seed": 1,
    ...             "method": "baseline",
    ...             "rate": 0.0,
    ...             "test": {"mAP": 0.92, "sweep": {"thresholds": [0.8], "mAP": [0.72]}},
    ...         },
    ...     ]
    ... )
    >>> format_cell(s.values_of("baseline", 0.0), expected=2)
    '91.00 ± 1.41'
    >>> round(s.mean("baseline", 0.0, threshold=0.8), 2)
    71.0
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROWS: tuple[tuple[str, str], ...] = (
    ("baseline", "Baseline"),
    ("hard_negative_0.1", "Hard negative (0.1)"),
    ("hard_negative_0.2", "Hard negative (0.2)"),
    ("overlap_soft", "Soft sampling (overlap)"),
    ("score_soft", "Soft sampling (score)"),
    ("upper_bound", "Upper bound"),
    ("pseudo_label", "Pseudo labels (teacher: baseline)"),
    ("objectness_mining", "Objectness mining"),
    ("overlap_soft+pseudo_label", "Soft sampling (overlap) + pseudo labels"),
)
ROW_LABEL = {**dict(ROWS), "brl": "Background recalibration loss (BRL)"}  # brl: one-stage study only
# the rows also run on the full annotations
NO_DROP_METHODS = ("baseline", "overlap_soft", "pseudo_label", "objectness_mining", "overlap_soft+pseudo_label")
GAP_ROWS = (
    "hard_negative_0.1",
    "hard_negative_0.2",
    "overlap_soft",
    "score_soft",
    "pseudo_label",
    "objectness_mining",
    "overlap_soft+pseudo_label",
)


def column_label(rate: float) -> str:
    """``0.0 -> 'no drop'``, ``0.3 -> '30%'``."""
    return "no drop" if rate == 0 else f"{round(rate * 100):d}%"


def applicable(method: str, rate: float) -> bool:
    """Whether the study runs ``method`` at ``rate`` (on full data only baseline and overlap soft sampling)."""
    return rate > 0 or method in NO_DROP_METHODS


@dataclass
class Scores:
    """Per-seed test mAP (points) per ``(method, rate, threshold)``; ``threshold`` ``None`` is the plain mAP."""

    values: dict[tuple[str, float, float | None], dict[int, float]] = field(default_factory=dict)

    @classmethod
    def from_results(cls, results: list[dict[str, Any]], split: str = "test") -> Scores:
        """From ``results.json`` dicts (keys ``seed``, ``method``, ``rate`` and ``split`` -> ``mAP``, ``sweep``)."""
        scores = cls()
        for r in results:
            part = r.get(split)
            if not part:
                continue
            key = (str(r["method"]), float(r["rate"]))
            scores.values.setdefault((*key, None), {})[int(r["seed"])] = 100.0 * float(part["mAP"])
            sweep = part.get("sweep") or {}
            for t, m in zip(sweep.get("thresholds", []), sweep.get("mAP", []), strict=True):
                scores.values.setdefault((*key, round(float(t), 6)), {})[int(r["seed"])] = 100.0 * float(m)
        return scores

    def values_of(self, method: str, rate: float, threshold: float | None = None) -> list[float]:
        t = None if threshold is None else round(float(threshold), 6)
        found = self.values.get((method, float(rate), t), {})
        return [found[s] for s in sorted(found)]

    def mean(self, method: str, rate: float, threshold: float | None = None) -> float | None:
        v = self.values_of(method, rate, threshold)
        return float(np.mean(v)) if v else None


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value).

    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)
    >>> mean_std([4.0])
    (4.0, None)
    """
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def format_cell(values: list[float], *, expected: int, digits: int = 2) -> str:
    """``'mean ± std'`` over seeds (see the module docstring); ``'n/a'`` for no values."""
    if not values:
        return "n/a"
    mean, std = mean_std(values)
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (f" (n={len(values)})" if len(values) < expected else "")


def table1(
    scores: Scores, rates: list[float], *, seeds: int, threshold: float | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of Table 1: rows :data:`ROWS`, columns ``no drop`` then each rate."""
    columns = [0.0] + [float(r) for r in rates]
    header = ["method"] + [column_label(r) for r in columns]
    rows = []
    for method, label in ROWS:
        cells = [
            format_cell(scores.values_of(method, r, threshold), expected=seeds) if applicable(method, r) else "-"
            for r in columns
        ]
        rows.append([label, *cells])
    return header, rows


def gap_closed(method: float | None, baseline: float | None, upper: float | None) -> float | None:
    """``(method - baseline) / (upper - baseline)``, or ``None`` when undefined (missing, or upper <= baseline).

    >>> round(gap_closed(78.24, 76.75, 79.26), 3)  # the paper's overlap soft sampling at 30%
    0.594
    >>> gap_closed(1.0, 2.0, 2.0) is None
    True
    """
    if method is None or baseline is None or upper is None or not upper > baseline:
        return None
    return (method - baseline) / (upper - baseline)


def gap_table(scores: Scores, rates: list[float]) -> tuple[list[str], list[list[str]]]:
    """Share of the baseline-to-upper-bound gap each method closes, per rate, on the means over seeds (percent)."""
    header = ["method"] + [column_label(r) for r in rates]
    rows = []
    for method in GAP_ROWS:
        cells = []
        for r in rates:
            g = gap_closed(scores.mean(method, r), scores.mean("baseline", r), scores.mean("upper_bound", r))
            if g is None:
                ub, b = scores.mean("upper_bound", r), scores.mean("baseline", r)
                measured = scores.mean(method, r) is not None and ub is not None and b is not None
                cells.append("n/a (upper bound <= baseline)" if measured else "n/a")
            else:
                cells.append(f"{100 * g:.0f}%")
        rows.append([ROW_LABEL[method], *cells])
    return header, rows


@dataclass
class Target:
    """One acceptance target: ``passed`` is ``None`` when it cannot be measured (missing runs)."""

    name: str
    requirement: str
    measured: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def evaluate_targets(scores: Scores, rates: list[float], *, score_threshold: float = 0.8) -> list[Target]:
    """The issue's targets (a)-(d) on the means over seeds; "50%" is the largest drop rate of the study.

    (a) baseline at 50% >= 3 points below the full-data baseline;
    (b) overlap soft sampling >= baseline at every drop rate;
    (c) at 50%, overlap soft sampling recovers >= 50% of what the baseline lost against full data;
    (d) detections below ``score_threshold`` discarded: overlap soft sampling at 50% keeps >= 80% of
        the full-data baseline's mAP while the baseline at 50% keeps < 65%.
    """
    hi = max(rates)
    col = column_label(hi)
    full, base, oss = scores.mean("baseline", 0.0), scores.mean("baseline", hi), scores.mean("overlap_soft", hi)
    targets = []

    if full is None or base is None:
        targets.append(Target("a", f"baseline at {col} >= 3 mAP points below full data", "missing runs", None))
    else:
        targets.append(
            Target(
                "a",
                f"baseline at {col} >= 3 mAP points below full data",
                f"full {full:.2f}, baseline {col} {base:.2f}: {full - base:.2f} points lower",
                full - base >= 3.0,
            )
        )

    parts, worse, missing = [], False, False
    for r in rates:
        o, b = scores.mean("overlap_soft", r), scores.mean("baseline", r)
        if o is None or b is None:
            parts.append(f"{column_label(r)}: missing")
            missing = True
        else:
            parts.append(f"{column_label(r)}: {o:.2f} vs {b:.2f} ({o - b:+.2f})")
            worse = worse or o < b
    verdict_b = False if worse else (None if missing else True)
    targets.append(Target("b", "overlap soft sampling >= baseline at every drop rate", "; ".join(parts), verdict_b))

    if full is None or base is None or oss is None:
        targets.append(
            Target("c", f"at {col}, overlap soft sampling recovers >= 50% of the baseline's loss", "missing runs", None)
        )
    elif full - base <= 0:
        targets.append(
            Target(
                "c",
                f"at {col}, overlap soft sampling recovers >= 50% of the baseline's loss",
                f"baseline lost nothing ({full:.2f} -> {base:.2f}): undefined",
                None,
            )
        )
    else:
        rec = (oss - base) / (full - base)
        targets.append(
            Target(
                "c",
                f"at {col}, overlap soft sampling recovers >= 50% of the baseline's loss",
                f"recovers {100 * rec:.0f}% ({base:.2f} -> {oss:.2f} of {full:.2f})",
                rec >= 0.5,
            )
        )

    t = score_threshold
    full_t, base_t, oss_t = (
        scores.mean(m, r, t) for m, r in (("baseline", 0.0), ("baseline", hi), ("overlap_soft", hi))
    )
    req = (
        f"detections below {t:g} discarded: overlap soft sampling at {col} keeps >= 80% of full-data mAP, "
        f"baseline < 65%"
    )
    if full_t is None or base_t is None or oss_t is None:
        targets.append(Target("d", req, "missing runs", None))
    elif full_t <= 0:
        targets.append(Target("d", req, f"full-data mAP at score >= {t:g} is 0: undefined", None))
    else:
        keep_o, keep_b = oss_t / full_t, base_t / full_t
        targets.append(
            Target(
                "d",
                req,
                f"full {full_t:.2f}; overlap soft {oss_t:.2f} ({100 * keep_o:.0f}%), "
                f"baseline {base_t:.2f} ({100 * keep_b:.0f}%)",
                keep_o >= 0.8 and keep_b < 0.65,
            )
        )
    return targets


def targets_table(targets: list[Target]) -> tuple[list[str], list[list[str]]]:
    return ["target", "requirement", "measured", "verdict"], [
        [f"({t.name})", t.requirement, t.measured, t.verdict] for t in targets
    ]


def markdown(header: list[str], rows: list[list[str]], *, numeric: bool = True) -> str:
    """A GitHub Markdown table: first column left-aligned, the others right-aligned (``numeric``) or left."""

    def esc(v: str) -> str:
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join([":---"] + [("---:" if numeric else ":---")] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()
