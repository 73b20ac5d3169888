"""Hostile and unlucky use: files that could run code or are damaged, interrupted writes, degenerate data."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
import zipfile

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import TL_KW, TRAIN_KW, assert_unchanged, make_poisson, snapshot

import scsiam
from scsiam import SiameseCluModel, cli

MODEL_KW = {"n_clusters": 3, "n_hidden": 16, "n_graph_hidden": 8}


class _Payload:
    """Unpickling this object writes a marker file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def saved_model(tmp_path):
    adata = make_poisson(80, 30, seed=2)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, **MODEL_KW)
    model.train(**TRAIN_KW)
    folder = tmp_path / "model"
    model.save(str(folder))
    return adata, model, folder


# ------------------------------------------------------------------------------ model files
def _rewrite_zip(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            zout.writestr(item, change(item.filename, zin.read(item.filename)))


def test_flipped_bytes_in_a_tensor_record_are_refused(saved_model):
    adata, _, folder = saved_model
    path = folder / "model.pt"
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 100 : start + 120] = bytes(b ^ 0xFF for b in raw[start + 100 : start + 120])
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        SiameseCluModel.load(str(folder), adata=adata)


def test_weights_changed_behind_a_valid_archive_fail_the_checksum(saved_model, tmp_path):
    adata, _, folder = saved_model
    saved = torch.load(folder / "model.pt", weights_only=False)
    key = next(
        k for k, v in saved["model_state_dict"].items() if isinstance(v, torch.Tensor) and v.numel() > 10
    )
    saved["model_state_dict"][key] = saved["model_state_dict"][key] + 1.0
    torch.save(saved, folder / "model.pt")
    with pytest.raises(ValueError, match="do not match the checksum"):
        SiameseCluModel.load(str(folder), adata=adata)


def test_backup_url_payload_is_refused_without_running(saved_model, tmp_path):
    adata, _, folder = saved_model
    marker = tmp_path / "ran"
    saved = torch.load(folder / "model.pt", weights_only=False)
    saved["attr_dict"]["evil_"] = _Payload(str(marker))
    served = tmp_path / "served.pt"
    torch.save(saved, served)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="refused"):
        SiameseCluModel.load(str(empty), adata=adata, backup_url=served.as_uri())
    assert not marker.exists()
    assert os.listdir(empty) == []  # nothing downloaded into the user's folder


def test_interrupted_save_keeps_the_previous_model(saved_model, monkeypatch):
    adata, model, folder = saved_model
    before = (folder / "model.pt").read_bytes()
    real_save = torch.save

    def half_then_interrupt(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:  # the file on disk is cut short, then the user presses Ctrl-C
            fh.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.save(str(folder), overwrite=True)
    monkeypatch.undo()
    assert (folder / "model.pt").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["model.pt"]  # no temporary folder left behind
    SiameseCluModel.load(str(folder), adata=adata).predict()


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_holding_code_is_refused(tmp_path):
    adata = make_poisson(80, 30, seed=3)
    SiameseCluModel.setup_anndata(adata)
    model = SiameseCluModel(adata, **MODEL_KW)
    marker = tmp_path / "ran"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    with open(ckpt / "pretrain.ckpt", "wb") as f:
        torch.save({"state_dict": {}, "evil": _Payload(str(marker))}, f, pickle_module=pickle)
    with pytest.raises(ValueError, match="refused"):
        model.train(**TRAIN_KW, checkpoint_dir=str(ckpt))
    assert not marker.exists()
    assert not model.is_trained_


def test_checkpoints_of_other_cells_are_refused(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    first = make_poisson(80, 30, seed=4)
    SiameseCluModel.setup_anndata(first)
    SiameseCluModel(first, **MODEL_KW).train(**TRAIN_KW, checkpoint_dir=ckpt)
    other = make_poisson(90, 30, seed=5)
    SiameseCluModel.setup_anndata(other)
    model = SiameseCluModel(other, **MODEL_KW)
    with pytest.raises(ValueError, match="another run.*n_obs"):
        model.train(**TRAIN_KW, checkpoint_dir=ckpt)
    assert not model.is_trained_


def test_truncated_checkpoint_names_the_file(tmp_path):
    ckpt = tmp_path / "ckpt"
    adata = make_poisson(80, 30, seed=4)
    SiameseCluModel.setup_anndata(adata)
    SiameseCluModel(adata, **MODEL_KW).train(**TRAIN_KW, checkpoint_dir=str(ckpt))
    path = ckpt / "cluster.ckpt"
    path.write_bytes(path.read_bytes()[:200])
    before = path.read_bytes()
    model = SiameseCluModel(adata, **MODEL_KW)
    with pytest.raises(ValueError, match="cluster.ckpt.*corrupt or truncated.*delete it"):
        model.train(**TRAIN_KW, checkpoint_dir=str(ckpt))
    assert path.read_bytes() == before  # the file is left for the user to inspect
    assert not model.is_trained_


# ------------------------------------------------------------------------------ degenerate data
def _setup_in_subprocess(code: str) -> subprocess.CompletedProcess:
    """Run set-up code in a child process, so that a crash of a library (a segfault) fails the test."""
    prog = (
        "import numpy as np, anndata as ad, scipy.sparse as sp\nfrom scsiam import SiameseCluModel\n" + code
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "matrix",
    ["sp.csr_matrix((100, 50), dtype=np.float32)", "np.ones((100, 50), dtype=np.float32)"],
    ids=["all-zero", "constant"],
)
def test_matrix_without_signal_is_an_error_not_a_crash(matrix):
    code = (
        f"a = ad.AnnData(X={matrix})\n"
        "try:\n    import scsiam; scsiam.tl.siamese_clu(a, n_clusters=3)\n"
        "except ValueError as e:\n    print('VALUEERROR', e)\n"
    )
    res = _setup_in_subprocess(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "VALUEERROR" in res.stdout and "no signal" in res.stdout
    assert not ad.AnnData(X=np.ones((2, 2))).obsm  # (the parent process was never at risk)


def test_one_varying_gene_is_an_error():
    X = np.zeros((60, 20), dtype=np.float32)
    X[:, 3] = np.arange(60) % 4
    adata = ad.AnnData(X=X)
    snap = snapshot(adata)
    with pytest.raises(ValueError, match="1 of 20 gene"):
        scsiam.tl.siamese_clu(adata, n_clusters=3, **TL_KW)
    with pytest.raises(ValueError, match="no signal"):
        SiameseCluModel.setup_anndata(adata)
    assert_unchanged(adata, snap)


def test_object_dtype_names_the_matrix():
    adata = make_poisson(40, 10)
    adata.X = adata.X.toarray().astype(object)
    with pytest.raises(TypeError, match="adata.X has dtype object"):
        SiameseCluModel.setup_anndata(adata)


def test_unlogged_non_count_values_run_with_a_warning():
    adata = make_poisson(80, 60, seed=6)
    adata.X = adata.X.toarray() * 1234.5  # TPM-like: non-integer, far above any log scale
    with pytest.warns(UserWarning, match="unlogged"):
        scsiam.tl.siamese_clu(adata, n_clusters=3, n_top_genes=30, **TL_KW)
    assert adata.obs["siamese_clusters"].notna().all()


@pytest.mark.parametrize(
    ("change", "error"),
    [(lambda G: G.multiply(-1), "negative edge weight"), (lambda G: G * 0, "no edge of positive weight")],
    ids=["negative", "all-zero"],
)
def test_bad_graph_weights_are_named(change, error):
    adata = make_poisson(60, 20)
    G = sp.random(60, 60, density=0.1, random_state=0, format="csr")
    adata.obsp["g"] = sp.csr_matrix(change(G + G.T))
    snap = snapshot(adata)
    with pytest.raises(ValueError, match=error):
        SiameseCluModel.setup_anndata(adata, graph_key="g")
    assert_unchanged(adata, snap)


def test_graph_without_edges_is_an_error():
    adata = make_poisson(60, 20)
    adata.obsp["g"] = sp.csr_matrix((60, 60), dtype=np.float32)
    with pytest.raises(ValueError, match=r"obsp\['g'\] has no edge"):
        SiameseCluModel.setup_anndata(adata, graph_key="g")


@pytest.mark.parametrize("where", ["spatial", "protein"])
def test_text_column_in_a_table_names_the_key(where):
    import pandas as pd

    adata = make_poisson(60, 20)
    table = pd.DataFrame({"a": np.arange(60.0), "b": ["x"] * 60}, index=adata.obs_names)
    adata.obsm["t"] = table
    kwargs = {"spatial_key": "t"} if where == "spatial" else {"protein_obsm_key": "t"}
    snap = snapshot(adata)
    with pytest.raises(TypeError, match=r"obsm\['t'\] has columns that are not numbers: 'b'"):
        SiameseCluModel.setup_anndata(adata, **kwargs)
    assert_unchanged(adata, snap)


def test_distance_graph_given_as_connectivities_warns():
    adata = make_poisson(60, 20)
    G = sp.random(60, 60, density=0.1, random_state=0, format="csr") * 10 + sp.random(
        60, 60, density=0.1, random_state=1
    )
    adata.obsp["distances"] = sp.csr_matrix(G + G.T)
    with pytest.warns(UserWarning, match="graph of distances"):
        SiameseCluModel.setup_anndata(adata, graph_key="distances")


def test_identical_coordinates_warn():
    adata = make_poisson(60, 20)
    adata.obsm["spatial"] = np.ones((60, 2))
    with pytest.warns(UserWarning, match="same coordinates"):
        SiameseCluModel.setup_anndata(adata, spatial_key="spatial")


def test_new_cells_with_negative_values_are_refused(saved_model):
    _, model, _ = saved_model
    new = make_poisson(30, 30, seed=7)
    new.var_names = model.adata.var_names
    new.X = new.X.toarray() - 1.0
    snap = snapshot(new)
    with pytest.raises(ValueError, match="negative value"):
        model.predict(new)
    assert_unchanged(new, snap)


# ------------------------------------------------------------------------------ command line
@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "in.h5ad"
    make_poisson(60, 30, seed=8).write_h5ad(path)
    return path


def test_cli_interrupted_write_leaves_the_input_file_intact(small_file, monkeypatch, capsys):
    before = small_file.read_bytes()
    real_write = ad.AnnData.write_h5ad

    def write_then_interrupt(self, filename, *a, **k):
        real_write(self, filename, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write_then_interrupt)
    rc = cli.main(
        ["cluster", str(small_file), "-o", str(small_file), "--n-clusters", "3", "--max-epochs", "2"]
    )
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    assert small_file.read_bytes() == before
    assert [p.name for p in small_file.parent.iterdir()] == ["in.h5ad"]


def test_cli_ctrl_c_during_the_fit_is_one_line_and_exit_130(small_file, tmp_path, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(scsiam.tl, "siamese_clu", interrupted)
    out = tmp_path / "o.h5ad"
    rc = cli.main(["cluster", str(small_file), "-o", str(out), "--n-clusters", "3"])
    err = capsys.readouterr().err
    assert rc == 130
    assert err.strip() == "interrupted: nothing was written"
    assert not out.exists()


def test_cli_same_input_and_output(small_file, capsys):
    rc = cli.main(
        ["cluster", str(small_file), "-o", str(small_file), "--n-clusters", "3", "--max-epochs", "2"]
    )
    assert rc == 0, capsys.readouterr().err
    assert "siamese_clusters" in ad.read_h5ad(small_file).obs


def test_cli_output_folder_is_refused_before_fitting(small_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scsiam.tl, "siamese_clu", lambda *a, **k: pytest.fail("fitted before checking -o"))
    rc = cli.main(["cluster", str(small_file), "-o", str(tmp_path), "--n-clusters", "3"])
    assert rc == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"cell,gene\n1,2\n", b"\x89HDF\r\n"], ids=["csv", "truncated"])
def test_cli_unreadable_input_names_the_file(content, tmp_path, capsys):
    path = tmp_path / "bad.h5ad"
    path.write_bytes(content)
    rc = cli.main(["cluster", str(path), "-o", str(tmp_path / "o.h5ad"), "--n-clusters", "3"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "bad.h5ad" in err and "Traceback" not in err


def test_cli_seed_bounds(small_file, tmp_path):
    with pytest.raises(SystemExit), warnings.catch_warnings():
        cli.main(["cluster", str(small_file), "-o", str(tmp_path / "o.h5ad"), "--seed", "-1"])


@pytest.mark.parametrize("case", ["five-genes", "negative"])
def test_sparse_signal_and_negative_values_still_cluster(case):
    rng = np.random.default_rng(9)
    if case == "five-genes":  # five genes with counts among 600: scanpy's gene selection used to fail
        X = np.zeros((120, 600), dtype=np.float32)
        X[:, :5] = rng.poisson(3, (120, 5))
    else:  # scaled values: not counts, negative, gaussian likelihood
        X = rng.normal(size=(120, 80)).astype(np.float32)
    adata = ad.AnnData(X=X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scsiam.tl.siamese_clu(adata, n_clusters=3, n_top_genes=50, **TL_KW)
    assert adata.obs["siamese_clusters"].notna().all()


def test_predict_on_too_few_new_cells_says_why(saved_model):
    _, model, _ = saved_model
    new = make_poisson(5, 30, seed=10)
    new.var_names = model.adata.var_names
    with pytest.raises(ValueError, match="5 cell.*kNN graph.*together with more cells"):
        model.predict(new)
