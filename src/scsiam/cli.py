"""The ``scsiam`` command line: cluster an .h5ad or .h5mu file, or run the demo on the shipped dataset."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _cluster(args) -> int:
    import scsiam

    problem = _check_paths(args.input, args.output)
    if problem:  # checked before fitting, so that a long run is not lost at the end
        print(f"error: {problem}", file=sys.stderr)
        return 2
    adata = _read_input(args.input)
    truth = None
    if args.labels_key is not None:
        if args.labels_key not in adata.obs:
            print(f"error: --labels-key {args.labels_key!r} is not a column of obs", file=sys.stderr)
            return 2
        # labels are held aside and only compared after fitting (missing labels stay missing)
        truth = adata.obs[args.labels_key].to_numpy()
    t0 = time.perf_counter()
    scsiam.tl.siamese_clu(
        adata,
        n_clusters=args.n_clusters,
        layer=args.layer,
        batch_key=args.batch_key,
        spatial_key=args.spatial_key,
        spatial_smoothing=args.spatial_smoothing,
        random_state=args.seed,
        key_added=args.key_added,
        progress_bar=_progress(args),
        train_kwargs=_train_kwargs(args),
    )
    secs = time.perf_counter() - t0
    _write_atomically(adata, args.output)
    params = adata.uns[f"{args.key_added}_clu"]["params"]
    k, found = params["n_clusters"], params.get("n_clusters_found", params["n_clusters"])
    held = f" ({found} hold cells)" if found != k else ""
    line = f"clustered {adata.n_obs} cells into k={k} clusters{held} in {secs:.1f} s; wrote {args.output}"
    if truth is not None:
        m = scsiam.metrics.evaluate(truth, adata.obs[f"{args.key_added}_clusters"])
        line += f"\nARI {m['ARI']:.3f}  NMI {m['NMI']:.3f}  ACC {m['ACC']:.3f}"
    print(line)
    return 0


def _check_paths(input_path: str, output: str) -> str | None:
    """What is wrong with the input or output path, or ``None``."""
    if not os.path.exists(input_path):
        return f"input file {input_path!r} does not exist"
    if os.path.isdir(input_path):
        return f"input {input_path!r} is a folder; pass an .h5ad or .h5mu file"
    if os.path.isdir(output):
        return f"cannot write {output!r}: it is a folder; name the output file (e.g. {os.path.join(output, 'out.h5ad')!r})"
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        return f"cannot write {output!r}: folder {out_dir!r} does not exist or is not writable"
    return None


def _is_mudata_path(path: str) -> bool:
    return str(path).lower().endswith(".h5mu")


def _read_input(path: str):
    """The AnnData (``.h5ad``) or MuData (``.h5mu``) in ``path``; a file that is not one gives an error naming it."""
    import h5py

    kind = "MuData (.h5mu)" if _is_mudata_path(path) else "AnnData (.h5ad)"
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path!r} is not an {kind} file (not HDF5: a text, CSV or truncated file?)")
    try:
        if _is_mudata_path(path):
            import mudata as md

            return md.read_h5mu(path)
        import anndata as ad

        return ad.read_h5ad(path)
    except Exception as e:
        hint = " (a MuData file? name it .h5mu)" if "MuData" in str(e) else ""
        raise ValueError(
            f"{path!r} could not be read as an {kind}{hint} ({type(e).__name__}: {str(e)[:200]})"
        ) from e


def _write_atomically(adata, output: str) -> None:
    """Write to a temporary file in the output's folder, then move it into place (input == output is safe).

    A MuData is written as ``.h5mu``, an AnnData as ``.h5ad``.
    """
    import tempfile

    from scsiam.data._inputs import is_mudata

    folder = os.path.dirname(os.path.abspath(output))
    mudata = is_mudata(adata)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".scsiam-", suffix=".h5mu" if mudata else ".h5ad")
    os.close(fd)
    try:
        (adata.write_h5mu if mudata else adata.write_h5ad)(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a temporary file is private; the output is not
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _demo(args) -> int:
    import numpy as np

    import scsiam

    adata = scsiam.datasets.worm_neuron()
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    fit = adata.copy()
    for col in list(fit.obs.columns):  # the model never sees the labels
        del fit.obs[col]
    k = len(np.unique(truth))
    print(f"scsiam demo: C. elegans neurons (Cao et al. 2017), {fit.n_obs} cells x {fit.n_vars} genes, k={k}")
    t0 = time.perf_counter()
    scsiam.tl.siamese_clu(
        fit,
        n_clusters=k,
        random_state=args.seed,
        progress_bar=_progress(args),
        train_kwargs=_train_kwargs(args),
    )
    secs = time.perf_counter() - t0
    m = scsiam.metrics.evaluate(truth, fit.obs["siamese_clusters"])
    base = scsiam.metrics.evaluate(truth, scsiam.metrics.pca_kmeans(adata, k, args.seed))
    print(
        f"scsiam            ARI {m['ARI']:.3f}  NMI {m['NMI']:.3f}  ACC {m['ACC']:.3f}  k {k}  seconds {secs:.1f}"
    )
    print(
        f"PCA(50) + KMeans  ARI {base['ARI']:.3f}  NMI {base['NMI']:.3f}  ACC {base['ACC']:.3f}  (baseline: normalise, log1p, scale, PCA 50, KMeans)"
    )
    return 0


def _progress(args) -> bool:
    from scsiam._utils import in_ci

    return sys.stderr.isatty() and not in_ci() and not getattr(args, "quiet", False)


def _train_kwargs(args) -> dict:
    return {} if args.max_epochs is None else {"max_epochs": args.max_epochs}


def _int_at_least(flag: str, minimum: int, why: str = "", maximum: int | None = None):
    """An argparse type: an integer of at least ``minimum`` (and at most ``maximum``), errors naming ``flag``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {value!r}") from e
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {minimum}{why}")
        if maximum is not None and n > maximum:
            raise argparse.ArgumentTypeError(f"{flag} must be at most {maximum}")
        return n

    return parse


_max_epochs = _int_at_least("--max-epochs", 2, " (one per training phase)")
_n_clusters = _int_at_least("--n-clusters", 2)
_seed = _int_at_least("--seed", 0, maximum=2**32 - 1)
EPOCHS_HELP = "training epochs over both phases (default: chosen from the number of cells)"


def build_parser() -> argparse.ArgumentParser:
    from scsiam._utils._runtime import package_version

    p = argparse.ArgumentParser(
        prog="scsiam", description="Siamese graph clustering of single cells (scSiameseClu)."
    )
    p.add_argument("--version", action="version", version=f"scsiam {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cluster", help="cluster an .h5ad or .h5mu file and write the results to a new file")
    c.add_argument(
        "input",
        help="input .h5ad (AnnData) or .h5mu (MuData: RNA, and proteins when present) with raw counts",
    )
    c.add_argument("-o", "--output", required=True, help="output file, of the input's kind (.h5ad or .h5mu)")
    c.add_argument(
        "--n-clusters", type=_n_clusters, default=None, help="number of clusters (default: estimated)"
    )
    c.add_argument("--layer", default=None, help="layer holding the counts (default: X)")
    c.add_argument("--batch-key", default=None, help="obs column of batches (a covariate of the gene branch)")
    c.add_argument(
        "--key-added", default="siamese",
        help="prefix of the keys written: obs['<key>_clusters'], obsm['X_<key>'], uns['<key>_clu'] (default: siamese)",
    )  # fmt: skip
    c.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar (warnings about the data still show)"
    )
    c.add_argument("--spatial-key", default=None, help="obsm key of spatial coordinates")
    c.add_argument(
        "--spatial-smoothing", type=int, default=0,
        help="with --spatial-key: average soft assignments over spatial neighbours this many times (default 0)",
    )  # fmt: skip
    c.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    c.add_argument("--max-epochs", type=_max_epochs, default=None, help=EPOCHS_HELP)
    c.add_argument(
        "--labels-key",
        default=None,
        help="obs column of reference labels, used only to print ARI/NMI/ACC after fitting",
    )
    c.set_defaults(func=_cluster)
    d = sub.add_parser(
        "demo", help="cluster the shipped worm-neuron dataset and print ARI/NMI against PCA+KMeans"
    )
    d.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    d.add_argument("--max-epochs", type=_max_epochs, default=None, help=EPOCHS_HELP)
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    import scanpy as sc

    from scsiam._utils import quiet_libraries

    # the library's progress notes (seeding, devices, squidpy's graph building) would mix with the
    # result line on stdout; errors and the data warnings below still reach the user
    verbosity, sc.settings.verbosity = sc.settings.verbosity, "warning"
    with warnings.catch_warnings(), quiet_libraries():
        # warnings about the data (e.g. not raw counts, clusters that emptied out) reach the user,
        # one line each; deprecation notes of the libraries do not
        warnings.simplefilter("default", UserWarning)
        for category in (DeprecationWarning, FutureWarning, SyntaxWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print("interrupted: nothing was written", file=sys.stderr)
            return 130
        except (ValueError, TypeError, KeyError, OSError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
            print(f"error: {message}", file=sys.stderr)
            return 2
        finally:
            sc.settings.verbosity = verbosity


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
