"""hnnfit.datasets: local mirror, cache, verified downloads (no network needed)."""
import hashlib
import io
import shutil

import numpy as np
import pytest

from hnnfit import datasets
from hnnfit.datasets import (BASE_URL, DATASETS, DatasetError, default_data_home,
                             fetch_dataset)
from hnnfit.exceptions import HnnfitError
from hnnfit.fit.targets import read_target

NAMES = ["yes_trial_S1_ERP_all_avg", "no_trial_S1_ERP_all_avg", "S1_SupraT", "S1_ongoing"]


@pytest.fixture
def mirror(shared_dir):
    return shared_dir / "data" / "MEG_detection_data"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No mirror, an empty private cache; only file:// URLs may be opened."""
    monkeypatch.delenv("HNNFIT_DATA", raising=False)
    monkeypatch.setenv("HNNFIT_CACHE", str(tmp_path / "cache_root"))
    real_urlopen = datasets.urllib.request.urlopen

    def local_only(url, *a, **k):
        if not str(url).startswith("file:"):
            raise AssertionError(f"unexpected download of {url}")
        return real_urlopen(url, *a, **k)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", local_only)
    return tmp_path


def _corrupt_copy(src, dst):
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01          # one flipped bit
    dst.write_bytes(bytes(data))
    return dst


def test_known_names():
    assert sorted(DATASETS) == sorted(NAMES)
    for name, ds in DATASETS.items():
        assert ds.filename == f"{name}.txt"
        assert ds.url == BASE_URL + ds.filename
        assert ds.url.startswith(
            "https://raw.githubusercontent.com/jonescompneurolab/hnn/master/data/"
            "MEG_detection_data/")
        assert len(ds.sha256) == 64


@pytest.mark.parametrize("name", NAMES)
def test_mirror_lookup_and_checksums(name, mirror, offline, monkeypatch):
    monkeypatch.setenv("HNNFIT_DATA", str(mirror))
    cache = offline / "cache"
    path = fetch_dataset(name, data_home=cache)
    assert path == mirror / f"{name}.txt"
    # the published checksums are those of the shared copies
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DATASETS[name].sha256
    assert not cache.exists()            # nothing copied or downloaded


def test_mirror_file_reads_as_target(mirror, offline, monkeypatch):
    monkeypatch.setenv("HNNFIT_DATA", str(mirror))
    target = read_target(fetch_dataset("yes_trial_S1_ERP_all_avg"))
    assert target.n_times > 100
    assert target.tmin == 0.0 and 165 < target.tmax < 175
    # S1_ongoing: one column per trial
    ongoing = read_target(fetch_dataset("S1_ongoing"), average_columns=False)
    assert ongoing.n_trials > 10


def test_corrupt_mirror_file_is_reported_and_kept(mirror, offline, monkeypatch):
    local = offline / "mirror"
    local.mkdir()
    bad = _corrupt_copy(mirror / "S1_SupraT.txt", local / "S1_SupraT.txt")
    before = bad.read_bytes()
    monkeypatch.setenv("HNNFIT_DATA", str(local))
    with pytest.raises(DatasetError) as info:
        fetch_dataset("S1_SupraT", data_home=offline / "cache")
    msg = str(info.value)
    actual = hashlib.sha256(before).hexdigest()
    assert "S1_SupraT.txt" in msg and actual in msg and DATASETS["S1_SupraT"].sha256 in msg
    assert isinstance(info.value, HnnfitError)
    # a user's folder is not ours to clean
    assert bad.read_bytes() == before


def test_download_file_url_into_cache(mirror, offline):
    cache = offline / "cache"
    src = mirror / "no_trial_S1_ERP_all_avg.txt"
    path = fetch_dataset("no_trial_S1_ERP_all_avg", data_home=cache, url=src.as_uri())
    assert path == cache / "no_trial_S1_ERP_all_avg.txt"
    assert path.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["no_trial_S1_ERP_all_avg.txt"]
    # cached: a second call does not download again (that URL does not exist)
    again = fetch_dataset("no_trial_S1_ERP_all_avg", data_home=cache,
                          url=(offline / "missing.txt").as_uri())
    assert again == path


def test_default_cache_and_public_url(mirror, offline, monkeypatch):
    assert default_data_home() == offline / "cache_root" / "data"
    monkeypatch.delenv("HNNFIT_CACHE")
    monkeypatch.setenv("HOME", str(offline / "home"))
    assert default_data_home() == offline / "home" / ".cache" / "hnnfit" / "data"
    monkeypatch.setenv("HNNFIT_CACHE", str(offline / "cache_root"))

    asked = []

    def opener(url):
        asked.append(url)
        return io.BytesIO((mirror / "yes_trial_S1_ERP_all_avg.txt").read_bytes())

    path = fetch_dataset("yes_trial_S1_ERP_all_avg", opener=opener)
    assert asked == [BASE_URL + "yes_trial_S1_ERP_all_avg.txt"]
    assert path == offline / "cache_root" / "data" / "yes_trial_S1_ERP_all_avg.txt"
    target = read_target(path)
    assert np.isfinite(target.values).all()


def test_mirror_missing_file_falls_back_to_cache(mirror, offline, monkeypatch):
    empty = offline / "empty_mirror"
    empty.mkdir()
    monkeypatch.setenv("HNNFIT_DATA", str(empty))
    src = mirror / "S1_SupraT.txt"
    path = fetch_dataset("S1_SupraT", data_home=offline / "cache", url=src.as_uri())
    assert path.parent == offline / "cache"
    assert not any(empty.iterdir())


def test_corrupt_download_keeps_nothing(mirror, offline):
    cache = offline / "cache"
    bad = _corrupt_copy(mirror / "S1_SupraT.txt", offline / "bad.txt")
    with pytest.raises(DatasetError) as info:
        fetch_dataset("S1_SupraT", data_home=cache, url=bad.as_uri())
    msg = str(info.value)
    assert hashlib.sha256(bad.read_bytes()).hexdigest() in msg
    assert DATASETS["S1_SupraT"].sha256 in msg and "S1_SupraT" in msg
    assert list(cache.iterdir()) == []        # no corrupt file, no partial download


def test_failed_download(offline):
    cache = offline / "cache"
    with pytest.raises(DatasetError, match="could not download dataset 'S1_ongoing'"):
        fetch_dataset("S1_ongoing", data_home=cache, url=(offline / "nope.txt").as_uri())
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_cache_entry_is_replaced(mirror, offline):
    cache = offline / "cache"
    cache.mkdir()
    _corrupt_copy(mirror / "S1_SupraT.txt", cache / "S1_SupraT.txt")
    # without downloading: the corrupt entry is reported and removed
    with pytest.raises(DatasetError, match="expected " + DATASETS["S1_SupraT"].sha256):
        fetch_dataset("S1_SupraT", data_home=cache, download=False)
    assert not (cache / "S1_SupraT.txt").exists()
    _corrupt_copy(mirror / "S1_SupraT.txt", cache / "S1_SupraT.txt")
    path = fetch_dataset("S1_SupraT", data_home=cache, url=(mirror / "S1_SupraT.txt").as_uri())
    assert path.read_bytes() == (mirror / "S1_SupraT.txt").read_bytes()


def test_no_local_copy_without_download(offline):
    with pytest.raises(FileNotFoundError, match="S1_ongoing"):
        fetch_dataset("S1_ongoing", data_home=offline / "cache", download=False)


def test_unknown_name(offline):
    with pytest.raises(ValueError) as info:
        fetch_dataset("yes_trial", data_home=offline / "cache")
    msg = str(info.value)
    assert "'yes_trial'" in msg
    for name in NAMES:
        assert repr(name) in msg
    with pytest.raises(TypeError, match="name must be"):
        fetch_dataset(3)


def test_mirror_copy_is_what_download_gives(mirror, offline):
    # the same bytes whichever way the file arrives
    cache = offline / "cache"
    shutil.copy(mirror / "S1_ongoing.txt", offline / "served.txt")
    path = fetch_dataset("S1_ongoing", data_home=cache, url=(offline / "served.txt").as_uri())
    assert datasets.file_sha256(path) == datasets.file_sha256(mirror / "S1_ongoing.txt")


def test_study_takes_a_dataset_name_as_its_target(mirror, offline, monkeypatch, tmp_path):
    from hnnfit import Study, jones_2009_model

    monkeypatch.setenv("HNNFIT_DATA", str(mirror))
    net = jones_2009_model(mesh_shape=(3, 3), add_drives_from_params=True)
    with Study.create(tmp_path / "s.sqlite", net, "yes_trial_S1_ERP_all_avg") as study:
        want = read_target(fetch_dataset("yes_trial_S1_ERP_all_avg"))
        assert study.target == want
    # a name that is neither a file nor a dataset: the error lists the datasets
    with pytest.raises(ValueError, match=r"a data file or one of the datasets \(S1_SupraT, "
                                         r".*\), got 'no_such_recording'"):
        Study.create(tmp_path / "t.sqlite", net, "no_such_recording")
