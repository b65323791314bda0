"""Longer SIGKILL soak of training: many kills at random moments, then bit-identical weights.

The CI test (tests/reliability/test_kill_harness.py) does 10 kills of a
30-iteration run; this runs the same harness with more kills and iterations
and prints the figures quoted in docs/reliability.md.

  python bench/kill_soak.py                       # 50 kills, 150 iterations (~4 min on 2 cores)
  python bench/kill_soak.py --kills 200 --iterations 600 --seed 3 --work /tmp/soak

Exit status 0 when every kill was survived and the final weights equal the
uninterrupted run's; an AssertionError (status 1) names what broke.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.test_kill_harness import make_tiny_digits, run_kill_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs to survive (default 50)")
    parser.add_argument("--iterations", type=int, default=150, help="training iterations (default 150)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--window", type=float, default=0.6, help="seconds of the in-loop kill window (default 0.6)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_soak_"))
    work.mkdir(parents=True, exist_ok=True)
    train_json = make_tiny_digits(work / "digits")
    summary = run_kill_soak(train_json, work, kills=args.kills, iterations=args.iterations, seed=args.seed,
                            window_s=args.window, log=print)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
