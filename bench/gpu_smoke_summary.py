"""Summarise bench/gpu_smoke.sh: steps/s, images/s, peak GPU memory and test mAP@0.5 per strategy.

Usage: python bench/gpu_smoke_summary.py RUNS_DIR STRATEGY [STRATEGY ...]
Reads RUNS_DIR/<strategy>/{metrics.jsonl, config.yaml, eval_test.json}. Speed is the mean over the logged
intervals after the first (which holds start-up and cuDNN autotuning).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def summarise(run: Path) -> dict[str, float | None]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in lines if "sec_per_iter" in r]
    timed = [r["sec_per_iter"] for r in steps[1:]] or [r["sec_per_iter"] for r in steps]
    batch = yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"]
    steps_per_s = len(timed) / sum(timed) if timed and sum(timed) > 0 else None
    memory = [r["max_memory_mb"] for r in steps if "max_memory_mb" in r]
    evaluation = run / "eval_test.json"
    m_ap = json.loads(evaluation.read_text())["result"]["mAP"] if evaluation.exists() else None
    return {
        "steps_per_s": steps_per_s,
        "images_per_s": None if steps_per_s is None else steps_per_s * batch,
        "peak_memory_mb": max(memory) if memory else None,
        "test_mAP50": m_ap,
    }


def table(runs: Path, strategies: list[str]) -> str:
    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = ["| strategy | steps/s | images/s | peak GPU memory (MiB) | test mAP@0.5 |", "|---|---|---|---|---|"]
    for s in strategies:
        r = summarise(runs / s)
        m_ap = None if r["test_mAP50"] is None else 100 * r["test_mAP50"]
        rows.append(
            f"| {s} | {cell(r['steps_per_s'], '.2f')} | {cell(r['images_per_s'], '.1f')} | "
            f"{cell(r['peak_memory_mb'], '.0f')} | {cell(m_ap, '.2f')} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(table(Path(sys.argv[1]), sys.argv[2:]))
