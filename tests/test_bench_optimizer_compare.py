"""bench/optimizer_compare.py on a tiny setting (hnnfit's Optimizer only)."""
import json

import numpy as np
import pytest

from hnnfit import jones_2009_model, simulate_dipole

TSTOP = 25.0


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("optimizer_compare")


def _dipole(bench, mu, sigma):
    """The task's smoothed, scaled dipole at one drive timing, through the public API."""
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=mu, sigma=sigma, numspikes=1, location="proximal",
                         weights_ampa=bench.AMPA, synaptic_delays=0.1, event_seed=4)
    (dpl,) = simulate_dipole(net, tstop=TSTOP, dt=0.025, n_trials=1, verbose=False)
    return dpl.smooth(5.0).scale(3000.0).data["agg"]


def test_runs_hnnfit_on_the_task_and_reports_its_numbers(bench, capsys):
    bench.main(["--max-iter", "3", "--tstop", str(TSTOP)])
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["optimizer"] for r in records] == ["hnnfit"]    # no baseline given
    (run,) = records
    assert run["n_evals"] == 3 and run["wall_s"] > 0
    # the start's RMSE is the distance between the start and the truth's
    # dipoles, computed here independently of the bench and the Optimizer
    target = _dipole(bench, 15.0, 2.0)
    start = _dipole(bench, 12.0, 4.0)
    expected = float(np.sqrt(np.mean((start - target) ** 2)))
    assert expected > 3.0
    assert run["start_value"] == pytest.approx(expected, rel=1e-9)
    assert run["start_rescored"] == pytest.approx(expected, rel=1e-9)
    # the final point is the best evaluated, in bounds, and scores as reported
    assert run["final_value"] <= run["start_value"]
    assert run["final_rescored"] == pytest.approx(run["final_value"], rel=1e-9)
    final = _dipole(bench, run["final"]["mu"], run["final"]["sigma"])
    assert run["final_value"] == pytest.approx(np.sqrt(np.mean((final - target) ** 2)),
                                               rel=1e-9)
    for name, (low, high) in bench.CONSTRAINTS.items():
        assert low <= run["final"][name] <= high
    # the table prints the same numbers; no ratio without a baseline
    row = next(line for line in out.splitlines() if line.startswith("| hnnfit |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:7] == ["3", f"{run['start_value']:.3f}", f"{run['final_value']:.3f}",
                          f"{expected:.3f}", f"{run['final_rescored']:.3f}",
                          f"{run['final']['mu']:.3f}"]
    assert "speed ratio" not in out and bench.REFERENCE not in out.split("\n| ---")[1]


@pytest.mark.parametrize("argv, message", [
    (["--max-iter", "1"], "--max-iter must be at least 2, got 1"),
    (["--mesh", "0"], "--mesh must be at least 1, got 0"),
    (["--tstop", "10"], "--tstop must be later than the drive's 15.0 ms, got 10.0"),
    (["--n-initial-points", "0"], "--n-initial-points must be at least 1, got 0"),
])
def test_bad_options_exit_with_a_message(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
