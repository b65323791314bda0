"""Table 1, the "gap closed" table and the issue's targets, from per-cell results (pure functions).

Targets (a)-(d) measure the paper's methods (:func:`evaluate_targets`); (e)-(h)
the later ones (:func:`evaluate_new_targets`): "the best new strategy" is the
:data:`NEW_METHODS` row with the highest mean validation mAP at the largest
drop rate (:func:`best_new_strategy`; test mAP never enters the choice), and
(h) reads the pseudo-box numbers each pseudo-label run records
(:class:`PseudoBoxes`).

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
    ("overlap_soft+pseudo_label", "Soft sampling (overlap) + pseudo labels (teacher: overlap soft)"),
)
ROW_LABEL = {**dict(ROWS), "brl": "Background recalibration loss (BRL)"}  # brl: one-stage study only
# the rows also run on the full annotations
NO_DROP_METHODS = ("baseline", "overlap_soft", "overlap_soft+pseudo_label")  # = the digits preset's full-data rows
GAP_ROWS = (
    "hard_negative_0.1",
    "hard_negative_0.2",
    "overlap_soft",
    "score_soft",
    "pseudo_label",
    "objectness_mining",
    "overlap_soft+pseudo_label",
)
# the later methods, candidates for "the best new strategy" of targets (e)-(g)
NEW_METHODS = ("pseudo_label", "objectness_mining", "overlap_soft+pseudo_label")
# rows whose runs write pseudo boxes (each from its own teacher: grid.PRIOR_ROWS); target (h) reads the best
# new strategy's when it is one of them, else the first with numbers
PSEUDO_ROWS = ("pseudo_label", "overlap_soft+pseudo_label")
# quantity of :class:`PseudoBoxes` -> key of results.json "pseudo_boxes" (softsampling.experiments.cell)
PSEUDO_QUANTITIES = {"precision": "precision_vs_dropped", "recall": "recall_vs_dropped", "count": "count"}


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


@dataclass
class PseudoBoxes:
    """Per-seed pseudo-box numbers per ``(method, rate, quantity)``, from ``results.json`` ``"pseudo_boxes"``.

    ``quantity``: ``precision`` and ``recall`` against the dropped boxes (fractions) and ``count``.
    """

    values: dict[tuple[str, float, str], dict[int, float]] = field(default_factory=dict)

    @classmethod
    def from_results(cls, results: list[dict[str, Any]]) -> PseudoBoxes:
        stats = cls()
        for r in results:
            numbers = r.get("pseudo_boxes")  # absent in results.json written before it existed
            if not numbers:
                continue
            for quantity, key in PSEUDO_QUANTITIES.items():
                if numbers.get(key) is not None:
                    where = (str(r["method"]), float(r["rate"]), quantity)
                    stats.values.setdefault(where, {})[int(r["seed"])] = float(numbers[key])
        return stats

    def values_of(self, method: str, rate: float, quantity: str) -> list[float]:
        found = self.values.get((method, float(rate), quantity), {})
        return [found[s] for s in sorted(found)]

    def mean(self, method: str, rate: float, quantity: str) -> float | None:
        v = self.values_of(method, rate, quantity)
        return float(np.mean(v)) if v else None


def pseudo_table(stats: PseudoBoxes, rates: list[float], *, seeds: int) -> tuple[list[str], list[list[str]]]:
    """Pseudo boxes vs. dropped boxes: a row per pseudo-label method with results and drop rate.

    Precision and recall (fractions) and the number of pseudo boxes, mean ± std over seeds.
    """
    header = ["method", "drop", "precision vs dropped", "recall vs dropped", "pseudo boxes"]
    rows = []
    for method in PSEUDO_ROWS:
        if not any(stats.values_of(method, r, q) for r in rates for q in PSEUDO_QUANTITIES):
            continue
        for r in rates:
            rows.append(
                [
                    ROW_LABEL[method],
                    column_label(r),
                    format_cell(stats.values_of(method, r, "precision"), expected=seeds, digits=3),
                    format_cell(stats.values_of(method, r, "recall"), expected=seeds, digits=3),
                    format_cell(stats.values_of(method, r, "count"), expected=seeds, digits=0),
                ]
            )
    return header, rows


@dataclass
class Choice:
    """The best new strategy: the :data:`NEW_METHODS` row with the highest mean validation mAP at ``rate``.

    ``method`` is ``None`` when no candidate has a validation mAP there; ``val`` holds every candidate's
    mean validation mAP in points (``None``: no result).
    """

    method: str | None
    rate: float
    val: dict[str, float | None]

    @property
    def label(self) -> str:
        return "none" if self.method is None else ROW_LABEL[self.method]

    def describe(self) -> str:
        """One sentence: which was chosen, on what, with every candidate's validation mAP."""
        col = column_label(self.rate)
        numbers = ", ".join(f"{ROW_LABEL[m]} {'n/a' if v is None else f'{v:.2f}'}" for m, v in self.val.items())
        if self.method is None:
            return f"no new strategy has a validation mAP at {col}, so none was chosen (val mAP@0.5: {numbers})"
        return f"{self.label}, the highest mean validation mAP@0.5 at {col} (test mAP plays no part): {numbers}"


def best_new_strategy(val_scores: Scores, rates: list[float]) -> Choice:
    """Among the :data:`NEW_METHODS` rows present, the one with the highest mean VALIDATION mAP at the
    largest drop rate (ties: the first in :data:`NEW_METHODS`). ``val_scores`` must come from
    ``Scores.from_results(results, split="val")``; test scores never enter the choice.
    """
    hi = max(rates)
    val = {m: val_scores.mean(m, hi) for m in NEW_METHODS}
    present = [(v, -i, m) for i, (m, v) in enumerate(val.items()) if v is not None]
    return Choice(max(present)[2] if present else None, hi, val)


def _all_verdict(failed: bool, missing: bool) -> bool | None:
    """Several checks: FAIL when one failed, else n/a when one could not be measured, else PASS."""
    return False if failed else (None if missing else True)


def evaluate_new_targets(
    scores: Scores,
    choice: Choice,
    pseudo: PseudoBoxes,
    rates: list[float],
    *,
    score_threshold: float = 0.8,
) -> list[Target]:
    """Targets (e)-(h) of the later methods, on the test means over seeds; "50%" is the largest drop rate.

    ``choice`` (:func:`best_new_strategy`, made on validation mAP) names "the best new strategy" M.

    (e) at 50%, M recovers >= 80% of the baseline's loss against full labels, and M >= overlap soft
        sampling at every drop rate;
    (f) detections below ``score_threshold`` discarded: M at 50% keeps >= 90% of the full-data
        baseline's mAP;
    (g) with full labels, M is at most 0.5 points below the baseline;
    (h) at 50%, the pseudo boxes (M's when M learns from pseudo labels, else the first of
        :data:`PSEUDO_ROWS` with numbers there) have
        precision >= 0.9 and recall >= 0.7 against the dropped boxes (means over seeds).
    """
    hi = max(rates)
    col = column_label(hi)
    m = choice.method
    name = f"the best new strategy ({choice.label}, chosen on val)"
    full = scores.mean("baseline", 0.0)
    base = scores.mean("baseline", hi)
    targets = []

    req_e = (
        f"at {col}, {name} recovers >= 80% of the baseline's loss against full labels, "
        "and is >= overlap soft sampling at every drop rate"
    )
    if m is None:
        targets.append(Target("e", req_e, "missing runs (no new strategy has a validation mAP)", None))
    else:
        ours = scores.mean(m, hi)
        failed, missing = False, False
        if full is None or base is None or ours is None:
            parts, missing = ["recovery: missing runs"], True
        elif full - base <= 0:
            parts, missing = [f"recovery: baseline lost nothing ({full:.2f} -> {base:.2f}): undefined"], True
        else:
            rec = (ours - base) / (full - base)
            parts = [f"recovers {100 * rec:.0f}% ({base:.2f} -> {ours:.2f} of {full:.2f})"]
            failed = rec < 0.8
        for r in rates:
            a, o = scores.mean(m, r), scores.mean("overlap_soft", r)
            if a is None or o is None:
                parts.append(f"{column_label(r)}: missing")
                missing = True
            else:
                parts.append(f"{column_label(r)}: {a:.2f} vs overlap soft {o:.2f} ({a - o:+.2f})")
                failed = failed or a < o
        targets.append(Target("e", req_e, "; ".join(parts), _all_verdict(failed, missing)))

    t = score_threshold
    req_f = f"detections below {t:g} discarded: {name} at {col} keeps >= 90% of the full-data baseline's mAP"
    full_t = scores.mean("baseline", 0.0, t)
    ours_t = None if m is None else scores.mean(m, hi, t)
    if full_t is None or ours_t is None:
        targets.append(Target("f", req_f, "missing runs", None))
    elif full_t <= 0:
        targets.append(Target("f", req_f, f"full-data mAP at score >= {t:g} is 0: undefined", None))
    else:
        keep = ours_t / full_t
        targets.append(
            Target("f", req_f, f"full {full_t:.2f}; {choice.label} {ours_t:.2f} ({100 * keep:.0f}%)", keep >= 0.9)
        )

    req_g = f"with full labels, {name} is at most 0.5 mAP points below the baseline"
    ours_full = None if m is None else scores.mean(m, 0.0)
    if full is None or ours_full is None:
        targets.append(Target("g", req_g, "missing runs", None))
    else:
        targets.append(
            Target(
                "g",
                req_g,
                f"baseline {full:.2f}, {choice.label} {ours_full:.2f} ({ours_full - full:+.2f})",
                ours_full >= full - 0.5,
            )
        )

    req_h = f"at {col}, pseudo boxes have precision >= 0.9 and recall >= 0.7 against the dropped boxes"
    readable = [r for r in PSEUDO_ROWS if pseudo.values_of(r, hi, "recall")]
    source = m if m in readable else next(iter(readable), None)
    if source is None:
        targets.append(Target("h", req_h, "missing runs (no pseudo-box summary against dropped boxes)", None))
    else:
        recall = pseudo.mean(source, hi, "recall")
        precision = pseudo.mean(source, hi, "precision")  # None: no seed had a pseudo box
        assert recall is not None
        seeds = len(pseudo.values_of(source, hi, "recall"))
        shown = "undefined (no pseudo boxes)" if precision is None else f"{precision:.3f}"
        targets.append(
            Target(
                "h",
                req_h,
                f"{ROW_LABEL[source]}: precision {shown}, recall {recall:.3f} (mean over {seeds} seed(s))",
                _all_verdict(recall < 0.7 or (precision is not None and precision < 0.9), precision is None),
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
