"""Reading, writing and querying parameter sets; drives a file defines."""
import json
import pickle

import numpy as np
import pytest

import hnnfit
from hnnfit.params import (Params, default_params, extract_drive_specs,
                           get_param, read_params, write_params)

# files in params/ and the published file each was generated from
OURS = {
    "default.json": "default.json",
    "ERPYes100Trials.json": "ERPYes100Trials.param",
    "ERPNo100Trials.json": "ERPNo100Trials.param",
    "ERPYesSupraT.json": "ERPYesSupraT.param",
    "N20.json": "N20.json",
    "gamma_L5weak_L2weak.json": "gamma_L5weak_L2weak.json",
}


def _same_typed(a, b):
    """Equal dicts whose values also have identical types (1 != 1.0 here)."""
    if a.keys() != b.keys():
        return False
    return all(a[k] == b[k] and type(a[k]) is type(b[k]) for k in a)


@pytest.fixture(scope="module")
def params_files(shared_dir):
    files = sorted((shared_dir / "params").iterdir())
    assert files, "no published parameter files found"
    return files


def test_every_published_file_reads(params_files):
    for path in params_files:
        params = read_params(path)
        assert isinstance(params, Params)
        if path.suffix == ".json":
            assert dict(params) == json.loads(path.read_text())
        else:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            assert len(params) == len(lines), path.name
            for line in lines:
                key, value = (s.strip() for s in line.split(":"))
                assert key in params
                # numbers keep their written form's type; the rest stay text
                if isinstance(params[key], str):
                    assert params[key] == value


def test_legacy_values_are_typed_like_json(shared_dir):
    p = read_params(shared_dir / "params" / "default.param")
    assert p["tstop"] == 170 and type(p["tstop"]) is int
    assert p["celsius"] == 37.0 and type(p["celsius"]) is float
    assert p["L5Pyr_soma_gbar_ar"] == 1e-06 and type(p["L5Pyr_soma_gbar_ar"]) is float
    assert p["sim_prefix"] == "default"
    assert p["expmt_groups"] == "{default}"
    erp = read_params(shared_dir / "params" / "ERPYes100Trials.param")
    # written '20.' in the file
    assert erp["f_stdev_prox"] == 20.0 and type(erp["f_stdev_prox"]) is float
    assert type(erp["N_trials"]) is int and erp["N_trials"] == 100


@pytest.mark.parametrize("stem", ["default", "gamma_L5weak_L2weak"])
def test_param_and_json_twin_agree(shared_dir, stem):
    legacy = read_params(shared_dir / "params" / f"{stem}.param")
    js = read_params(shared_dir / "params" / f"{stem}.json")
    shared = set(legacy) & set(js)
    assert len(shared) > 200
    same = [k for k in shared if legacy[k] == js[k]]
    # the published twins are different versions of the set (seeds, tstop),
    # but the bulk of their entries coincide
    assert len(same) >= 0.95 * len(shared)
    for key in same:
        if isinstance(js[key], bool):
            # the legacy format has no booleans, only 0/1
            assert type(legacy[key]) is int
        else:
            assert type(legacy[key]) is type(js[key]), key


def test_param_equals_its_json_rewrite(shared_dir, tmp_path):
    for path in sorted((shared_dir / "params").glob("*.param")):
        original = read_params(path)
        out = write_params(original, tmp_path / f"{path.stem}.json")
        assert _same_typed(read_params(out), original), path.name


def test_write_params_sorted_json(tmp_path):
    p = Params({"b": 2, "a": 1.5, "c": "x"})
    out = write_params(p, tmp_path / "p.json")
    text = out.read_text()
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')
    back = read_params(out)
    assert _same_typed(back, p)


def test_write_params_converts_numpy(tmp_path):
    p = {"i": np.int64(3), "f": np.float32(0.5), "arr": np.arange(3)}
    back = read_params(write_params(p, tmp_path / "n.json"))
    assert back["i"] == 3 and type(back["i"]) is int
    assert back["f"] == 0.5 and type(back["f"]) is float
    assert back["arr"] == [0, 1, 2]


def test_write_params_refuses_other_extension(tmp_path):
    with pytest.raises(ValueError, match="must end in .json"):
        write_params({"a": 1}, tmp_path / "p.param")
    with pytest.raises(TypeError, match="params must be"):
        write_params([("a", 1)], tmp_path / "p.json")


def test_our_sets_equal_published(shared_dir):
    for ours, published in OURS.items():
        mine = read_params(hnnfit.PARAMS_DIR / ours)
        theirs = read_params(shared_dir / "params" / published)
        assert _same_typed(mine, theirs), ours


def test_bare_name_resolves_in_params_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing named default.json here
    by_name = read_params("default.json")
    assert _same_typed(by_name, read_params(hnnfit.PARAMS_DIR / "default.json"))
    assert _same_typed(read_params("default"), by_name)
    assert _same_typed(default_params(), by_name)


def test_default_params_is_a_fresh_copy():
    p = default_params()
    p["tstop"] = 1.0
    assert default_params()["tstop"] == 170


def test_unknown_extension(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("tstop: 170\n")
    with pytest.raises(ValueError, match=r"\.json or \.param.*p\.txt"):
        read_params(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nothere.json"
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        read_params(path)
    with pytest.raises(FileNotFoundError, match="no_such_set.param"):
        read_params("no_such_set.param")
    with pytest.raises(FileNotFoundError, match="no_such_set") as err:
        read_params("no_such_set")
    assert "ships" not in str(err.value)
    # HNN users know the sets by their .param names: point to the bundled twin
    with pytest.raises(FileNotFoundError, match=r"ERPYes100Trials\.param' found neither .*"
                       r"hnnfit ships 'ERPYes100Trials\.json' with the same values"):
        read_params("ERPYes100Trials.param")


def test_malformed_line_names_line_number(tmp_path):
    path = tmp_path / "bad.param"
    path.write_text("tstop: 170\ndt: 0.025\nthis line has no colon\ncelsius: 37.0\n")
    with pytest.raises(ValueError, match=r"line 3 .*this line has no colon"):
        read_params(path)
    path.write_text("tstop: 170\na: b: c\n")
    with pytest.raises(ValueError, match=r"line 2 .*a: b: c"):
        read_params(path)
    path.write_text("tstop:\n")
    with pytest.raises(ValueError, match="line 1"):
        read_params(path)


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "ok.param"
    path.write_text("tstop: 170\n\n   \ncelsius: 37.0\n")
    assert dict(read_params(path)) == {"tstop": 170, "celsius": 37.0}


def test_empty_or_non_object_json(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="no parameters"):
        read_params(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_params(path)
    path.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_params(path)


def test_read_params_argument_type():
    with pytest.raises(TypeError, match="fname must be"):
        read_params(3)


def test_wildcard_subsets():
    p = default_params()
    soma = p["L2Pyr_soma*"]
    assert isinstance(soma, Params)
    expected = {k for k in p if k.startswith("L2Pyr_soma")}
    assert set(soma) == expected and len(expected) >= 5
    assert all(soma[k] == p[k] for k in soma)
    # '?' and '[...]'
    assert set(p["t_evprox_?"]) == {"t_evprox_1", "t_evprox_2"}
    assert set(p["gbar_ev[pd]*_1_L5Pyr_ampa"]) == {
        "gbar_evprox_1_L5Pyr_ampa", "gbar_evdist_1_L5Pyr_ampa"}
    # an exact key is returned as its value
    assert p["tstop"] == 170
    with pytest.raises(KeyError, match="no parameter matches"):
        p["nothing_like_this*"]
    with pytest.raises(KeyError):
        p["missing_key"]


def test_wildcard_subset_is_independent():
    p = Params({"a_1": [1], "a_2": [2], "b": 3})
    sub = p["a_*"]
    sub["a_1"].append(5)
    assert p["a_1"] == [1]


def test_wildcard_assignment():
    p = default_params()
    p["gbar_evprox_1_*"] = 0.0
    assert all(v == 0.0 for v in p["gbar_evprox_1_*"].values())
    assert p["gbar_evprox_2_L5Pyr_ampa"] == 0.684013
    with pytest.raises(KeyError, match="no parameter matches"):
        p["nothing_*"] = 1


def test_printout_is_sorted_listing():
    p = Params({"zeta": 1, "alpha": 2.5, "mid": "x"})
    text = repr(p)
    assert str(p) == text
    lines = text.splitlines()
    assert "3 entries" in lines[0]
    names = [ln.split(":")[0].strip() for ln in lines[1:]]
    assert names == ["alpha", "mid", "zeta"]
    assert "2.5" in lines[1] and "'x'" in lines[2]
    assert repr(Params()) == "Params({})"


def test_params_pickles_and_copies():
    p = default_params()
    back = pickle.loads(pickle.dumps(p))
    assert isinstance(back, Params) and _same_typed(back, p)
    c = p.copy()
    assert isinstance(c, Params) and c == p and c is not p


def test_params_rejects_non_dict():
    with pytest.raises(TypeError, match="params_input must be"):
        Params([("a", 1)])


def test_get_param_fallbacks():
    p = Params({"tstop": 100})
    assert get_param(p, "tstop") == 100
    assert get_param(p, "N_trials") == 1
    assert get_param(p, "celsius") == 37.0
    assert get_param(p, "dipole_scalefctr") == 30e3
    assert get_param(p, "dipole_smooth_win") == 15.0
    assert get_param(p, "numspikes_evprox_3") == 1
    assert get_param(p, "gbar_evdist_2_L2Pyr_ampa") == 0.0
    with pytest.raises(KeyError, match="no default"):
        get_param(p, "L2Pyr_soma_L")


def test_extract_drive_specs_default():
    p = default_params()
    specs = extract_drive_specs(p)
    assert list(specs) == ["evdist1", "evprox1", "evprox2"]
    d1, p1, p2 = specs["evdist1"], specs["evprox1"], specs["evprox2"]
    for spec in specs.values():
        assert spec["type"] == "evoked"
        assert spec["numspikes"] == 1
        assert spec["event_seed"] == p["prng_seedcore_evprox_1"] == 2
        assert spec["space_constant"] == 3.0
        # sync_evinput is false in default.json
        assert spec["cell_specific"] is True and spec["n_drive_cells"] == "n_cells"
    assert (d1["mu"], d1["sigma"], d1["location"]) == (63.53, 3.85, "distal")
    assert (p1["mu"], p1["sigma"], p1["location"]) == (26.61, 2.47, "proximal")
    assert (p2["mu"], p2["sigma"]) == (137.12, 8.33)
    # distal drives never reach L5 basket cells
    assert list(d1["weights_ampa"]) == ["L2_basket", "L2_pyramidal", "L5_pyramidal"]
    assert d1["weights_ampa"]["L5_pyramidal"] == p["gbar_evdist_1_L5Pyr_ampa"]
    assert d1["weights_nmda"]["L2_basket"] == p["gbar_evdist_1_L2Basket_nmda"]
    assert d1["synaptic_delays"] == {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                     "L5_pyramidal": 0.1}
    assert list(p1["weights_ampa"]) == ["L2_basket", "L2_pyramidal",
                                        "L5_basket", "L5_pyramidal"]
    assert p1["weights_ampa"]["L5_basket"] == p["gbar_evprox_1_L5Basket_ampa"]
    assert p2["weights_ampa"]["L2_pyramidal"] == p["gbar_evprox_2_L2Pyr_ampa"]
    assert p1["synaptic_delays"] == {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                     "L5_basket": 1.0, "L5_pyramidal": 1.0}


def test_sync_evinput_makes_one_shared_drive_cell():
    p = default_params()
    p["sync_evinput"] = 1
    for spec in extract_drive_specs(p).values():
        assert spec["n_drive_cells"] == 1 and spec["cell_specific"] is False


def test_extract_drive_specs_rhythmic_and_poisson(shared_dir):
    alpha = read_params(shared_dir / "params" / "Alpha.param")
    specs = extract_drive_specs(alpha)
    assert list(specs) == sorted(specs)
    b1, b2 = specs["bursty1"], specs["bursty2"]
    assert b1["type"] == "bursty" and b1["location"] == "proximal"
    assert b2["location"] == "distal" and "L5_basket" not in b2["weights_ampa"]
    assert b1["n_drive_cells"] == alpha["repeats_prox"]
    assert b1["cell_specific"] is False and b1["spike_isi"] == 10
    assert b1["tstart"] == alpha["t0_input_prox"]
    assert b1["burst_rate"] == alpha["f_input_prox"]
    assert b1["burst_std"] == alpha["f_stdev_prox"]
    assert b1["numspikes"] == alpha["events_per_cycle_prox"]
    assert b1["event_seed"] == alpha["prng_seedcore_input_prox"]
    # the train is clipped to the simulation
    assert b1["tstop"] == min(alpha["tstop_input_prox"], alpha["tstop"])
    assert b1["synaptic_delays"]["L5_pyramidal"] == alpha["input_prox_A_delay_L5"]

    gamma = read_params(shared_dir / "params" / "gamma_L5weak_L2weak.json")
    pois = extract_drive_specs(gamma)["extpois"]
    assert pois["type"] == "poisson"
    assert pois["rate_constant"]["L2_pyramidal"] == gamma["L2Pyr_Pois_lamtha"] == 140.0
    # zero rates of placeholder entries become 1 Hz
    assert gamma["L2Basket_Pois_lamtha"] == 0.0
    assert pois["rate_constant"]["L2_basket"] == 1
    assert pois["weights_ampa"]["L5_pyramidal"] == gamma["L5Pyr_Pois_A_weight_ampa"]
    assert (pois["tstart"], pois["tstop"]) == (gamma["t0_pois"], gamma["T_pois"])
    assert pois["event_seed"] == gamma["prng_seedcore_extpois"]


def test_drives_that_cannot_fire_are_skipped():
    p = default_params()
    # default.json parks the rhythmic inputs beyond tstop and has T_pois < 0
    assert "bursty1" not in extract_drive_specs(p)
    p["t0_input_prox"] = 20.0
    p["T_pois"] = 100.0
    specs = extract_drive_specs(p)
    assert "bursty1" in specs and "bursty2" not in specs
    assert "extpois" in specs and "extgauss" not in specs
    p["L2Basket_Gauss_mu"] = 50.0
    gauss = extract_drive_specs(p)["extgauss"]
    assert gauss["type"] == "evoked" and gauss["numspikes"] == 50
    assert gauss["weights_nmda"] == {}


def test_legacy_mode_keeps_everything_and_shifts_seeds():
    p = default_params()
    specs = extract_drive_specs(p, legacy_mode=True)
    assert list(specs) == ["bursty1", "bursty2", "evdist1", "evprox1",
                           "evprox2", "extgauss", "extpois"]
    assert specs["evprox1"]["event_seed"] == p["prng_seedcore_evprox_1"] - 18
    assert specs["bursty1"]["event_seed"] == p["prng_seedcore_input_prox"]


def test_extract_drive_specs_validation():
    with pytest.raises(TypeError, match="params must be"):
        extract_drive_specs(None)
    with pytest.raises(TypeError, match="legacy_mode must be a bool"):
        extract_drive_specs(default_params(), legacy_mode="yes")
    p = default_params()
    p["t_evprox_4"] = 10.0  # no t_evprox_3
    with pytest.raises(ValueError, match="numbered 1..3"):
        extract_drive_specs(p)
