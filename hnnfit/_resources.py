"""Locations of the files hnnfit ships: mechanisms, parameter sets, data.

In a source checkout or an editable install they are the repository's
top-level ``mod/``, ``params/`` and ``data/`` folders; a regular install
carries copies in ``hnnfit/_resources/`` (see ``setup.py``).
"""
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _resource_dir(name):
    installed = _PKG / "_resources" / name
    if installed.is_dir():
        return installed
    return _PKG.parent / name


def mod_dir():
    """Folder holding hnnfit's NMODL mechanism files."""
    return _resource_dir("mod")


def params_dir():
    """Folder holding hnnfit's own parameter files."""
    return _resource_dir("params")


def data_dir():
    """Folder holding data hnnfit generates and ships (e.g. demo targets)."""
    return _resource_dir("data")
