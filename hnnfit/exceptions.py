"""Exceptions raised by hnnfit.

Bad user input raises the built-in ``ValueError``/``TypeError`` (see
:mod:`hnnfit.validation`); the classes here are for failures that are not
a matter of one bad argument.
"""


class HnnfitError(Exception):
    """Base class of hnnfit's own exceptions."""


class CompilationError(HnnfitError):
    """The NMODL mechanisms could not be compiled; carries the compiler output."""


class SimulationError(HnnfitError):
    """NEURON failed while building or running a model."""


class StudyError(HnnfitError):
    """A study file cannot be used as asked (wrong target, schema, ...)."""


class StudyIOError(StudyError):
    """A study file could not be read or written (disk full, I/O error, read-only media).

    Not a matter of bad input: what the study recorded is kept, and it can
    be resumed once the storage works again.
    """
