"""Deterministic crash points for the kill tests (test only; never set it in real runs).

``SOFTSAMPLING_TEST_KILL_AT`` holds comma-separated points ``KIND:ITERATION``; when training
reaches one, the process stops itself with SIGKILL, exactly as an outside kill would:

- ``iter:N``: after training iteration N (1-based) has updated the weights and logged its
  metrics line, before its checkpoint is written;
- ``ckpt:N``: inside the write of the checkpoint of iteration N (``last.pt``), after the
  temp file holds the whole checkpoint and before it is renamed over ``last.pt``.

Example: ``SOFTSAMPLING_TEST_KILL_AT=iter:5,ckpt:12`` dies at whichever of the two it reaches
first. tests/reliability/test_kill_harness.py uses it to place 10 kills; bench/kill_soak.py
kills at random wall-clock moments instead. Unset (the normal case), it costs one lookup.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "SOFTSAMPLING_TEST_KILL_AT"


def kill_point(kind: str, iteration: int) -> None:
    """SIGKILL this process if ``SOFTSAMPLING_TEST_KILL_AT`` names ``KIND:ITERATION``; otherwise do nothing."""
    points = os.environ.get(KILL_AT_ENV)
    if points and f"{kind}:{iteration}" in points.replace(" ", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
