"""The shared validation and message helpers (no NEURON)."""
import pytest

from hnnfit.validation import check_int, check_option, format_seeds


def test_format_seeds_writes_runs_as_ranges():
    # a resampled study's seeds: the fit's few plus one block per generation
    seeds = [1002, 0, 1, 2] + list(range(1000, 1189)) + [1]
    assert format_seeds(seeds) == "0-2, 1000-1188"
    assert format_seeds([5, 6]) == "5-6"
    assert format_seeds([7]) == "7"
    assert format_seeds([3, 9, 4]) == "3-4, 9"
    assert format_seeds([]) == "none"


def test_messages_name_the_value_and_the_expectation():
    with pytest.raises(ValueError, match=r"n_jobs must be >= 1, got 0"):
        check_int(0, "n_jobs", low=1)
    with pytest.raises(TypeError, match=r"n_jobs must be an integer, got float 1.5"):
        check_int(1.5, "n_jobs")
    with pytest.raises(ValueError, match=r"solver must be one of .*'cma'.*got 'cmaes'"):
        check_option("cmaes", ("bayesian", "cobyla", "cma"), "solver")
