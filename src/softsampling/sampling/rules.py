"""Assignment rules and THE table of rules and named strategies (pure tensor code).

The common IoU matcher (:func:`softsampling.sampling.assign.match`) labels
every RoI; a *strategy* is then an ordered list of rules. A rule is a small
pure function::

    rule(state: Assignment, ctx: ImageContext, **params) -> Assignment

that reads the per-RoI tensors of ``state`` (labels, weights, overlaps,
matched box) and the image's context ``ctx`` and returns new tensors (it never
modifies its inputs). Labels: ``> 0`` class, ``0`` background, ``-1`` ignored.
After the last rule every ignored RoI gets weight 0.

:data:`RULES` is the single source of rule names, parameters, defaults and
one-line descriptions; :data:`STRATEGIES` names the compositions users pick
with ``strategy: NAME``. Config validation, ``--help``, docs/strategies.md and
the reproduce grid read them. Parameters live in one flat namespace
(``strategy_params``): a name used by two rules (``a``, ``b``, ``c``) means the
same value for both.

Adding a rule: write the function here, add a :class:`RuleSpec` to
:data:`RULES` (its parameters, defaults and a ``check``), add a test in
tests/sampling/test_rules.py. See docs/strategies.md, "Adding a rule".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from softsampling.sampling.boxes import check_boxes, max_iou
from softsampling.sampling.weights import DEFAULT_A, DEFAULT_B, DEFAULT_C, gompertz_weight, score_weight


class Assignment(NamedTuple):
    """Per-RoI labels and weights; every field has one entry per RoI."""

    labels: Tensor  # int64 [N]: class id > 0 foreground, 0 background, -1 ignored
    weights: Tensor  # float32 [N]: classification-loss weight; 0 where ignored
    overlaps: Tensor  # float32 [N]: max IoU with any annotated box (0 without annotations)
    matched_gt: Tensor  # int64 [N]: box it is foreground for, -1 otherwise; G + j means pseudo box j
    # bool [N]: background anchors whose focal term is recalibrated (rule ``brl``; one-stage heads read it).
    # The matcher sets all False; None only where an older caller built an Assignment without it.
    recalibrate: Tensor | None = None


@dataclass(frozen=True)
class ImageContext:
    """What the rules may read about one image besides the per-RoI state.

    Only ``proposals``, ``gt_boxes`` and ``gt_labels`` are always present; a rule
    that needs another field raises ``ValueError`` naming it when it is ``None``.
    """

    proposals: Tensor  # float [N, 4] the RoIs
    gt_boxes: Tensor  # float [G, 4] annotated boxes
    gt_labels: Tensor  # int64 [G] >= 1
    group_of: Tensor | None = None  # bool [G]
    dropped_boxes: Tensor | None = None  # float [K, 4] boxes curation removed (upper_bound)
    prior_scores: Tensor | None = None  # float [N, C] a prior detector's softmax scores (score_soft)
    thresholds: Tensor | None = None  # float [C] per-class T (score_soft)
    pseudo_boxes: Tensor | None = None  # float [P, 4] a teacher's boxes (pseudo_label)
    pseudo_labels: Tensor | None = None  # int64 [P] >= 1
    pseudo_scores: Tensor | None = None  # float [P] teacher confidence
    objectness: Tensor | None = None  # float [N] RPN objectness probability (objectness_mining)
    iteration: int | None = None  # current training iteration (0-based)
    iterations: int | None = None  # total training iterations
    # overlap of the RoIs with boxes -> (max [N], argmax [N]); None: IoU (max_iou). FCOS: centered_box_iou
    overlap: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None

    def max_overlap(self, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Max overlap of each RoI with ``boxes`` and the argmax (the detector's measure; IoU by default)."""
        return (self.overlap or max_iou)(self.proposals, boxes)


def _need(ctx: ImageContext, name: str, rule: str, what: str) -> Tensor:
    value: Tensor | None = getattr(ctx, name)  # one of the optional Tensor fields
    if value is None:
        raise ValueError(f"strategy {rule!r} needs {name} ({what})")
    return value


# --------------------------------------------------------------------------- the rules
def hard_negative(state: Assignment, ctx: ImageContext, *, min_overlap: float) -> Assignment:
    """Background RoIs with ``overlap < min_overlap`` are ignored (PAPER.md, hard negatives)."""
    labels = state.labels.clone()
    labels[(labels == 0) & (state.overlaps < min_overlap)] = -1
    return state._replace(labels=labels)


def overlap_soft(state: Assignment, ctx: ImageContext, *, a: float, b: float, c: float) -> Assignment:
    """Background weight ``w(o) = a + (1-a) exp(-b exp(-c o))`` (PAPER.md, overlap soft sampling)."""
    background = state.labels == 0
    weights = state.weights.clone()
    weights[background] = gompertz_weight(state.overlaps[background], a, b, c).float()
    return state._replace(weights=weights)


def score_soft(state: Assignment, ctx: ImageContext, *, a: float, b: float, c: float) -> Assignment:
    """Background weight ``G(s, T[k])``, ``k``/``s`` the prior's top non-background class/score."""
    thresholds = _need(ctx, "thresholds", "score_soft", "float [C] per-class T, background slot included")
    if ctx.prior_scores is None:
        raise ValueError("strategy 'score_soft' needs proposal_scores (float [N, C] prior softmax scores)")
    n = state.labels.shape[0]
    scores = torch.as_tensor(ctx.prior_scores)
    thresholds = torch.as_tensor(thresholds, dtype=torch.float32, device=scores.device).reshape(-1)
    if scores.dim() != 2 or scores.shape[0] != n or scores.shape[1] < 2:
        raise ValueError(
            f"proposal_scores must have shape [N={n}, C>=2] (background in column 0), got {tuple(scores.shape)}"
        )
    if thresholds.shape[0] != scores.shape[1]:
        raise ValueError(
            f"thresholds must have one entry per class including background (C={scores.shape[1]}), "
            f"got {thresholds.shape[0]}"
        )
    top_score, top_class = scores[:, 1:].float().max(dim=1)
    all_weights = score_weight(top_score, thresholds[top_class + 1], a, b, c).float()
    background = state.labels == 0
    weights = state.weights.clone()
    weights[background] = all_weights[background]
    return state._replace(weights=weights)


def upper_bound(state: Assignment, ctx: ImageContext, *, fg_iou: float) -> Assignment:
    """RoIs that would be foreground of a dropped box (IoU >= fg_iou, above every annotated box) are ignored."""
    dropped = _need(ctx, "dropped_boxes", "upper_bound", "float [K, 4]; pass an empty [0, 4] tensor for none")
    check_boxes("dropped_boxes", dropped)
    dropped_overlaps, _ = ctx.max_overlap(dropped.to(ctx.proposals.device))
    hit = (dropped_overlaps >= fg_iou) & (dropped_overlaps > state.overlaps)
    labels, matched = state.labels.clone(), state.matched_gt.clone()
    labels[hit] = -1
    matched[hit] = -1
    return state._replace(labels=labels, matched_gt=matched)


def pseudo_label(state: Assignment, ctx: ImageContext, *, fg_iou: float, pseudo_weight: str) -> Assignment:
    """Non-foreground RoIs matching a pseudo box (IoU >= fg_iou, above every annotated box) become its class.

    Weight: the teacher's confidence (``pseudo_weight="score"``) or 1 (``"one"``);
    ``matched_gt = G + j`` for pseudo box ``j``.
    """
    boxes = _need(ctx, "pseudo_boxes", "pseudo_label", "float [P, 4]; pass an empty [0, 4] tensor for none")
    check_boxes("pseudo_boxes", boxes)
    labels_p = _need(ctx, "pseudo_labels", "pseudo_label", "int64 [P] class ids >= 1")
    scores_p = _need(ctx, "pseudo_scores", "pseudo_label", "float [P] teacher confidence")
    if not labels_p.shape[0] == scores_p.shape[0] == boxes.shape[0]:
        raise ValueError(
            f"pseudo_boxes ({boxes.shape[0]}), pseudo_labels ({labels_p.shape[0]}) and "
            f"pseudo_scores ({scores_p.shape[0]}) must have one entry per pseudo box"
        )
    if boxes.shape[0] == 0 or state.labels.shape[0] == 0:
        return state
    device = ctx.proposals.device
    iou, index = ctx.max_overlap(boxes.to(device))
    hit = (state.labels <= 0) & (iou >= fg_iou) & (iou > state.overlaps)
    labels, weights, matched = state.labels.clone(), state.weights.clone(), state.matched_gt.clone()
    labels[hit] = labels_p.to(device=device, dtype=torch.int64)[index[hit]]
    weights[hit] = scores_p.to(device=device, dtype=torch.float32)[index[hit]] if pseudo_weight == "score" else 1.0
    matched[hit] = ctx.gt_boxes.shape[0] + index[hit]
    return state._replace(labels=labels, weights=weights, matched_gt=matched)


def objectness_mining(
    state: Assignment, ctx: ImageContext, *, tau: float, mining_iou: float, mining_warmup: float
) -> Assignment:
    """After warm-up, background RoIs with RPN objectness >= tau and overlap <= mining_iou are ignored."""
    if ctx.iteration is not None and ctx.iterations is not None and ctx.iteration < mining_warmup * ctx.iterations:
        return state
    objectness = _need(ctx, "objectness", "objectness_mining", "float [N] RPN objectness probability per RoI")
    if objectness.shape != state.labels.shape:
        raise ValueError(
            f"objectness must have one entry per RoI (N={state.labels.shape[0]}), got {tuple(objectness.shape)}"
        )
    labels = state.labels.clone()
    labels[(labels == 0) & (objectness.to(labels.device) >= tau) & (state.overlaps <= mining_iou)] = -1
    return state._replace(labels=labels)


def brl(state: Assignment, ctx: ImageContext, *, brl_iou: float) -> Assignment:
    """Background anchors with ``overlap < brl_iou`` are confusion anchors (Background Recalibration Loss).

    The rule only marks them (``recalibrate``); the one-stage head's
    :func:`~softsampling.sampling.loss.weighted_focal_loss` then replaces their
    negative focal term by the mirrored one where the class probability is >= 0.5.
    """
    return state._replace(recalibrate=(state.labels == 0) & (state.overlaps < brl_iou))


# --------------------------------------------------------------------------- the table
REQUIRED = object()  # a parameter without default
# The kinds of detector a rule can work in, and how errors and docs name them.
DETECTORS: dict[str, str] = {
    "two_stage": "a two-stage detector (Faster R-CNN, Mask R-CNN: model.name digits, resnet50_fpn, resnet50_fpn_v2)",
    "one_stage": "a one-stage detector (RetinaNet, FCOS: model.name digits_retinanet, digits_fcos, "
    "retinanet_resnet50_fpn, fcos_resnet50_fpn)",
}
# Parameters of the common matcher (every strategy accepts them).
COMMON_PARAMS: dict[str, Any] = {"fg_iou": 0.5, "bg_iou": None, "group_of_threshold": 0.9}


@dataclass(frozen=True)
class RuleSpec:
    """One rule: its function and everything users and tools need to know about it.

    ``params`` are passed to ``apply``; ``options`` are read by the RoI head or
    the training engine (not per RoI); ``common`` names the matcher parameters
    ``apply`` also receives; ``needs`` the :class:`ImageContext` fields it reads
    beyond the boxes; an ``after_sampling`` rule changes only weights, runs on
    the sampled RoIs and must come last (its inputs are costly per RoI);
    ``detectors`` the kinds of detector it works in (:data:`DETECTORS`).
    """

    apply: Callable[..., Assignment]
    summary: str  # one line: what it does (docs table, --help)
    source: str  # the paper it follows
    params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    common: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    after_sampling: bool = False
    check: Callable[[dict[str, Any]], None] | None = None
    detectors: tuple[str, ...] = ("two_stage", "one_stage")


def _in_range(p: dict[str, Any], name: str, low: float, high: float) -> None:
    value = p[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def _check_curve(p: dict[str, Any]) -> None:
    _in_range(p, "a", 0.0, 1.0)
    if float(p["b"]) < 0 or float(p["c"]) < 0:
        raise ValueError(f"b and c must be >= 0, got b={p['b']}, c={p['c']}")


def _check_hard_negative(p: dict[str, Any]) -> None:
    if not 0.0 <= float(p["min_overlap"]) <= float(p["fg_iou"]):
        raise ValueError(f"min_overlap must be in [0, fg_iou={p['fg_iou']}], got {p['min_overlap']}")
    k = p["hard_negative_topk"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise ValueError(f"hard_negative_topk must be an integer >= 0 (or null for no limit), got {k!r}")


def _check_pseudo_label(p: dict[str, Any]) -> None:
    if p["pseudo_weight"] not in ("score", "one"):
        raise ValueError(f"pseudo_weight must be 'score' (teacher confidence) or 'one', got {p['pseudo_weight']!r}")
    for name in ("pseudo_regress", "pseudo_rpn"):
        if not isinstance(p[name], bool):
            raise ValueError(f"{name} must be true or false, got {p[name]!r}")
    for name in ("pseudo_precision", "pseudo_duplicate_iou", "pseudo_duplicate_inside"):
        _in_range(p, name, 0.0, 1.0)


def _check_brl(p: dict[str, Any]) -> None:
    _in_range(p, "brl_iou", 0.0, float(p["fg_iou"]))
    if isinstance(p["brl_beta"], bool) or not isinstance(p["brl_beta"], (int, float)) or float(p["brl_beta"]) < 0:
        raise ValueError(f"brl_beta must be a number >= 0, got {p['brl_beta']!r}")


def _check_objectness_mining(p: dict[str, Any]) -> None:
    _in_range(p, "tau", 0.0, 1.0)
    _in_range(p, "mining_iou", 0.0, float(p["fg_iou"]))
    _in_range(p, "mining_warmup", 0.0, 1.0)


RULES: dict[str, RuleSpec] = {
    "hard_negative": RuleSpec(
        hard_negative,
        "background RoIs with o < min_overlap are ignored",
        "Soft Sampling (BMVC 2019)",
        params={"min_overlap": 0.1},
        options={"hard_negative_topk": None},
        check=_check_hard_negative,
    ),
    "overlap_soft": RuleSpec(
        overlap_soft,
        "background weight a + (1-a) exp(-b exp(-c o))",
        "Soft Sampling (BMVC 2019)",
        params={"a": DEFAULT_A, "b": DEFAULT_B, "c": DEFAULT_C},
        check=_check_curve,
    ),
    "score_soft": RuleSpec(
        score_soft,
        "background weight a + (1-a) exp(-b exp(-c (T[k] - s))) from a prior detector",
        "Soft Sampling (BMVC 2019)",
        params={"a": DEFAULT_A, "b": DEFAULT_B, "c": DEFAULT_C},
        needs=("prior_scores", "thresholds"),
        after_sampling=True,
        check=_check_curve,
        detectors=("two_stage",),
    ),
    "upper_bound": RuleSpec(
        upper_bound,
        "RoIs that match a dropped box are ignored (needs the curation manifest)",
        "Soft Sampling (BMVC 2019)",
        common=("fg_iou",),
        needs=("dropped_boxes",),
    ),
    "pseudo_label": RuleSpec(
        pseudo_label,
        "RoIs matching a teacher's pseudo box train as its class, weight = teacher confidence",
        "pseudo-labels as in Co-mining (AAAI 2021) and Calibrated Teacher (AAAI 2023)",
        params={"pseudo_weight": "score"},
        options={
            "pseudo_regress": False,
            "pseudo_precision": 0.9,
            "pseudo_duplicate_iou": 0.5,
            "pseudo_duplicate_inside": 0.9,
            "pseudo_rpn": False,
        },
        common=("fg_iou",),
        needs=("pseudo_boxes", "pseudo_labels", "pseudo_scores"),
        check=_check_pseudo_label,
    ),
    "objectness_mining": RuleSpec(
        objectness_mining,
        "after warm-up, background RoIs with RPN objectness >= tau and o <= mining_iou are ignored",
        "SparseDet (ICCV 2023)",
        params={"tau": 0.8, "mining_iou": 0.2, "mining_warmup": 0.2},
        needs=("objectness",),
        check=_check_objectness_mining,
        detectors=("two_stage",),
    ),
    "brl": RuleSpec(
        brl,
        "background anchors with o < brl_iou: where p >= 0.5 the focal term -(1-alpha) p^gamma log(1-p) "
        "becomes -(1-alpha) brl_beta (1-p)^gamma log(p)",
        "Background Recalibration Loss (ICASSP 2020)",
        params={"brl_iou": 0.1},
        options={"brl_beta": 1.0},
        check=_check_brl,
        detectors=("one_stage",),
    ),
}

# Named strategies: what ``strategy: NAME`` means. A list of rule names is a composition.
STRATEGIES: dict[str, tuple[str, ...]] = {"baseline": (), **{name: (name,) for name in RULES}}
# The rules whose training needs a prior run (``prior_run``): a round-one detector.
PRIOR_RULES: tuple[str, ...] = ("score_soft", "pseudo_label")


def describe_strategies() -> str:
    """Plain-text list of the strategies, their parameters and defaults (for ``--help``), read from the table.

    >>> print(describe_strategies().splitlines()[0])
    strategies (--set strategy=NAME, or a list of rules: --set strategy=[overlap_soft,pseudo_label]):
    """
    lines = [
        "strategies (--set strategy=NAME, or a list of rules: --set strategy=[overlap_soft,pseudo_label]):",
        "  baseline: the common IoU matcher alone (every strategy starts with it)",
    ]
    for name, spec in RULES.items():
        only = "" if len(spec.detectors) > 1 else f" [{spec.detectors[0].replace('_', '-')} detectors only]"
        lines.append(f"  {name}: {spec.summary}{only}")
        defaults = {**spec.params, **spec.options}
        if defaults:
            lines.append("      params: " + ", ".join(f"{k}={v}" for k, v in defaults.items()))
    lines.append(
        "  every strategy: " + ", ".join(f"{k}={v}" for k, v in COMMON_PARAMS.items()) + " (bg_iou None = fg_iou)"
    )
    lines.append(
        f"  {', '.join(PRIOR_RULES)} need --set prior_run=RUN (the round-one run); set parameters with "
        "--set strategy_params.NAME=VALUE"
    )
    return "\n".join(lines)


def strategies_markdown() -> str:
    """The Markdown table of rules, parameters and defaults that docs/strategies.md shows (kept equal by a test)."""
    lines = [
        "| strategy / rule | what it does | parameters (defaults) | needs | source |",
        "|---|---|---|---|---|",
        "| `baseline` | the common IoU matcher alone | – | – | Faster R-CNN |",
    ]
    for name, spec in RULES.items():
        params = ", ".join(f"`{k}` {v}" for k, v in {**spec.params, **spec.options}.items()) or "–"
        needs = (
            "a prior run"
            if name in PRIOR_RULES
            else "dropped boxes"
            if "dropped_boxes" in spec.needs
            else ("RPN objectness" if "objectness" in spec.needs else "–")
        )
        if spec.detectors == ("one_stage",):
            needs = "a one-stage detector"
        elif name in PRIOR_RULES and spec.detectors == ("two_stage",):
            needs += " (two-stage)"
        lines.append(f"| `{name}` | {spec.summary} | {params} | {needs} | {spec.source} |")
    return "\n".join(lines)
