"""A default call prints a progress bar and nothing else (issue: quiet calls)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np
import scsiam
a = scsiam.datasets.{dataset}()
idx = np.random.default_rng(0).choice(a.n_obs, 200, replace=False)
a = a[np.sort(idx)].copy()
a.obs = a.obs[[]]
scsiam.tl.siamese_clu(a, n_clusters=3, train_kwargs={{"max_epochs": 2}}{extra})
assert "siamese_clusters" in a.obs
"""


def _run(dataset="worm_neuron", extra="", env_ci=True):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if env_ci:
        env["CI"] = "true"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "default"  # every warning shows, deprecations included
    code = SCRIPT.format(dataset=dataset, extra=extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, out.stderr


def _without_library_deprecations(stderr: str) -> str:
    """Deprecation notes raised inside the dependencies themselves (not scsiam's to silence)."""
    keep = []
    lines = stderr.splitlines()
    skip_next = False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if re.search(r"site-packages.*(Deprecation|Future)Warning", line):
            skip_next = True  # the warning's source line follows
            continue
        keep.append(line)
    return "\n".join(keep).strip()


def test_default_call_is_silent_without_a_bar():
    stdout, stderr = _run()  # CI=true: no bar
    assert stdout == ""
    assert _without_library_deprecations(stderr) == ""


def test_default_call_prints_only_one_progress_bar():
    stdout, stderr = _run(env_ci=False, extra=", progress_bar=True")
    assert stdout == ""
    frames = [f.strip() for f in re.split(r"[\r\n]+", _without_library_deprecations(stderr)) if f.strip()]
    assert frames, "no progress bar was drawn"
    assert all(f.startswith("scsiam ") for f in frames), frames[:5]
    # one bar over both phases: its count never restarts and ends at the total
    counts = [tuple(map(int, m.groups())) for f in frames if (m := re.search(r"(\d+)/(\d+) \[", f))]
    assert {total for _, total in counts} == {2}
    assert [n for n, _ in counts] == sorted(n for n, _ in counts) and counts[-1][0] == 2
    assert any("pretraining" in f for f in frames) and any("clustering" in f for f in frames)


@pytest.mark.skipif(pytest.importorskip("squidpy") is None, reason="squidpy missing")
def test_spatial_call_is_silent():
    stdout, stderr = _run(dataset="starmap_mpfc", extra=", spatial_key='spatial'")
    assert stdout == ""
    assert _without_library_deprecations(stderr) == ""
