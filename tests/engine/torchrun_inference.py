"""Run under torchrun by test_distributed_inference.py: predict, calibrate and evaluate --run in one process group.

Usage: torchrun --nproc-per-node N tests/engine/torchrun_inference.py RUN IMAGE_LIST OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from softsampling.cli import main

run, image_list, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
codes = [
    main(
        [
            "predict",
            "--run",
            run,
            "--image-list",
            image_list,
            "--out",
            str(out / "preds"),
            "--chunk-size",
            "2",
            "--score-threshold",
            "0",
            "--no-progress",
        ]
    ),
    main(
        [
            "calibrate",
            "--run",
            run,
            "--split",
            "val",
            "--batch-size",
            "2",
            "--out",
            str(out / "thresholds.json"),
            "--no-progress",
        ]
    ),
    main(["evaluate", "--run", run, "--split", "val", "--metric", "voc", "--out", str(out / "eval.json")]),
]
sys.exit(max(codes))
