"""End to end: `softsampling reproduce --preset smoke` writes every output, with Table 1's layout,
and a second invocation reuses every finished run."""

from __future__ import annotations

import csv
import json
import time

import pytest

from softsampling.cli import main
from softsampling.experiments.table import ROWS

OUTPUTS = (
    "table1.md",
    "table1.csv",
    "gap_closed.csv",
    "targets.csv",
    "results.csv",
    "report.md",
    "reproduce.json",
    "fig2_score_threshold.png",
    "fig3_overlap.png",
    "fig3_overlap.json",
    "fig5_examples.png",
)


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out)]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in OUTPUTS:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = list(csv.reader((out / "table1.csv").open(encoding="utf-8")))
    assert rows[0] == ["method", "no drop", "50%"]
    assert [r[0] for r in rows[1:]] == [label for _, label in ROWS]
    # smoke has no val split, so no pseudo-label runs: "n/a" where the grid has the row, "-" where it never does
    not_run = {
        "Pseudo labels (teacher: baseline)": ("-", "n/a"),
        "Soft sampling (overlap) + pseudo labels (teacher: overlap soft)": ("n/a", "n/a"),
    }
    for label, no_drop, drop50 in rows[1:]:
        if label in not_run:
            assert (no_drop, drop50) == not_run[label]
            continue
        assert (no_drop == "-") == (label not in ("Baseline", "Soft sampling (overlap)"))
        for cell in ([no_drop] if no_drop != "-" else []) + [drop50]:
            assert 0.0 <= float(cell) <= 100.0  # one seed: the mean alone

    results = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert len(results) == 9 and {r["status"] for r in results} == {"done"}
    for r in results:
        run = out / r["run_dir"]
        assert (run / "DONE").exists() and (run / "config.yaml").exists() and (run / "model.pt").exists()
        saved = json.loads((run / "results.json").read_text())
        assert saved["config_digest"] == r["run_dir"].rsplit("-", 1)[1]
        assert saved["iterations"] == 6 and len(saved["test"]["sweep"]["mAP"]) == 10
    fig3 = json.loads((out / "fig3_overlap.json").read_text())
    assert sum(fig3["curve"]["count"]) == fig3["background_proposals"] > 0
    report = (out / "report.md").read_text()
    for piece in (
        "## Table 1",
        "Gap closed",
        "## Targets",
        "fig2_score_threshold.png",
        "fig3_overlap.png",
        "fig5_examples.png",
        "config.yaml",
        "torch",
        "torchvision",
    ):
        assert piece in report

    capsys.readouterr()
    tic = time.perf_counter()
    assert main(["reproduce", "--preset", "smoke", "--out", str(out)]) == 0
    assert "reusing 9 finished run(s); 0 to run" in capsys.readouterr().out
    assert time.perf_counter() - tic < 60
    results = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert {r["status"] for r in results} == {"reused"}
