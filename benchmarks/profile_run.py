"""Profile: where the time of a default ``tl.siamese_clu`` run goes.

usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.profile_run [--data ../shared/data/cbmc_citeseq_top2000.h5ad]
        [--cells 10000] [--max-epochs N] [--out benchmarks/results]

The CBMC cells are resampled to ``--cells`` cells with Poisson noise (``benchmarks.scaling``'s
data), a default run is profiled with :mod:`cProfile`, and the inclusive time of the functions
that do each job is reported (``profile_<cells>.md``). Parts nest: the two views contain the
gene and graph branches, a training step contains everything up to the optimiser; the table
says which contains which.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

from benchmarks.data import DEFAULT_DATA

# job -> (file suffix, function name); inclusive (cumulative) time of that function
PARTS = [
    ("graph building (kNN of the expression PCs)", "data/_knn.py", "cell_graph"),
    ("training, both phases (all below)", "scsiam/train/_runner.py", "run_phase"),
    ("  minibatches: subgraph sampling and batch assembly", "dataloaders/_splitter.py", "_iterate"),
    ("    of which subgraph sampling", "dataloaders/_sampler.py", "sample_subgraph"),
    (
        "    of which the batch with the views' edges (diffusion, edge dropping)",
        "dataloaders/_batch.py",
        "make_batch",
    ),
    (
        "  training steps (forward, backward and update, in Lightning's closure)",
        "torch/optim/optimizer.py",
        "wrapper",
    ),
    ("    forward: inference (two augmented views)", "module/_module.py", "inference"),
    ("      gene branch (both views)", "module/_components.py", "GeneEncoder.forward"),
    ("      graph branch (both views)", "module/_components.py", "GraphEncoder.forward"),
    ("    forward: count decoder", "module/_module.py", "generative"),
    ("    loss (reconstruction, fusion, graph, cluster terms)", "module/_module.py", "loss"),
    ("      NB likelihood of the counts", "module/_losses.py", "nb_log_likelihood_sparse"),
    ("      Sinkhorn / OT clustering term", "module/_cluster_head.py", "cluster_loss"),
    ("    backward", "torch/_tensor.py", "backward"),
    ("    optimiser update (Adam)", "torch/optim/adam.py", "adam"),
    ("inference of every cell (embedding, assignments)", "model/_data.py", "_embed"),
    ("KMeans initialisation", "model/_init.py", "initial_centers"),
]


def inclusive_times(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per part (summed over functions that match, e.g. both encoders' forward)."""
    out = {}
    for label, suffix, name in PARTS:
        cls, _, fn = name.rpartition(".")
        total = 0.0
        for (filename, line, funcname), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
            if filename.replace(os.sep, "/").endswith(suffix) and funcname == fn:
                if cls and not _defined_in_class(filename, line, cls):
                    continue
                total = max(total, ct) if fn == "wrapper" else total + ct
        out[label] = total
    return out


def _defined_in_class(filename: str, line: int, cls: str) -> bool:
    """Whether the function at ``filename:line`` is a method of class ``cls``."""
    try:
        with open(filename) as fh:
            lines = fh.readlines()[:line]
    except OSError:
        return False
    for text in reversed(lines):
        if text.startswith("class "):
            return text[6:].split("(")[0].split(":")[0].strip() == cls
    return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA / "cbmc_citeseq_top2000.h5ad"))
    p.add_argument("--cells", type=int, default=10000)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    os.environ.setdefault("CI", "true")
    import warnings

    warnings.filterwarnings("ignore")
    import scsiam
    from benchmarks.scaling import make_data

    adata = make_data(args.data, args.cells)
    train_kwargs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    model = scsiam.tl.siamese_clu(
        adata, n_clusters=15, random_state=0, progress_bar=False, return_model=True, train_kwargs=train_kwargs
    )
    prof.disable()
    wall = time.perf_counter() - t0
    epochs = len(model.history["train_loss"])
    times = inclusive_times(pstats.Stats(prof))
    lines = [
        f"Default run on {args.cells:,} resampled CBMC cells, {epochs} epochs, {wall:.0f} s under cProfile "
        "(one thread; profiling adds overhead, so compare the shares):",
        "",
        "| part | seconds | share of the run | per epoch |",
        "|---|---|---|---|",
    ]
    for label, secs in times.items():
        name = label.strip()
        indent = "&nbsp;" * (len(label) - len(label.lstrip())) * 2
        lines.append(f"| {indent}{name} | {secs:.1f} | {100 * secs / wall:.0f} % | {secs / epochs:.2f} |")
    lines.append(f"| whole run | {wall:.1f} | 100 % | {wall / epochs:.2f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"profile_{args.cells}.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
