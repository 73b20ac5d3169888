"""Sphinx configuration of the scsiam documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
import warnings
from datetime import datetime
from importlib.metadata import metadata
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))  # harmless when the package is installed (editable)

# sphinx-autodoc-typehints calls an API that Sphinx 9 deprecates; the message (a Python
# warning, not a Sphinx one) is repeated for every docstring and hides real problems.
warnings.filterwarnings("ignore", message=r".*set_application.*", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r".*set_application.*", category=PendingDeprecationWarning)

# -- Project information -----------------------------------------------------------------------
info = metadata("scsiam")
project = info["Name"]
author = info.get("Author") or "scsiam developers"
copyright = f"{datetime.now():%Y}, {author}"
version = info["Version"]
release = version
urls = dict(u.split(", ", 1) for u in info.get_all("Project-URL") or [])
repository_url = urls.get("Source", "https://github.com/scsiam/scsiam")

# -- General configuration ---------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx_copybutton",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",  # must come after napoleon
]

templates_path = ["_templates"]
html_static_path = ["_static"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "tutorials/*.py",  # jupytext sources; the executed .ipynb is what is rendered
    "tutorials/README.md",
]
master_doc = "index"
default_role = "literal"
needs_sphinx = "7.0"

# MyST / myst-nb: notebooks are committed executed and never run at build time
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".md": "myst-nb"}
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["amsmath", "colon_fence", "deflist", "dollarmath", "html_image", "html_admonition"]
myst_heading_anchors = 3
myst_url_schemes = ("http", "https", "mailto")

# autodoc / autosummary / napoleon (numpy style)
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"show-inheritance": False}
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
# Members without a docstring of their own (e.g. Lightning/scvi-tools hooks such as
# ``train_dataloader``) would otherwise inherit the parent's docstring, which uses roles and
# labels of those projects' docs and fails the -W build. Only scsiam's own docs are shown.
autodoc_inherit_docstrings = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_custom_sections = [("Params", "Parameters")]
typehints_defaults = "braces"
typehints_document_rtype = True
always_document_param_types = False
nitpicky = False


def _own_documented_members(paths: list[str]) -> dict[str, list[str]]:
    """Public members each class defines itself with a docstring (for the class template's tables)."""
    import importlib

    out = {}
    for path in paths:
        mod, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(mod), name)
        keep = []
        own = [k for k in cls.__mro__ if k.__module__.startswith("scsiam")]  # the class and its scsiam mixins
        for attr, value in [item for k in own for item in vars(k).items()]:
            target = getattr(value, "__func__", None) or getattr(value, "fget", None) or value
            if not attr.startswith("_") and getattr(target, "__doc__", None) and attr not in keep:
                keep.append(attr)
        out[path] = keep
    return out


autosummary_context = {
    "documented": _own_documented_members(
        [
            "scsiam.SiameseCluModel",
            "scsiam.module.SiameseModule",
            "scsiam.train.SiameseTrainingPlan",
            "scsiam.dataloaders.GraphDataSplitter",
            "scsiam.module.ClusterHead",
            "scsiam.data.ObspField",
        ]
    )
}

# intersphinx: the build machine may have no internet. A failed inventory download is a Sphinx
# warning (an error under -W), so the mapping is only enabled when the inventories can be
# fetched: on Read the Docs, or when SCSIAM_DOCS_INTERSPHINX=1 is set.
_intersphinx = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}
_online = os.environ.get("READTHEDOCS") == "True" or os.environ.get("SCSIAM_DOCS_INTERSPHINX") == "1"
intersphinx_mapping = _intersphinx if _online else {}
intersphinx_timeout = 10

# -- HTML output -------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "repository_url": repository_url,
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
html_show_sphinx = False
pygments_style = "default"
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
