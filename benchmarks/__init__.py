"""Benchmarks of scsiam: clustering quality against peers, scaling, and probes of its phases.

A package so the scripts share one set of helpers; run them from the repository root as modules,
e.g. ``python -m benchmarks.quality --help`` or ``python -m benchmarks.probe_init --help``
(``python benchmarks/quality.py`` works too). Not part of the ``scsiam`` distribution, and not a
test suite: pytest collects ``tests/`` only.

- :mod:`benchmarks.methods`: the table of methods (scsiam, ablations, variants, peers);
- :mod:`benchmarks.data`: labelled files, stripped of every ``obs`` column for the methods;
- :mod:`benchmarks.peers`: the peer pipelines and the call of ``tl.siamese_clu``;
- :mod:`benchmarks.store`: the results CSV (locked read-modify-write);
- :mod:`benchmarks.report`: the Markdown table and the ARI figure;
- :mod:`benchmarks.quality`: the run loop and its command line.
"""
