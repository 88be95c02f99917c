"""hnnfit: fit the HNN neocortical column model to MEG/EEG evoked responses.

Importing hnnfit is cheap and has no side effects: NEURON is imported only
when a simulation is built, in the module that owns it.
"""
from importlib import import_module

from ._resources import params_dir as _params_dir

__version__ = "0.1.0.dev0"

PARAMS_DIR = _params_dir()

# public name -> module that defines it; resolved on first access
_LAZY = {
    "read_params": "params",
    "Params": "params",
    "default_params": "params",
    "write_params": "params",
    "Network": "network",
    "jones_2009_model": "network",
    "neymotin_2020_model": "network",
    "pick_connection": "network",
    "Dipole": "dipole",
    "read_dipole": "dipole",
    "average_dipoles": "dipole",
    "simulate_dipole": "simulation",
    "CellResponse": "cell_response",
    "read_spikes": "cell_response",
    "JoblibBackend": "parallel",
    "Study": "fit.study",
    "list_studies": "fit.storage",
    "read_target": "fit.targets",
    "DipoleObjective": "fit.objective",
    "sys_info": "sysinfo",
}

# the public names, kept lazy: listing them imports nothing
__all__ = sorted(["PARAMS_DIR", *_LAZY])


def __getattr__(name):
    if name in _LAZY:
        module = import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hnnfit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
