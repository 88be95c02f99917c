"""Everything that touches NEURON: compiling and loading the mechanisms,
instantiating cells and networks, running them.

No other part of hnnfit imports ``neuron``, and none imports this package's
private modules: the names below are its whole surface. Importing the
package is cheap; NEURON itself is imported when a model is first built or
the mechanisms are loaded (:class:`NeuronCell` is resolved on first access,
as its module needs NEURON).

Mechanisms (``_compile``)
    :func:`ensure_mechanisms`, :func:`load_mechanisms`,
    :func:`coreneuron_loaded`, :func:`coreneuron_flags`, :func:`build_key`,
    :func:`cache_root`, :func:`mechanism_library`, :func:`find_nrnivmodl`,
    :data:`DEFAULT_CORENEURON_FLAGS`.
Networks and trials (``_builder``)
    :class:`NetworkModel`, :func:`run_trial`, :func:`structure_key`,
    :func:`warm_model_key`, :func:`release_warm_model`.
Cells (``_cell``)
    :class:`NeuronCell`.
"""
import os

# hnnfit never opens NEURON's GUI; without this NEURON prints a warning
# about a missing display at its first import on a headless machine.
os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")

from ._builder import (  # noqa: E402  (after the NEURON option above)
    NetworkModel,
    release_warm_model,
    run_trial,
    structure_key,
    warm_model_key,
)
from ._compile import (  # noqa: E402
    DEFAULT_CORENEURON_FLAGS,
    build_key,
    cache_root,
    coreneuron_flags,
    coreneuron_loaded,
    ensure_mechanisms,
    find_nrnivmodl,
    load_mechanisms,
    mechanism_library,
)

__all__ = [
    "DEFAULT_CORENEURON_FLAGS",
    "NetworkModel",
    "NeuronCell",
    "build_key",
    "cache_root",
    "coreneuron_flags",
    "coreneuron_loaded",
    "ensure_mechanisms",
    "find_nrnivmodl",
    "load_mechanisms",
    "mechanism_library",
    "release_warm_model",
    "run_trial",
    "structure_key",
    "warm_model_key",
]


def __getattr__(name):
    # NeuronCell's module imports NEURON at its top; defer that to first use
    if name == "NeuronCell":
        from ._cell import NeuronCell

        globals()["NeuronCell"] = NeuronCell
        return NeuronCell
    raise AttributeError(f"module 'hnnfit.simulator' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
