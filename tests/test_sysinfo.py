"""hnnfit.sys_info: the machine and software facts a study records."""
import json
import subprocess
import sys
from importlib import metadata

import pytest

import hnnfit
from hnnfit import cli
from hnnfit.sysinfo import ENV_VARS, PACKAGES, format_sys_info, machine_summary, sys_info


def test_sys_info_reports_installed_versions_and_build_flags(monkeypatch):
    monkeypatch.setenv("HNNFIT_CORENEURON_FLAGS", " -O2 -mtune=generic ")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    info = hnnfit.sys_info()
    assert info["hnnfit"] == hnnfit.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(info["packages"]) == set(PACKAGES)
    for dist in ("neuron", "numpy", "scipy", "scikit-optimize", "scikit-learn"):
        assert info["packages"][dist] == metadata.version(dist)
    # the CoreNEURON build's flags as the compiler would get them
    assert info["coreneuron_flags"] == "-O2 -mtune=generic"
    assert info["env"]["HNNFIT_CORENEURON_FLAGS"] == " -O2 -mtune=generic "
    assert "OMP_NUM_THREADS" not in info["env"]
    assert set(info["env"]) <= set(ENV_VARS)
    assert info["cpu"] and info["cpus"].endswith("logical")
    # a study stores it as JSON
    assert json.loads(json.dumps(info)) == info


def test_sys_info_leaves_neuron_unimported():
    code = ("import sys, hnnfit; hnnfit.sys_info(); "
            "print('neuron' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_format_and_summary():
    info = {"hnnfit": "1.0", "python": "3.11.7", "cpu": "Some CPU", "cpu_features": "avx2",
            "cpus": "2 usable / 4 logical", "blas": None,
            "packages": {"neuron": "9.0.2", "numpy": "2.1.0", "scipy": "1.14.0",
                         "scikit-learn": "1.5.0", "cma": None},
            "env": {"OPENBLAS_CORETYPE": "Haswell"}}
    lines = format_sys_info(info).splitlines()
    assert lines[0] == "hnnfit:             1.0"
    assert "blas:               -" in lines
    assert "cma:                not installed" in lines
    assert lines[-1] == "$OPENBLAS_CORETYPE: Haswell"
    assert machine_summary(info) == (
        "Some CPU (avx2), 2 usable / 4 logical; hnnfit 1.0, NEURON 9.0.2, numpy 2.1.0, "
        "scipy 1.14.0, scikit-learn 1.5.0, Python 3.11.7")


def test_info_command(capsys):
    status = cli.main(["info"])
    out, err = capsys.readouterr()
    assert status == 0, err
    # one aligned "key: value" line each (the width depends on the keys shown)
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["hnnfit"].strip() == hnnfit.__version__
    assert lines["neuron"].strip() == metadata.version("neuron")
    assert "coreneuron_flags" in lines


@pytest.mark.parametrize("argv", [["info", "extra"], ["info", "--bogus"]])
def test_info_takes_no_arguments(argv, capsys):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 2 and "Traceback" not in err
