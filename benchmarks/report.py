"""The report of the quality benchmark: ``quality.md`` (tables) and ``quality_ari.png`` from the CSV."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.methods import METHODS, is_peer
from benchmarks.store import dumps, read_results


def _method_order(methods) -> list[str]:
    known = [m for m in METHODS if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def _file_order(df: pd.DataFrame) -> list[str]:
    kinds = df.groupby("file")["kind"].first()
    return sorted(kinds.index, key=lambda f: (kinds[f] == "spatial", f))


def _fmt(mean, std, n) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.3f}" if n < 2 or pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def _reported(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the tables use: successful, with the default train_kwargs (no smoke tests)."""
    return df[(df["status"] == "ok") & (df["train_kwargs"] == "")]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    ok = _reported(df)
    if ok.empty:
        return pd.DataFrame()
    g = ok.groupby(["file", "method"])
    agg = g.agg(
        kind=("kind", "first"), true_k=("true_k", "first"), n=("seed", "nunique"),
        seeds=("seed", lambda s: " ".join(str(int(x)) for x in sorted(s))),
        ARI=("ARI", "mean"), ARI_std=("ARI", "std"), NMI=("NMI", "mean"), NMI_std=("NMI", "std"),
        ACC=("ACC", "mean"), ACC_std=("ACC", "std"), seconds=("seconds", "mean"), k_found=("k_found", "mean"),
    )  # fmt: skip
    return agg.reset_index()


def best_peer(agg_file: pd.DataFrame) -> tuple[str, float]:
    """The peer with the highest mean ARI among one file's rows of :func:`summarise`, and that ARI."""
    peers = agg_file[agg_file["method"].map(is_peer)]
    if peers.empty:
        return "", np.nan
    i = peers["ARI"].idxmax()
    return str(peers.loc[i, "method"]), float(peers.loc[i, "ARI"])


# ------------------------------------------------------------------------------------ markdown
def _per_file_lines(agg: pd.DataFrame, files: list[str]) -> list[str]:
    lines = ["## Per file", "",
             "| file | method | seeds | ARI | NMI | ACC | k found (true k) | seconds |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for f in files:
        sub = agg[agg["file"] == f].set_index("method")
        for m in _method_order(sub.index):
            r = sub.loc[m]
            kind = " (spatial)" if r["kind"] == "spatial" else ""
            lines.append(
                f"| {f}{kind} | {m} | {r['seeds']} | {_fmt(r['ARI'], r['ARI_std'], r['n'])} | "
                f"{_fmt(r['NMI'], r['NMI_std'], r['n'])} | {_fmt(r['ACC'], r['ACC_std'], r['n'])} | "
                f"{r['k_found']:.3g} ({int(r['true_k'])}) | {r['seconds']:.1f} |"
            )
    return [*lines, ""]


def _ari_cells(sub: pd.DataFrame, methods: list[str]) -> tuple[list[str], dict[str, float]]:
    """One file's cells of the ARI summary, and its values (methods, ``best peer``, ``delta``)."""
    vals = sub.set_index("method")["ARI"]
    best_name, best = best_peer(sub)
    own = vals.get("scsiam", np.nan)
    delta = own - best if not (pd.isna(own) or pd.isna(best)) else np.nan
    values = {m: vals.get(m, np.nan) for m in methods}
    cells = []
    for m in methods:
        txt = "—" if pd.isna(values[m]) else f"{values[m]:.3f}"
        cells.append(f"**{txt}**" if m == best_name else txt)
    cells.append("—" if pd.isna(best) else f"{best:.3f} ({best_name})")
    cells.append("—" if pd.isna(delta) else f"{delta:+.3f}")
    return cells, {**values, "best peer": best, "delta": delta}


def _ari_summary_lines(agg: pd.DataFrame, files: list[str], methods: list[str]) -> list[str]:
    lines = ["## ARI summary (mean over seeds)", "",
             "Best peer = the peer with the highest mean ARI on that file (an oracle choice); "
             "Δ = scsiam − best peer.", ""]  # fmt: skip
    head = ["file", *methods, "best peer", "scsiam − best peer"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scrna_vals: dict[str, list[float]] = {m: [] for m in [*methods, "best peer", "delta"]}
    scrna_files = [f for f in files if (agg.loc[agg["file"] == f, "kind"] == "scRNA").all()]
    for f in files:
        cells, values = _ari_cells(agg[agg["file"] == f], methods)
        if f in scrna_files:
            for key, v in values.items():
                if not pd.isna(v):
                    scrna_vals[key].append(v)
        kind = " (spatial)" if f not in scrna_files else ""
        lines.append(f"| {f}{kind} | " + " | ".join(cells) + " |")
    n_scrna = len(scrna_files)

    def _mean_cell(vs):
        if not vs:
            return "—"
        return f"{np.mean(vs):.3f}" + ("" if len(vs) == n_scrna else f" ({len(vs)}/{n_scrna})")

    mean_row = [_mean_cell(scrna_vals[m]) for m in [*methods, "best peer", "delta"]]
    lines.append("| **mean over scRNA files** | " + " | ".join(mean_row) + " |")
    lines += ["", f"Mean over the {n_scrna} scRNA (non-spatial) files; `(n/{n_scrna})` marks a mean over fewer files.",
              ""]  # fmt: skip
    return lines


def _autok_lines(df: pd.DataFrame) -> list[str]:
    ok = _reported(df)
    ok = ok[ok["method"] == "scsiam-autok"]
    if ok.empty:
        return []
    lines = ["## Auto-k (`scsiam-autok`, n_clusters=None)", "",
             "| file | true k | chosen k per seed | within ±30 % |", "|---|---|---|---|"]  # fmt: skip
    for f in _file_order(ok):
        sub = ok[ok["file"] == f].sort_values("seed")
        true_k = int(sub["true_k"].iloc[0])
        chosen = sub["k_model"].fillna(sub["k_found"]).astype(int).tolist()
        per_seed = ", ".join(f"{k} (s{int(s)})" for k, s in zip(chosen, sub["seed"], strict=True))
        within = sum(abs(k - true_k) <= 0.3 * true_k for k in chosen)
        lines.append(f"| {f} | {true_k} | {per_seed} | {within}/{len(chosen)} |")
    return [*lines, ""]


def _left_out_lines(df: pd.DataFrame) -> list[str]:
    """Failed runs, and the count of smoke-test rows (non-default train_kwargs)."""
    lines = []
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        lines += ["## Failed runs", "", "| file | method | seed | error |", "|---|---|---|---|"]
        for _, r in bad.iterrows():
            err = str(r["error"]).replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| {r['file']} | {r['method']} | {int(r['seed'])} | {err} |")
        lines.append("")
    smoke = df[df["train_kwargs"] != ""]
    if not smoke.empty:
        lines += [
            f"{len(smoke)} rows run with non-default train_kwargs (smoke tests) are left out of the tables.",
            "",
        ]
    return lines


def _provenance_lines(df: pd.DataFrame, methods: list[str]) -> list[str]:
    used = _reported(df)
    lines = ["## Provenance", "", "Commands that produced the rows above (from the `command` column):", ""]
    lines += [f"- `{c}`" for c in used["command"].drop_duplicates()]
    lines += ["", "Machines: " + "; ".join(used["machine"].drop_duplicates()), ""]
    lines += ["Methods:", ""]
    lines += [f"- `{m}`: {METHODS[m].description}" + (f" — model_kwargs `{dumps(METHODS[m].model_kwargs)}`"
              if METHODS[m].model_kwargs else "") for m in methods if m in METHODS]  # fmt: skip
    return lines


def write_markdown(df: pd.DataFrame, agg: pd.DataFrame, path: Path) -> None:
    lines = ["# Clustering quality: scsiam and peers", ""]
    lines += [
        "Generated by `benchmarks/quality.py` from `quality.csv` "
        f"({_dt.datetime.now().isoformat(timespec='minutes')}). Protocol: `BENCHMARK.md` "
        "(labels only for scoring, k = number of true classes, final model, no per-dataset tuning). "
        "Mean ± sample std over the seeds listed; seconds = wall time of the method on the machine named "
        "below (preprocessing included; each scVI peer includes the scVI training it shares with the other).",
        "",
    ]
    if agg.empty:
        lines.append("No successful runs yet.")
        path.write_text("\n".join(lines) + "\n")
        return
    files = _file_order(agg)
    methods = _method_order(agg["method"].unique())
    lines += _per_file_lines(agg, files)
    lines += _ari_summary_lines(agg, files, methods)
    lines += _autok_lines(df)
    lines += _left_out_lines(df)
    lines += _provenance_lines(df, methods)
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ figure
def method_colors(methods: list[str]) -> dict:
    """One colour per method, distinct within and across families: scsiam's rows in reds and
    oranges, its ablations and variants in greys and purples, peers in blues, greens and browns."""
    import matplotlib.pyplot as plt

    def family(m):
        return METHODS[m].family if m in METHODS else "peer"

    # family -> (colour map, the part of it used); peers from tab20 without its reds, oranges,
    # pinks, purples and greys (the hues of the other families)
    ramps = {
        "scsiam": ("autumn", 0.0, 0.8),
        "ablation": ("Greys", 0.35, 0.55),
        "variant": ("Purples", 0.35, 0.55),
    }
    peer_colors = [plt.get_cmap("tab20")(i) for i in (0, 4, 10, 18, 16, 1, 5, 11, 19, 17)]
    out = {}
    for f in ("peer", *ramps):
        members = [m for m in methods if family(m) == f]
        for j, m in enumerate(members):
            if f == "peer":
                out[m] = peer_colors[j % len(peer_colors)]
            else:  # spread over the ramp; the first (the default) is the strongest
                name, start, span = ramps[f]
                out[m] = plt.get_cmap(name)(start + span * j / len(members))
    return out


def plot_ari(agg: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if agg.empty:
        return
    files = _file_order(agg)
    methods = _method_order(agg["method"].unique())
    colors = method_colors(methods)
    table = agg.set_index(["file", "method"])
    present = {f: [m for m in methods if (f, m) in table.index] for f in files}
    width = 0.84 / max(len(v) for v in present.values())
    n_bars = sum(len(v) for v in present.values())
    fig, ax = plt.subplots(figsize=(min(30.0, max(8.0, 0.16 * n_bars + 3.0)), 4.8))
    x = np.arange(len(files))
    labelled: set[str] = set()
    for i, f in enumerate(files):
        group = present[f]
        for j, m in enumerate(group):
            r = table.loc[(f, m)]
            std = r["ARI_std"]
            ax.bar(
                i - width * len(group) / 2 + width * (j + 0.5), r["ARI"], width,
                yerr=None if pd.isna(std) else std, capsize=2, color=colors[m],
                label=None if m in labelled else m,
                edgecolor="black" if METHODS.get(m) and METHODS[m].family == "scsiam" else "none",
                linewidth=0.6, error_kw={"elinewidth": 0.8},
            )  # fmt: skip
            labelled.add(m)
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(m) for m in methods if m in labels]
    kinds = agg.groupby("file")["kind"].first()
    ax.set_xticks(x)
    ax.set_xticklabels([f + ("\n(spatial)" if kinds[f] == "spatial" else "") for f in files],
                       rotation=25, ha="right", fontsize=9)  # fmt: skip
    ax.set_ylabel("ARI (mean ± std over seeds;\nno bar: one seed)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Clustering quality per dataset (benchmarks/quality.py)")
    ax.legend([handles[k] for k in order], [labels[k] for k in order], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def write_report(out: Path) -> None:
    df = read_results(out / "quality.csv")
    agg = summarise(df)
    write_markdown(df, agg, out / "quality.md")
    plot_ari(agg, out / "quality_ari.png")
    print(f"[quality] wrote {out / 'quality.md'} and {out / 'quality_ari.png'} ({len(df)} rows)", flush=True)
