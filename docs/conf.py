"""Sphinx configuration of hnnfit's documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html``. The
gallery executes ``examples/plot_*.py``; ``-D plot_gallery=0`` (or
``HNNFIT_DOCS_NO_GALLERY=1``) renders it without running them, for quick
edits of the text.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "_ext"))

import apiref  # noqa: E402

import hnnfit  # noqa: E402

project = "hnnfit"
author = "the hnnfit developers"
copyright = "the hnnfit developers"
release = hnnfit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5",
                    "auto_examples/*.codeobj.json"]
root_doc = "index"

# The API reference: one page per public module, written from the package
# (every name of hnnfit.__all__ and the submodules' public names).
_api_entries = apiref.write_api_pages(HERE / "api")
apiref.remove_stale_stubs(HERE / "generated", _api_entries)
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()

plot_gallery = "False" if os.environ.get("HNNFIT_DOCS_NO_GALLERY") else "True"
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "capture_repr": (),
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 1,
}

html_theme = "pydata_sphinx_theme"
html_title = "hnnfit"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []
