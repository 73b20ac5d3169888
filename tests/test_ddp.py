"""Distributed training: Lightning DDP with 2 CPU processes (gloo backend)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("center_update", ["gradient", "ema"])
def test_ddp_two_cpu_processes(tmp_path, center_update):
    script = os.path.join(os.path.dirname(__file__), "ddp_script.py")
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, script, str(tmp_path), center_update],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    result = json.loads((tmp_path / "result.json").read_text())
    assert r0["world"] == r1["world"] == result["world"] == 2
    n = result["n_obs"]
    assert result["n_pred"] == n
    # within an epoch the two ranks seed disjoint halves that together cover every cell
    half = n // 2
    first0, first1 = set(r0["seen"][:half]), set(r1["seen"][:half])
    assert not first0 & first1
    assert first0 | first1 == set(range(n))
    # the ranks end with the same cluster centres (gradients, or the moving-average statistics,
    # are averaged over the ranks)
    c0, c1 = np.array(r0["centers"]), np.array(r1["centers"])
    assert c0.shape == (3, 8)
    np.testing.assert_allclose(c0, c1, rtol=0, atol=1e-6)
