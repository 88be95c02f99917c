"""Former home of the study storage, now :mod:`hnnfit.fit.storage`.

``Study`` here is :class:`~hnnfit.fit.storage.StudyStorage` under its old
name, kept while callers move to the new module.
"""
from .storage import SCHEMA_VERSION, EvalState, Evaluation, StudyStorage

Study = StudyStorage

__all__ = ["SCHEMA_VERSION", "EvalState", "Evaluation", "Study", "StudyStorage"]
