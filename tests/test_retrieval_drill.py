"""The fault drill (benchmarks/retrieval_fault_drill.py) as a test: a training run against two retrieval
replicas, one killed with SIGKILL after step 2, completes every step with every search answered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval_fault_drill.py"


@pytest.mark.slow
def test_training_survives_a_killed_replica() -> None:
    res = subprocess.run([sys.executable, str(SCRIPT), "--steps", "5"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(res.stdout[res.stdout.index("{") :])
    assert report["steps"] == [1, 2, 3, 4, 5] and report["replica_a_killed"] and report["replica_b_healthy"]
    assert report["searches_per_sample"] == [2.0] * 5 and len(report["client_alive_after"]) == 1
