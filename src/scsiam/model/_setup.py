"""Set-up of AnnData and MuData for :class:`~scsiam.SiameseCluModel` (scvi-tools' registration)."""

from __future__ import annotations

from anndata import AnnData
from scvi.data import AnnDataManager
from scvi.utils import setup_anndata_dsp

from .._constants import DEFAULT_GRAPH_KEY
from .._utils import check_not_view, quiet_libraries, reject_unknown, restored_on_error
from ..data import _setup as setup


class SetupMixin:
    """``setup_anndata`` and ``setup_mudata``: validate, build the cell graph, register the fields."""

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        graph_key: str | None = None,
        spatial_key: str | None = None,
        spatial_weight: float = 0.5,
        graph_mode: str | None = None,
        protein_obsm_key: str | None = None,
        protein_weight: float = 0.5,
        n_neighbors: int = 15,
        n_pcs: int = 50,
        n_spatial_neighbors: int = 6,
        **kwargs,
    ):
        """%(summary)s.

        The cell graph is taken from ``adata.obsp[graph_key]``; when ``graph_key`` is ``None`` a
        label-free kNN graph (PCA of the log-normalised data, ``n_neighbors`` neighbours) is
        built. With ``spatial_key`` the graph follows ``graph_mode``: by default the spatial kNN
        graph (squidpy) alone, which leaves a given ``graph_key`` unused (with a warning);
        ``graph_mode="both"`` joins it with the expression or given graph, weighted by
        ``spatial_weight``; with ``batch_key`` no spatial edge joins two batches. The graph used
        is stored in ``adata.obsp['siamese_connectivities']``; next to scvi-tools' registration
        fields (``obs['_scvi_*']``, ``uns['_scvi_*']``) it is the only key written, and a call that
        fails writes nothing. Views are refused (call ``adata = adata.copy()`` first), and so is
        ``graph_key='siamese_connectivities'`` with ``spatial_key``, which would replace that
        graph with the one built from it.

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        %(param_batch_key)s
        graph_key
            Key of a sparse cell graph in ``adata.obsp`` (e.g. ``"connectivities"``).
        spatial_key
            Key of spatial coordinates in ``adata.obsm``.
        spatial_weight
            Weight of the spatial graph when combined with the expression graph (``"both"``).
        graph_mode
            With ``spatial_key``: ``"spatial"`` (default; the graph branch runs on the spatial kNN
            graph while the gene encoder sees expression), ``"both"`` (weighted union with the
            expression graph) or ``"expression"`` (coordinates not used for the graph).
        protein_obsm_key
            Key of a cells × proteins matrix in ``adata.obsm`` (e.g. CLR-normalised ADTs), encoded by
            its own encoder with a gaussian likelihood and paired with the RNA view.
        protein_weight
            Weight of the protein kNN graph in the built cell graph.
        n_neighbors, n_pcs
            Neighbours and principal components of the kNN graph built when ``graph_key`` is None.
        n_spatial_neighbors
            Neighbours of the spatial graph.
        """
        reject_unknown("setup_anndata", kwargs)
        setup_method_args = cls._get_setup_method_args(**locals())
        check_not_view(adata)
        if graph_key == DEFAULT_GRAPH_KEY and spatial_key is not None:
            raise ValueError(
                f"graph_key={DEFAULT_GRAPH_KEY!r} is where setup_anndata stores the graph it builds with "
                "spatial_key, so your graph would be replaced. Store it under another key first, e.g. "
                f"`adata.obsp['my_graph'] = adata.obsp[{DEFAULT_GRAPH_KEY!r}]`, and pass graph_key='my_graph'."
            )
        setup.validate_adata(
            adata, layer=layer, graph_key=graph_key, spatial_key=spatial_key, batch_key=batch_key,
            protein_obsm_key=protein_obsm_key,
        )  # fmt: skip
        with restored_on_error(adata):
            registered_key = graph_key
            if graph_key is None or spatial_key is not None:
                adata.obsp[DEFAULT_GRAPH_KEY] = setup.build_graph(adata, **setup_method_args["setup_args"])
                registered_key = DEFAULT_GRAPH_KEY
            fields = setup.anndata_fields(
                layer=layer, batch_key=batch_key, graph_key=registered_key, protein_obsm_key=protein_obsm_key
            )
            cls._register(adata, fields, setup_method_args, kwargs)

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_mudata(
        cls,
        mdata,
        rna_layer: str | None = None,
        protein_layer: str | None = None,
        batch_key: str | None = None,
        graph_key: str | None = None,
        protein_weight: float = 0.5,
        n_neighbors: int = 15,
        n_pcs: int = 50,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ):
        """%(summary_mdata)s.

        RNA counts (negative-binomial likelihood) and, optionally, protein values such as
        CLR-normalised ADTs (gaussian likelihood) are each encoded by their own encoder, fused,
        and the RNA view of a cell is also paired with its protein view. The cell graph is
        ``mdata.obsp[graph_key]``, or, when ``graph_key`` is ``None``, the union of an RNA kNN
        graph and a protein kNN graph (weight ``protein_weight``), stored in
        ``mdata.obsp['siamese_connectivities']``.

        Parameters
        ----------
        %(param_mdata)s
        rna_layer
            Layer of the RNA modality with the counts (``None``: its ``X``).
        protein_layer
            Layer of the protein modality (``None``: its ``X``).
        batch_key
            Column of ``obs`` with batches.
        graph_key
            Key of a cell graph in ``mdata.obsp`` (built when ``None``).
        protein_weight
            Weight of the protein kNN graph in the built cell graph.
        n_neighbors, n_pcs
            Neighbours and RNA principal components of the built graph.
        %(param_modalities)s
            Keys: ``"rna_layer"`` (required), ``"protein_layer"`` (optional; leave it out for RNA
            only) and ``"batch_key"`` (optional; ``None`` reads ``mdata.obs``). Example:
            ``{"rna_layer": "rna", "protein_layer": "prot"}``.

        Examples
        --------
        >>> SiameseCluModel.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
        >>> model = SiameseCluModel(mdata, n_clusters=15)
        """
        reject_unknown("setup_mudata", kwargs)
        setup_method_args = cls._get_setup_method_args(**locals())
        if not setup.is_mudata(mdata):
            raise TypeError(
                f"setup_mudata expects a MuData, got {type(mdata).__name__}; use setup_anndata for AnnData."
            )
        check_not_view(mdata, "mdata")
        X, protein_values = setup.validate_mudata(
            mdata, modalities, rna_layer=rna_layer, protein_layer=protein_layer, batch_key=batch_key,
            batch_mod=(modalities or {}).get("batch_key"),
        )  # fmt: skip
        modalities_ = cls._create_modalities_attr_dict(modalities, setup_method_args)
        if graph_key is not None and graph_key not in mdata.obsp:
            raise KeyError(f"Graph {graph_key!r} is not in mdata.obsp (keys: {list(mdata.obsp.keys())}).")
        with restored_on_error(mdata):
            if graph_key is None:
                mdata.obsp[DEFAULT_GRAPH_KEY] = setup.mudata_graph(
                    X, protein_values, protein_weight=protein_weight, n_neighbors=n_neighbors, n_pcs=n_pcs
                )
            fields = setup.mudata_fields(
                modalities_, rna_layer=rna_layer, protein_layer=protein_layer, batch_key=batch_key,
                graph_key=graph_key or DEFAULT_GRAPH_KEY,
            )  # fmt: skip
            cls._register(mdata, fields, setup_method_args, kwargs)

    @classmethod
    def _register(cls, data, fields, setup_method_args, kwargs) -> None:
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        with quiet_libraries():  # scvi-tools' "Generating sequential column names" notes
            adata_manager.register_fields(data, **kwargs)
        cls.register_manager(adata_manager)
