"""Label assignment: which RoIs are foreground, background or ignored, and their loss weight.

Given the RoIs (proposals) of one image and its annotated boxes, a *strategy*
decides per RoI:

- ``labels``: class id ``> 0`` (foreground), ``0`` (background) or ``-1`` (ignored:
  never sampled, no gradient);
- ``weights``: the weight of its classification loss (``0`` for ignored RoIs);
- ``overlaps``: its max IoU with any annotated box of any class;
- ``matched_gt``: the index of the annotated box it is foreground for, ``-1`` otherwise.

Assignment is per RoI: the answer for one RoI never depends on the other RoIs,
so assigning a subset gives the subset of the answers. Adding the ground-truth
boxes to the proposals and sampling are the RoI head's job (see
:mod:`softsampling.sampling.sampler`).

Common rules (all strategies; the torchvision ``Matcher`` rule):

- ``overlap >= fg_iou`` (default 0.5): foreground, labelled with the class of
  the annotated box of highest IoU;
- ``overlap < bg_iou`` (default ``bg_iou = fg_iou``): background;
- ``bg_iou <= overlap < fg_iou``: ignored (empty band by default);
- group-of boxes (Open Images): a RoI that would be background and whose
  intersection with a group-of box covers more than ``group_of_threshold``
  (default 0.9) of the RoI's own area is ignored: it probably sits on one
  unannotated member of the group. Group-of boxes are otherwise ordinary
  annotations: they count in ``overlaps`` and a RoI with ``IoU >= fg_iou`` to
  one is foreground of its class (a box around the whole group is a correct
  detection in the Open Images metric).

A strategy is the matcher followed by an ordered list of rules
(:mod:`softsampling.sampling.rules`, which holds the table of rule names,
parameters and defaults). Named strategies (PAPER.md, Table 1, then later work):

- ``baseline``: the common rules, every weight 1.
- ``hard_negative``: background RoIs with ``overlap < min_overlap`` (default 0.1;
  the paper uses 0.1 or 0.2) are ignored.
- ``overlap_soft``: background weight ``gompertz_weight(overlap, a, b, c)``.
- ``score_soft``: background weight ``score_weight(s, T[k], a, b, c)`` where ``k``
  is the RoI's top non-background class under a prior detector's softmax
  scores ``proposal_scores`` and ``s`` that score; ``T = thresholds``.
- ``upper_bound``: a RoI that would be foreground of a *dropped* box under the
  full annotation (IoU ``>= fg_iou`` to a dropped box, and higher than its IoU
  to every annotated box) is ignored; otherwise baseline.
- ``pseudo_label``: RoIs matching a teacher's pseudo box train as its class.
- ``objectness_mining``: background RoIs the RPN finds object-like, far from
  every annotation, are ignored after a warm-up.
- ``brl`` (one-stage detectors only): background anchors far from every
  annotation get the Background Recalibration Loss (see
  :func:`softsampling.sampling.loss.weighted_focal_loss`).

A composition is a list of rule names, e.g. ``["overlap_soft", "pseudo_label"]``.
:func:`resolve_strategy` checks it and its parameters once and returns a
:class:`Composition` to apply to every image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from softsampling.sampling.boxes import check_boxes, group_of_coverage
from softsampling.sampling.rules import COMMON_PARAMS, DETECTORS, REQUIRED, RULES, STRATEGIES, Assignment, ImageContext

__all__ = [
    "Assignment",
    "Composition",
    "ImageContext",
    "assign",
    "from_matches",
    "group_of_coverage",
    "image_context",
    "match",
    "resolve_params",
    "resolve_strategy",
    "strategy_name",
]

Step = tuple[Callable[..., Assignment], dict[str, Any]]


def strategy_name(strategy: str | Sequence[str]) -> str:
    """Display name: a named strategy as is, a composition joined with ``+``.

    >>> strategy_name("overlap_soft"), strategy_name(["overlap_soft", "pseudo_label"]), strategy_name([])
    ('overlap_soft', 'overlap_soft+pseudo_label', 'baseline')
    """
    if isinstance(strategy, str):
        return strategy
    return "+".join(strategy) or "baseline"


def _rules_of(strategy: str | Sequence[str]) -> tuple[str, ...]:
    choices = f"choose one of {', '.join(STRATEGIES)}, or a list of rules such as [overlap_soft, pseudo_label]"
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; {choices}")
        return STRATEGIES[strategy]
    if not isinstance(strategy, (list, tuple)):
        raise ValueError(f"strategy must be a name or a list of rule names, got {type(strategy).__name__}; {choices}")
    rules: list[str] = []
    for item in strategy:
        if not isinstance(item, str) or item not in STRATEGIES:
            raise ValueError(f"unknown rule {item!r} in strategy {list(strategy)}; {choices}")
        for rule in STRATEGIES[item]:
            if rule in rules:
                raise ValueError(f"rule {rule!r} appears twice in strategy {list(strategy)}")
            rules.append(rule)
    return tuple(rules)


@dataclass(frozen=True)
class Composition:
    """A strategy resolved once: the matcher's parameters and the rules with theirs, ready to apply.

    ``params`` holds every parameter (matcher, rules and options) with defaults
    filled in; ``needs`` the :class:`ImageContext` fields some rule reads.
    """

    name: str
    rules: tuple[str, ...]
    params: dict[str, Any]
    before_sampling: tuple[Step, ...]
    after_sampling: tuple[Step, ...]
    needs: frozenset[str]

    def assign(self, ctx: ImageContext) -> Assignment:
        """Matcher, then every rule in order: the final :class:`Assignment` of ``ctx.proposals``."""
        return self.assign_after_sampling(self.assign_before_sampling(ctx), ctx)

    def assign_before_sampling(self, ctx: ImageContext) -> Assignment:
        """Matcher and the rules that decide labels (all but ``after_sampling`` ones); ignored RoIs weigh 0."""
        state = match(ctx, self.params["fg_iou"], self.params["bg_iou"], self.params["group_of_threshold"])
        return _apply(state, ctx, self.before_sampling)

    def assign_after_sampling(self, state: Assignment, ctx: ImageContext) -> Assignment:
        """The ``after_sampling`` rules (weights only) on ``state``, RoIs ``ctx.proposals``."""
        return _apply(state, ctx, self.after_sampling) if self.after_sampling else state

    def apply_rules(self, state: Assignment, ctx: ImageContext) -> Assignment:
        """Every rule in order on a state another matcher made (one-stage detectors: :func:`from_matches`)."""
        return _apply(state, ctx, self.before_sampling + self.after_sampling)

    def check_detector(self, kind: str) -> None:
        """Raise ``ValueError`` naming the first rule that does not work in a ``kind`` detector (see ``DETECTORS``)."""
        for rule in self.rules:
            allowed = RULES[rule].detectors
            if kind not in allowed:
                raise ValueError(
                    f"rule {rule!r} of strategy {self.name!r} needs {DETECTORS[allowed[0]]}; "
                    f"this is {DETECTORS[kind].split(' (')[0]}"
                )


def _apply(state: Assignment, ctx: ImageContext, steps: tuple[Step, ...]) -> Assignment:
    for rule, kwargs in steps:
        state = rule(state, ctx, **kwargs)
    weights = state.weights
    ignored = state.labels == -1
    if bool(ignored.any()):
        weights = weights.clone()
        weights[ignored] = 0.0
    return state._replace(weights=weights)


def resolve_strategy(strategy: str | Sequence[str], params: dict[str, Any] | None = None) -> Composition:
    """Check a strategy (a name or a list of rule names) and its parameters once; return the :class:`Composition`.

    Raises:
        ValueError: unknown strategy or rule, a rule twice, an ``after_sampling``
            rule that is not last, unknown or missing parameter, value out of range.

    Example:
        >>> c = resolve_strategy(["overlap_soft", "pseudo_label"], {"a": 0.3})
        >>> c.name, c.rules, c.params["a"], c.params["pseudo_weight"]
        ('overlap_soft+pseudo_label', ('overlap_soft', 'pseudo_label'), 0.3, 'score')
    """
    params = dict(params or {})
    rules = _rules_of(strategy)
    name = strategy_name(strategy)
    specs = [RULES[r] for r in rules]
    allowed = parameter_defaults(rules)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"strategy {name!r} got unknown parameter(s) {unknown}; it accepts: {', '.join(sorted(allowed))}"
        )
    resolved = {**allowed, **params}
    missing = sorted(key for key, value in resolved.items() if value is REQUIRED)
    if missing:
        raise ValueError(f"strategy {name!r} needs parameter(s) {missing}")
    if resolved["bg_iou"] is None:
        resolved["bg_iou"] = resolved["fg_iou"]
    fg, bg = float(resolved["fg_iou"]), float(resolved["bg_iou"])
    if not 0.0 < fg <= 1.0:
        raise ValueError(f"fg_iou must be in (0, 1], got {fg}")
    if not 0.0 <= bg <= fg:
        raise ValueError(f"bg_iou must be in [0, fg_iou={fg}], got {bg}")
    if not 0.0 <= float(resolved["group_of_threshold"]) <= 1.0:
        raise ValueError(f"group_of_threshold must be in [0, 1], got {resolved['group_of_threshold']}")
    for spec in specs:
        if spec.check is not None:
            spec.check(resolved)
    late = [r for r, spec in zip(rules, specs, strict=True) if spec.after_sampling]
    if late and rules[-len(late) :] != tuple(late):
        raise ValueError(f"rule {late[0]!r} must come last in strategy {name!r} (it weights the sampled RoIs)")
    steps = tuple((spec.apply, {k: resolved[k] for k in (*spec.common, *spec.params)}) for spec in specs)
    n_late = len(late)
    return Composition(
        name=name,
        rules=rules,
        params=resolved,
        before_sampling=steps[: len(steps) - n_late],
        after_sampling=steps[len(steps) - n_late :],
        needs=frozenset(need for spec in specs for need in spec.needs),
    )


def parameter_defaults(strategy: str | Sequence[str]) -> dict[str, Any]:
    """Every parameter ``strategy`` accepts, with its default (``REQUIRED`` where there is none).

    Raises ``ValueError`` for an unknown strategy or rule.

    Example:
        >>> parameter_defaults("overlap_soft")["fg_iou"]
        0.5
    """
    allowed: dict[str, Any] = dict(COMMON_PARAMS)
    for rule in _rules_of(strategy):
        allowed.update(RULES[rule].params)
        allowed.update(RULES[rule].options)
    return allowed


def resolve_params(strategy: str | Sequence[str], params: dict[str, Any]) -> dict[str, Any]:
    """Check a strategy and its parameters; return them with defaults filled in.

    Example:
        >>> resolve_params("hard_negative", {"min_overlap": 0.2})["min_overlap"]
        0.2
    """
    return resolve_strategy(strategy, params).params


def image_context(
    proposals: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    **inputs: Any,
) -> ImageContext:
    """An :class:`ImageContext` with shapes checked and ``gt_labels``/``group_of`` as int64/bool on the RoIs' device.

    ``inputs``: any other :class:`ImageContext` field (``dropped_boxes``, ``prior_scores``, ...).
    """
    check_boxes("proposals", proposals)
    check_boxes("gt_boxes", gt_boxes)
    device = proposals.device
    gt_labels = torch.as_tensor(gt_labels, device=device).reshape(-1).to(torch.int64)
    if gt_labels.shape[0] != gt_boxes.shape[0]:
        raise ValueError(f"gt_labels has {gt_labels.shape[0]} entries but gt_boxes has {gt_boxes.shape[0]} boxes")
    if gt_labels.numel() and int(gt_labels.min()) < 1:
        raise ValueError("gt_labels must be >= 1 (class 0 is background)")
    group_of = inputs.pop("group_of", None)
    if group_of is not None:
        group_of = torch.as_tensor(group_of, device=device).reshape(-1).to(torch.bool)
        if group_of.shape[0] != gt_boxes.shape[0]:
            raise ValueError(f"group_of has {group_of.shape[0]} entries but gt_boxes has {gt_boxes.shape[0]} boxes")
    return ImageContext(proposals, gt_boxes.to(device), gt_labels, group_of=group_of, **inputs)


def match(ctx: ImageContext, fg_iou: float, bg_iou: float, group_of_threshold: float) -> Assignment:
    """The common IoU matcher (torchvision's ``Matcher`` rule) plus the group-of rule; every weight 1."""
    n = ctx.proposals.shape[0]
    device = ctx.proposals.device
    overlaps, best_gt = ctx.max_overlap(ctx.gt_boxes)
    foreground = overlaps >= fg_iou
    labels = torch.zeros(n, dtype=torch.int64, device=device)
    labels[foreground] = ctx.gt_labels[best_gt[foreground]]
    labels[(overlaps >= bg_iou) & ~foreground] = -1
    matched_gt = torch.where(foreground, best_gt, torch.full_like(best_gt, -1))
    _ignore_inside_group_of(labels, ctx, group_of_threshold)
    weights = torch.ones(n, dtype=torch.float32, device=device)
    return Assignment(
        labels=labels,
        weights=weights,
        overlaps=overlaps.float(),
        matched_gt=matched_gt,
        recalibrate=torch.zeros(n, dtype=torch.bool, device=device),
    )


def _ignore_inside_group_of(labels: Tensor, ctx: ImageContext, group_of_threshold: float) -> None:
    """Background RoIs covered more than ``group_of_threshold`` by a group-of box become ignored (in place)."""
    group_of = ctx.group_of
    if group_of is not None and bool(group_of.any()) and labels.shape[0]:
        coverage = group_of_coverage(ctx.proposals.float(), ctx.gt_boxes[group_of].float()).max(dim=1).values
        labels[(labels == 0) & (coverage > group_of_threshold)] = -1


def from_matches(ctx: ImageContext, matched_idxs: Tensor, group_of_threshold: float) -> Assignment:
    """The state a detector's own matcher left (torchvision's ``matched_idxs``), plus the group-of rule.

    ``matched_idxs[i] >= 0``: foreground of annotated box ``matched_idxs[i]``;
    ``-1``: background; ``-2`` (torchvision's ``BETWEEN_THRESHOLDS``): ignored.
    ``overlaps`` are ``ctx.max_overlap(gt_boxes)``; every weight 1. One-stage
    detectors (RetinaNet, FCOS) keep their own matcher this way, then apply a
    strategy's rules with :meth:`Composition.apply_rules`.

    Example:
        >>> ctx = image_context(
        ...     torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0], [50.0, 50.0, 60.0, 60.0]]),
        ...     torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        ...     torch.tensor([4]),
        ... )
        >>> a = from_matches(ctx, torch.tensor([0, -2, -1]), 0.9)
        >>> a.labels.tolist(), a.matched_gt.tolist(), [round(o, 2) for o in a.overlaps.tolist()]
        ([4, -1, 0], [0, -1, -1], [1.0, 0.6, 0.0])
    """
    n = ctx.proposals.shape[0]
    device = ctx.proposals.device
    matched_idxs = matched_idxs.to(device)
    if matched_idxs.shape != (n,):
        raise ValueError(f"matched_idxs must have one entry per anchor (N={n}), got {tuple(matched_idxs.shape)}")
    overlaps, _ = ctx.max_overlap(ctx.gt_boxes)
    foreground = matched_idxs >= 0
    labels = torch.zeros(n, dtype=torch.int64, device=device)
    labels[foreground] = ctx.gt_labels[matched_idxs[foreground]]
    labels[matched_idxs < -1] = -1
    matched_gt = torch.where(foreground, matched_idxs, torch.full_like(matched_idxs, -1))
    _ignore_inside_group_of(labels, ctx, group_of_threshold)
    weights = torch.ones(n, dtype=torch.float32, device=device)
    return Assignment(
        labels=labels,
        weights=weights,
        overlaps=overlaps.float(),
        matched_gt=matched_gt,
        recalibrate=torch.zeros(n, dtype=torch.bool, device=device),
    )


def assign(
    strategy: str | Sequence[str],
    proposals: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    dropped_boxes: Tensor | None = None,
    proposal_scores: Tensor | None = None,
    thresholds: Tensor | None = None,
    group_of: Tensor | None = None,
    pseudo_boxes: Tensor | None = None,
    pseudo_labels: Tensor | None = None,
    pseudo_scores: Tensor | None = None,
    objectness: Tensor | None = None,
    iteration: int | None = None,
    iterations: int | None = None,
    **params: Any,
) -> Assignment:
    """Assign labels and classification-loss weights to the proposals of one image.

    Resolves ``strategy`` on every call; a training loop resolves it once with
    :func:`resolve_strategy` and calls :meth:`Composition.assign`.

    Args:
        strategy: a name (``baseline``, ``hard_negative``, ``overlap_soft``,
            ``score_soft``, ``upper_bound``, ``pseudo_label``,
            ``objectness_mining``) or a list of rule names.
        proposals: float [N, 4] xyxy RoIs.
        gt_boxes: float [G, 4] xyxy annotated boxes (G may be 0).
        gt_labels: int64 [G] class ids >= 1.
        dropped_boxes: float [K, 4] boxes removed by curation (``upper_bound``;
            an empty [0, 4] tensor when none were dropped).
        proposal_scores: float [N, C] softmax scores of a prior detector,
            background in column 0, and ``thresholds`` float [C] per-class T (``score_soft``).
        group_of: bool [G], True for Open Images group-of boxes (default: none).
        pseudo_boxes, pseudo_labels, pseudo_scores: a teacher's boxes [P, 4],
            classes [P] and confidences [P] (``pseudo_label``).
        objectness: float [N] RPN objectness probabilities (``objectness_mining``).
        iteration, iterations: training progress (``objectness_mining``'s warm-up;
            without them the rule always applies).
        **params: matcher parameters ``fg_iou`` (0.5), ``bg_iou`` (= fg_iou),
            ``group_of_threshold`` (0.9) and the rules' parameters (see
            :data:`softsampling.sampling.rules.RULES`).

    Returns:
        :class:`Assignment` with one entry per proposal.

    Raises:
        ValueError: unknown strategy or parameter, missing required input, bad shapes.

    Example:
        >>> proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [20.0, 20.0, 30.0, 30.0]])
        >>> a = assign("overlap_soft", proposals, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([3]))
        >>> a.labels.tolist(), [round(w, 3) for w in a.weights.tolist()]
        ([3, 3, 0], [1.0, 1.0, 0.25])
    """
    composition = resolve_strategy(strategy, params)
    ctx = image_context(
        proposals,
        gt_boxes,
        gt_labels,
        group_of=group_of,
        dropped_boxes=dropped_boxes,
        prior_scores=proposal_scores,
        thresholds=thresholds,
        pseudo_boxes=pseudo_boxes,
        pseudo_labels=pseudo_labels,
        pseudo_scores=pseudo_scores,
        objectness=objectness,
        iteration=iteration,
        iterations=iterations,
    )
    return composition.assign(ctx)
