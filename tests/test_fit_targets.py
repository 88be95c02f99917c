"""Reading, validating and windowing recorded targets."""
import numpy as np
import pytest

from hnnfit.fit.targets import MIN_SAMPLES, Target, read_target


@pytest.fixture(scope="module")
def meg_dir(shared_dir):
    return shared_dir / "data" / "MEG_detection_data"


@pytest.mark.parametrize("fname", ["S1_SupraT.txt", "no_trial_S1_ERP_all_avg.txt",
                                   "yes_trial_S1_ERP_all_avg.txt"])
def test_read_two_column_hnn_files(meg_dir, fname):
    raw = np.loadtxt(meg_dir / fname)
    target = read_target(meg_dir / fname)
    assert target.n_times == raw.shape[0]
    np.testing.assert_array_equal(target.times, raw[:, 0])
    np.testing.assert_array_equal(target.values, raw[:, 1])
    assert target.trials is None and target.n_trials == 1
    assert np.all(np.diff(target.times) > 0)
    assert target.source.endswith(fname)


def test_trial_columns_averaged_or_kept(meg_dir):
    raw = np.loadtxt(meg_dir / "S1_ongoing.txt")
    assert raw.shape[1] > 3  # a time column plus many trials
    mean = read_target(meg_dir / "S1_ongoing.txt")
    np.testing.assert_allclose(mean.values, raw[:, 1:].mean(axis=1), rtol=1e-12)
    assert mean.trials is None
    kept = read_target(meg_dir / "S1_ongoing.txt", average_columns=False)
    assert kept.trials.shape == (raw.shape[0], raw.shape[1] - 1)
    np.testing.assert_array_equal(kept.trials, raw[:, 1:])
    np.testing.assert_allclose(kept.values, mean.values)
    # selecting columns by index (time is column 0)
    two = read_target(meg_dir / "S1_ongoing.txt", columns=[1, 2])
    np.testing.assert_allclose(two.values, raw[:, 1:3].mean(axis=1))


def test_window(meg_dir):
    full = read_target(meg_dir / "S1_SupraT.txt")
    win = read_target(meg_dir / "S1_SupraT.txt", tmin=20, tmax=100)
    assert win.times[0] >= 20 and win.times[-1] <= 100
    keep = (full.times >= 20) & (full.times <= 100)
    np.testing.assert_array_equal(win.values, full.values[keep])
    np.testing.assert_array_equal(full.window(20, 100).times, win.times)
    # the exact data edges are accepted
    assert full.window(full.tmin, full.tmax).n_times == full.n_times
    assert win.hash() != full.hash()


@pytest.mark.parametrize("tmin, tmax, match", [
    (-5.0, 100.0, "tmin must be >= the first sample time"),
    (10.0, 500.0, "tmax must be <= the last sample time"),
    (80.0, 80.0, "tmin must be < tmax"),
    (90.0, 20.0, "tmin must be < tmax"),
    (50.0, 52.0, f"at least {MIN_SAMPLES} samples"),
])
def test_bad_windows(meg_dir, tmin, tmax, match):
    with pytest.raises(ValueError, match=match):
        read_target(meg_dir / "S1_SupraT.txt", tmin=tmin, tmax=tmax)


def test_csv_with_header(tmp_path):
    t = np.arange(0, 50, 0.5)
    a, b = np.sin(t / 7), np.cos(t / 5)
    path = tmp_path / "target.csv"
    lines = ["time,trial_a,trial_b"] + [f"{x},{y},{z}" for x, y, z in zip(t, a, b)]
    path.write_text("\n".join(lines) + "\n")
    tgt = read_target(path)
    np.testing.assert_allclose(tgt.values, (a + b) / 2)
    only_b = read_target(path, columns="trial_b", tmin=10, tmax=20)
    keep = (t >= 10) & (t <= 20)
    np.testing.assert_allclose(only_b.values, b[keep])
    with pytest.raises(ValueError, match="columns must name columns of the file"):
        read_target(path, columns="trial_c")


def test_array_input_and_hash_identity(meg_dir):
    raw = np.loadtxt(meg_dir / "S1_SupraT.txt")
    from_file = read_target(meg_dir / "S1_SupraT.txt")
    from_array = read_target(raw)
    assert from_array.hash() == from_file.hash()
    assert from_array == from_file
    changed = raw.copy()
    changed[10, 1] += 1e-9
    assert read_target(changed).hash() != from_file.hash()
    shifted = raw.copy()
    shifted[:, 0] += 1.0
    assert read_target(shifted).hash() != from_file.hash()
    # round trip through the study representation
    again = Target.from_dict(from_file.to_dict())
    assert again.hash() == from_file.hash()
    np.testing.assert_array_equal(again.values, from_file.values)


def test_validation_messages(tmp_path):
    t = np.arange(20.0)
    good = np.c_[t, np.sin(t)]
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        read_target(bad)
    nonmono = good.copy()
    nonmono[5, 0] = nonmono[4, 0]
    with pytest.raises(ValueError, match="strictly increasing"):
        read_target(nonmono)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} samples"):
        read_target(good[:MIN_SAMPLES - 1])
    with pytest.raises(ValueError, match="a time column and at least one data column"):
        read_target(good[:, :1])
    with pytest.raises(ValueError, match="existing file"):
        read_target(tmp_path / "missing.txt")
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("0 1\n1 2\n2 3 4\n3 4\n4 5\n5 6\n")
    with pytest.raises(ValueError, match="same number of columns"):
        read_target(ragged)
    text = tmp_path / "text.txt"
    text.write_text("0 1\n1 2\n2 oops\n3 4\n4 5\n5 6\n")
    with pytest.raises(ValueError, match="only numbers"):
        read_target(text)
    nanfile = tmp_path / "nan.txt"
    nanfile.write_text("".join(f"{i} {'nan' if i == 2 else i}\n" for i in range(8)))
    with pytest.raises(ValueError, match="finite"):
        read_target(nanfile)
    with pytest.raises(TypeError, match="average_columns must be a bool"):
        read_target(good, average_columns="yes")
    binary = tmp_path / "erp.npy"
    np.save(binary, good)
    with pytest.raises(ValueError, match=r"got a binary file .*erp\.npy"):
        read_target(binary)
