"""Fitting the model to recorded waveforms (pure Python; NEURON only in workers).

The user-facing entry point is :class:`Study` (also ``hnnfit.Study``).
"""
from ..param_export import network_to_params
from .storage import list_studies
from .study import Study
from .objective import DipoleObjective, error_budget, fit_scale
from .optimize import RunSummary, run_optimization
from .solvers import make_solver, solver_from_settings
from .space import Parameter, ParameterSpace
from .targets import Target, read_target

__all__ = ["Study", "list_studies", "network_to_params", "DipoleObjective", "error_budget", "fit_scale",
           "RunSummary", "run_optimization", "make_solver", "solver_from_settings",
           "Parameter", "ParameterSpace", "Target", "read_target"]
