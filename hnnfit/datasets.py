"""Recorded waveforms distributed with the original HNN software, on demand.

The S1 event-related potentials recorded with MEG (Jones et al. 2007) are
the classic fitting targets of HNN. They are not shipped with hnnfit;
:func:`fetch_dataset` finds a local copy or downloads one, and always checks
its SHA-256 checksum against the published file.

Where a file is looked for, in order:

1. ``$HNNFIT_DATA/<file>`` when the environment variable ``HNNFIT_DATA``
   names a folder (a local mirror, e.g. a copy of HNN's
   ``data/MEG_detection_data``); a file missing there is looked for next
   in the cache;
2. the cache, ``<data_home>/<file>``; ``data_home`` defaults to
   ``$HNNFIT_CACHE/data`` or else ``~/.cache/hnnfit/data``;
3. the public URL (raw files of the ``jonescompneurolab/hnn`` GitHub
   repository), downloaded into the cache.

A file whose checksum does not match is never returned: a corrupt cached or
downloaded copy is deleted, and :class:`~hnnfit.exceptions.DatasetError`
names the file and both hashes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .exceptions import HnnfitError
from .validation import check_type

#: Folder of the raw files in HNN's public repository.
BASE_URL = ("https://raw.githubusercontent.com/jonescompneurolab/hnn/master/"
            "data/MEG_detection_data/")


class DatasetError(HnnfitError):
    """A dataset could not be obtained intact (download failed or bad checksum)."""


@dataclass(frozen=True)
class Dataset:
    """One published data file.

    Attributes
    ----------
    name : str
        The name :func:`fetch_dataset` takes.
    filename : str
        File name, in a local mirror and in the cache.
    url : str
        Public address of the file.
    sha256 : str
        SHA-256 (hex) of the published file.
    description : str
        What the file holds.
    """

    name: str
    filename: str
    url: str
    sha256: str
    description: str


def _entry(name, sha256, description):
    filename = f"{name}.txt"
    return Dataset(name, filename, BASE_URL + filename, sha256, description)


#: The datasets :func:`fetch_dataset` knows, by name.
DATASETS = {d.name: d for d in (
    _entry("yes_trial_S1_ERP_all_avg",
           "39c8fd83db876106f9d7350319dd495437e1addb923cbecc8513bd6cd234f77d",
           "S1 ERP (time ms, dipole nAm) of detected threshold-level taps, "
           "averaged over trials and subjects"),
    _entry("no_trial_S1_ERP_all_avg",
           "8a3cfe0b5984603a3f8428b06f01f77ca944075e9e0b464eb5b511872fa7bef7",
           "S1 ERP (time ms, dipole nAm) of undetected threshold-level taps"),
    _entry("S1_SupraT",
           "736ec0d5d12dcd29a6169b72ec58c0dcdae09c140f3aacd7cd7ab8e3ff0af435",
           "S1 ERP (time ms, dipole nAm) of supra-threshold taps"),
    _entry("S1_ongoing",
           "bc2857ef80def9ffbd9d8ef703db28e191c4697eaa2475a0a298cc948d292702",
           "ongoing (pre-stimulus) S1 activity: time (ms) and one column per trial (nAm)"),
)}

# bytes read at a time when hashing or copying
_CHUNK = 1 << 16


def dataset_names():
    """Names :func:`fetch_dataset` accepts, sorted."""
    return sorted(DATASETS)


def default_data_home():
    """The cache folder: ``$HNNFIT_CACHE/data`` or ``~/.cache/hnnfit/data``."""
    root = os.environ.get("HNNFIT_CACHE")
    if root:
        return Path(root).expanduser() / "data"
    return Path.home() / ".cache" / "hnnfit" / "data"


def file_sha256(path):
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _get_dataset(name):
    check_type(name, str, "name")
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"name must be one of {', '.join(map(repr, dataset_names()))}, got {name!r}"
        ) from None


def _checksum_error(ds, path, actual, where):
    return DatasetError(
        f"{where} file {str(path)!r} of dataset {ds.name!r} has SHA-256 {actual}, "
        f"expected {ds.sha256}; the file is corrupt or not the published one"
    )


def _download(ds, dest, url, opener):
    """Download ``url`` to ``dest`` through a temporary file; verify it first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{ds.filename}.", suffix=".part",
                                    dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with opener(url) as response:
                    shutil.copyfileobj(response, out, _CHUNK)
            except OSError as err:  # URLError and HTTPError are OSErrors
                raise DatasetError(
                    f"could not download dataset {ds.name!r} from {url}: {err}; set "
                    f"HNNFIT_DATA to a folder holding {ds.filename} to work offline"
                ) from None
        actual = file_sha256(tmp)
        if actual != ds.sha256:
            raise _checksum_error(ds, url, actual, "downloaded")
        # the cache only ever holds verified files
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def fetch_dataset(name, data_home=None, *, url=None, download=True, opener=None):
    """Local path of a recorded dataset, downloading it if needed.

    Parameters
    ----------
    name : str
        One of ``'yes_trial_S1_ERP_all_avg'``, ``'no_trial_S1_ERP_all_avg'``,
        ``'S1_SupraT'``, ``'S1_ongoing'`` (see :data:`DATASETS`).
    data_home : str | Path | None
        Cache folder; default :func:`default_data_home`.
    url : str | None
        Download from this address instead of the public one (e.g. a mirror,
        or a ``file://`` URL). The checksum is verified all the same.
    download : bool
        If False, never download: raise :class:`FileNotFoundError` when no
        local copy exists.
    opener : callable | None
        ``opener(url)`` returning a readable binary file-like context
        manager; default :func:`urllib.request.urlopen`.

    Returns
    -------
    path : pathlib.Path
        A file whose SHA-256 matches the published one.

    Raises
    ------
    ValueError
        Unknown ``name``.
    DatasetError
        A local copy or the download has the wrong checksum (a corrupt
        cached or downloaded copy is deleted), or the download failed.
    """
    ds = _get_dataset(name)
    mirror = os.environ.get("HNNFIT_DATA")
    if mirror:
        path = Path(mirror).expanduser() / ds.filename
        if path.is_file():
            actual = file_sha256(path)
            if actual != ds.sha256:
                # someone else's folder: report, do not delete
                raise _checksum_error(ds, path, actual, "local (HNNFIT_DATA)")
            return path
    home = default_data_home() if data_home is None else Path(
        check_type(data_home, (str, os.PathLike), "data_home")).expanduser()
    cached = home / ds.filename
    if cached.is_file():
        actual = file_sha256(cached)
        if actual == ds.sha256:
            return cached
        # a corrupt cache entry is ours to remove; fetch it again below
        cached.unlink()
        if not download:
            raise _checksum_error(ds, cached, actual, "cached")
    if not download:
        where = [str(cached)] + ([str(Path(mirror) / ds.filename)] if mirror else [])
        raise FileNotFoundError(
            f"dataset {name!r} not found locally (looked in {', '.join(where)}) and "
            f"download=False"
        )
    opener = urllib.request.urlopen if opener is None else opener
    return _download(ds, cached, ds.url if url is None else url, opener)
