"""The ``scsiam`` command line."""

import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pytest
from conftest import subsample, top_genes

from scsiam import cli


def _console_script() -> list[str]:
    """The console script installed next to the interpreter, else ``python -m scsiam.cli``."""
    script = Path(sys.executable).parent / "scsiam"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scsiam.cli"]


def test_help_via_subprocess():
    """``--help`` of every command exits 0 in a fresh process.

    The top-level help goes through the installed console script (which imports the whole
    package); the sub-command helps run ``cli.py`` as a script, whose module level only needs
    argparse, so they add no package start-up time. All three run concurrently.
    """
    cli_file = str(Path(cli.__file__))
    cmds = {
        "help": _console_script() + ["--help"],
        "cluster-help": [sys.executable, cli_file, "cluster", "--help"],
        "demo-help": [sys.executable, cli_file, "demo", "--help"],
    }
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, cmd in cmds.items()
    }
    results = {name: (*p.communicate(timeout=300), p.returncode) for name, p in procs.items()}
    for name, (out, err, rc) in results.items():
        assert rc == 0, f"{name}: rc={rc}\n{out}\n{err}"
        assert out.startswith("usage: scsiam"), out
    assert "cluster" in results["help"][0] and "demo" in results["help"][0]
    assert "--n-clusters" in results["cluster-help"][0] and "--labels-key" in results["cluster-help"][0]
    assert "--seed" in results["demo-help"][0]


@pytest.mark.parametrize("argv", [["--help"], ["cluster", "--help"], ["demo", "--help"]])
def test_help_in_process(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    assert "usage: scsiam" in capsys.readouterr().out


def test_missing_input_in_process(tmp_path, capsys):
    rc = cli.main(["cluster", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "out.h5ad")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1", "five", "2.5"])
def test_bad_n_clusters_is_a_usage_error(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(
            ["cluster", str(tmp_path / "in.h5ad"), "-o", str(tmp_path / "o.h5ad"), "--n-clusters", value]
        )
    assert info.value.code == 2
    assert "--n-clusters" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


@pytest.fixture
def small_h5ad(worm_full, tmp_path):
    """150 cells x 300 genes with the reference labels kept in obs['cell_type']."""
    adata = top_genes(subsample(worm_full, 150, seed=31, keep_obs=True), 300)
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    return path


def test_unknown_labels_key(small_h5ad, tmp_path, capsys):
    rc = cli.main(["cluster", str(small_h5ad), "-o", str(tmp_path / "o.h5ad"), "--labels-key", "nope"])
    assert rc == 2
    assert "--labels-key 'nope' is not a column of obs" in capsys.readouterr().err
    assert not (tmp_path / "o.h5ad").exists()


def test_bad_input_value_reports_error(small_h5ad, tmp_path, capsys):
    rc = cli.main(["cluster", str(small_h5ad), "-o", str(tmp_path / "o.h5ad"), "--layer", "nope"])
    assert rc == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "o.h5ad").exists()


def test_unwritable_output_fails_before_fitting(small_h5ad, tmp_path, capsys, monkeypatch):
    import scsiam

    def never(*args, **kwargs):  # fitting must not start
        raise AssertionError("siamese_clu was called")

    monkeypatch.setattr(scsiam.tl, "siamese_clu", never)
    out = tmp_path / "missing_folder" / "o.h5ad"
    rc = cli.main(["cluster", str(small_h5ad), "-o", str(out), "--n-clusters", "3"])
    assert rc == 2
    assert "does not exist or is not writable" in capsys.readouterr().err


def test_missing_layer_error_has_no_stray_quotes(small_h5ad, tmp_path, capsys):
    rc = cli.main(["cluster", str(small_h5ad), "-o", str(tmp_path / "o.h5ad"), "--layer", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: Layer 'nope'"), err


def test_data_warnings_reach_the_user(small_h5ad, tmp_path, capsys):
    """Log-normalised input is clustered through the gaussian likelihood; the CLI says so."""
    import scanpy as sc

    adata = ad.read_h5ad(small_h5ad)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    path = tmp_path / "lognorm.h5ad"
    adata.write_h5ad(path)
    k_args = ["--n-clusters", "3", "--max-epochs", "4"]
    rc = cli.main(["cluster", str(path), "-o", str(tmp_path / "o.h5ad"), *k_args])
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning:" in err and "gaussian" in err, err


def test_spatial_smoothing_without_coordinates_reports_error(small_h5ad, tmp_path, capsys):
    out = tmp_path / "o.h5ad"
    rc = cli.main(
        ["cluster", str(small_h5ad), "-o", str(out), "--n-clusters", "3", "--spatial-smoothing", "2"]
    )
    assert rc == 2
    assert "spatial_smoothing needs spatial coordinates" in capsys.readouterr().err
    assert not out.exists()


def test_cluster_end_to_end(small_h5ad, tmp_path, capsys):
    """Read, cluster, write, and print ARI/NMI against the held-out labels; --max-epochs is honoured."""
    out = tmp_path / "out.h5ad"
    argv = ["cluster", str(small_h5ad), "-o", str(out), "--n-clusters", "4", "--labels-key", "cell_type"]
    rc = cli.main([*argv, "--max-epochs", "6"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert re.search(r"ARI -?\d\.\d{3}\s+NMI \d\.\d{3}", printed), printed
    assert "k=4" in printed
    assert out.exists()
    res = ad.read_h5ad(out)
    assert "siamese_clusters" in res.obs
    assert res.obs["siamese_clusters"].nunique() <= 4
    assert res.obsm["X_siamese"].shape[0] == 150
    assert res.uns["siamese_clu"]["params"]["n_clusters"] == 4
    assert res.uns["siamese_clu"]["params"]["n_epochs"] == 6  # --max-epochs over both phases
    # labels were only compared, never changed
    src = ad.read_h5ad(small_h5ad)
    assert (res.obs["cell_type"].astype(str) == src.obs["cell_type"].astype(str)).all()


def test_spatial_run_prints_only_its_result(tmp_path, capsys):
    """Library notes (seeding, squidpy's graph building, docstring warnings) stay out of the output."""
    import scsiam

    path = tmp_path / "star.h5ad"
    scsiam.datasets.starmap_mpfc()[:150].copy().write_h5ad(path)
    capsys.readouterr()
    rc = cli.main(
        [
            "cluster",
            str(path),
            "-o",
            str(tmp_path / "o.h5ad"),
            "--n-clusters",
            "3",
            "--spatial-key",
            "spatial",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.startswith("clustered 150 cells into k=3 clusters") and out.count("\n") == 1, out
    assert err == "", err


@pytest.mark.parametrize("value", ["1", "x"])
def test_max_epochs_is_checked(value, small_h5ad, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["cluster", str(small_h5ad), "-o", str(tmp_path / "o.h5ad"), "--max-epochs", value])


def test_version_and_help_need_no_heavy_imports():
    """``--version`` and ``--help`` answer without importing torch, scanpy or scvi-tools."""
    code = (
        "import sys\n"
        "from scsiam import cli\n"
        "for argv in (['--version'], ['--help'], ['cluster', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'scanpy', 'scvi', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import scsiam

    assert f"scsiam {scsiam.__version__}" in out.stdout
    assert "--batch-key" in out.stdout and "--key-added" in out.stdout and "--quiet" in out.stdout


def test_cluster_mudata_in_and_out(tmp_path, capsys):
    """An .h5mu input is clustered on RNA + protein and written back as .h5mu with its modalities."""
    import mudata as md

    import scsiam

    mdata = scsiam.datasets.cbmc_citeseq()
    mdata = mdata[:200].copy()
    path, out = tmp_path / "in.h5mu", tmp_path / "out.h5mu"
    mdata.write_h5mu(path)
    rc = cli.main(["cluster", str(path), "-o", str(out), "--n-clusters", "3", "--max-epochs", "2", "-q"])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    assert printed.startswith("clustered 200 cells into k=3")
    res = md.read_h5mu(out)
    assert set(res.mod) == set(mdata.mod)
    assert "siamese_clusters" in res.obs and res.obsm["X_siamese"].shape[0] == 200
    assert res.uns["siamese_clu"]["params"].get("n_proteins", 0) > 0
    assert out.stat().st_mode & 0o777 == 0o666 & ~os_umask()  # the umask's mode, not a private one


def os_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_h5ad_named_as_h5mu_is_a_clear_error(small_h5ad, tmp_path, capsys):
    wrong = tmp_path / "in.h5mu"
    wrong.write_bytes(small_h5ad.read_bytes())
    rc = cli.main(["cluster", str(wrong), "-o", str(tmp_path / "o.h5mu")])
    assert rc == 2
    assert "could not be read as a" in capsys.readouterr().err


def test_key_added_batch_key_and_quiet(small_h5ad, tmp_path, capsys):
    a = ad.read_h5ad(small_h5ad)
    a.obs["batch"] = ["a", "b"] * (a.n_obs // 2)
    path = tmp_path / "b.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "o.h5ad"
    argv = ["cluster", str(path), "-o", str(out), "--n-clusters", "3", "--max-epochs", "2"]
    rc = cli.main([*argv, "--key-added", "sia", "--batch-key", "batch", "--quiet"])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    assert printed.count("\n") == 1 and err == ""
    res = ad.read_h5ad(out)
    assert "sia_clusters" in res.obs and "X_sia" in res.obsm and "sia_clu" in res.uns
    assert "siamese_clusters" not in res.obs
    assert res.uns["sia_clu"]["params"]["batch_key"] == "batch"
    rc = cli.main([*argv, "--batch-key", "nope"])
    assert rc == 2 and "nope" in capsys.readouterr().err


def test_quiet_draws_no_bar(monkeypatch, small_h5ad, tmp_path):
    """--quiet turns the bar off even on a terminal."""
    seen = {}
    import scsiam

    real = scsiam.tl.siamese_clu

    def spy(*args, **kwargs):
        seen["progress_bar"] = kwargs.get("progress_bar")
        return real(*args, **kwargs)

    monkeypatch.setattr(scsiam.tl, "siamese_clu", spy)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    out = tmp_path / "o.h5ad"
    assert (
        cli.main(["cluster", str(small_h5ad), "-o", str(out), "--n-clusters", "3", "--max-epochs", "2", "-q"])
        == 0
    )
    assert seen["progress_bar"] is False
