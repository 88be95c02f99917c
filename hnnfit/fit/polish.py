"""Polishing: a new study that refines another study's best point.

A polish fits the same network and target as the study it starts from,
from that study's best point, typically with a local solver (CMA-ES or a
pattern search) on more or new trials and possibly over a changed or
narrower space. :func:`polish_setup` builds and checks what the polish
needs; :func:`create_polish` creates its study file.
"""
from ..exceptions import StudyError
from ..validation import check_number, check_type
from .objective import objective_kwargs

__all__ = ["polish_setup", "create_polish"]


def polish_setup(net, space, best, settings, *, overrides=None, only=None, objective=None,
                 what="space"):
    """Network, space, start point and objective settings of a polish.

    What :func:`create_polish` builds from a study (see there for
    ``overrides``, ``only`` and ``objective``), checked but not stored:
    the command line runs it on the configured start point to reject a bad
    ``[polish]`` section before any study file is touched.

    Parameters
    ----------
    net : Network
        The polished study's network (its initial values).
    space : ParameterSpace
        The polished study's space.
    best : dict
        The point to start from (a value for every parameter of ``space``).
    settings : dict
        The polished study's objective settings (DipoleObjective keywords).
    what : str
        What ``space`` is called in error messages.

    Returns
    -------
    net, space, x0, settings
        The polish's network (``best`` applied), space, start point
        (clipped into the space) and objective settings.
    """
    polish = space.with_overrides(overrides, what)
    added = [n for n in polish.names if n not in space]
    if space.set_params is not None and (set(polish.names) != set(space.names)
                                         or only is not None):
        # the hook is written for exactly this study's names
        raise ValueError(
            f"a polish of a space with a set_params hook can only change the ranges of "
            f"its parameters ({', '.join(space.names)}), got "
            f"{'only=' + repr(only) if only is not None else 'parameters ' + ', '.join(polish.names)}")
    polish.validate(net)
    start = {n: best[n] for n in polish.names if n in best}
    if added:
        # a parameter the study did not fit starts where the network has it
        start.update(polish.subset(added).current_values(net))
    if only is not None:
        if isinstance(only, str) or not all(isinstance(o, str) for o in only):
            raise TypeError(f"only must be a sequence of parameter or drive names, "
                            f"got {only!r}")
        # an entry names a parameter, or a drive: every parameter it prefixes
        picked = {o: [n for n in polish.names if o in (n, n.split(".", 1)[0])]
                  for o in only}
        unknown = [o for o, names in picked.items() if not names]
        if unknown or not only:
            raise ValueError(f"only must name parameters or drives of the polish's "
                             f"space ({', '.join(polish.names)}), got "
                             f"{', '.join(map(repr, unknown)) or 'none'}")
        chosen = {n for names in picked.values() for n in names}
        polish = polish.subset([n for n in polish.names if n in chosen])
    updates = objective_kwargs(objective)
    if "n_trials" in updates and "seeds" not in updates:
        updates["seeds"] = None
    # parameters the polish leaves out (dropped, or not in ``only``) keep
    # their values at ``best``
    new_net = space.apply(net, best)
    x0 = polish.clip({n: start[n] for n in polish.names})
    return new_net, polish, x0, {**settings, **updates}


def create_polish(study, path, *, overrides=None, only=None, objective=None, solver="cma",
                  solver_options=None, seed=None, description=None, exist_ok=False,
                  start=None):
    """Create a study that refines ``study``'s best point (a local polish).

    The new study fits the same network and target from ``study``'s
    best point (for a staged study, the point carried through its
    stages), typically with a local solver on more or new trials. It is
    an ordinary study: run it with :meth:`hnnfit.Study.optimize`, reopen
    it with :meth:`hnnfit.Study.load`; ``study`` is only read.

    Parameters
    ----------
    study : hnnfit.Study
        The study to polish; only read.
    path : str | pathlib.Path
        The polish's study file (its folder must exist).
    overrides : dict | None
        Changes to ``study``'s space: ``{name: (low, high)}``, ``{name:
        (low, high, {'log': True})}`` or a :class:`Parameter` replaces a
        range or adds a parameter (e.g. a synapse absent from the start
        file, which starts from the network's value, 0 uS, clipped into
        its range); ``{name: None}`` drops one.
    only : sequence of str | None
        Fit only these parameters, or every parameter of these drives
        (e.g. ``['evprox2', 'evdist1.mu']``). The polish's network is
        ``study``'s best network, so whatever it does not fit keeps
        ``study``'s best value.
    objective : dict | None
        Settings of :class:`DipoleObjective` that differ from
        ``study``'s objective, e.g. ``{'seeds': [1000, 1001, 1002],
        'group_size': 3, 'resample': True}``. Giving ``seeds`` alone sets
        ``n_trials`` to their number; ``n_trials`` alone uses seeds
        ``0 .. n_trials - 1``. With ``resample``, batch ``k`` runs on the
        seeds shifted by ``k`` times their span, so start them far from
        any you keep for held-out scoring.
    solver : {'cma', 'cobyla', 'bayesian', 'pattern'}
        The polish's method; CMA-ES by default (its ``sigma0`` option is
        the initial step in the unit cube: 0.05-0.1 stays local).
        ``'pattern'`` (a stencil search, deterministic) suits a polish
        on fixed seeds, e.g. after a CMA-ES polish on resampled ones.
    solver_options : dict | None
        Options of the method (see :func:`make_solver`).
    seed : int | None
        Seed of the solver (default: ``study``'s).
    description : str | None
        Stored with the new study (default: names ``study``'s file).
    exist_ok : bool
        Reopen ``path`` if it holds this very polish (to resume it).
    start : dict | None
        The point to start from instead of ``study``'s best point:
        values of ``study``'s parameters (e.g. a CMA-ES polish's
        averaged mean); parameters it leaves out keep their best values.
        Values outside the bounds are moved onto them.

    Returns
    -------
    hnnfit.Study
        The new study, not yet run; its ``x0`` is the start point.

    Raises
    ------
    StudyError
        ``study`` has no complete evaluation (for a staged study: none
        in any stage).
    ValueError
        A bad override or ``only`` entry, or objective settings
        :class:`DipoleObjective` rejects.
    """
    if study.n_complete == 0:
        raise StudyError(f"study {str(study.path)!r} has no complete evaluation to "
                         f"polish yet")
    best = study.best_params
    if start is not None:
        check_type(start, dict, "start", "dict")
        unknown = [n for n in start if n not in study.space]
        if unknown:
            raise ValueError(f"start must give values of the parameters of "
                             f"{study.path.name} ({', '.join(study.space.names)}), got "
                             f"{', '.join(map(repr, unknown))}")
        best = study.space.clip({**best, **{n: check_number(v, f"start[{n!r}]")
                                           for n, v in start.items()}})
    net, space, x0, settings = polish_setup(
        study.net, study.space, best, objective_kwargs(study.objective),
        overrides=overrides, only=only, objective=objective,
        what=f"space of {study.path.name}")
    seed = study.solver_settings.get("seed", 0) if seed is None else seed
    if description is None:
        description = f"polish of {study.path}"
    # a polish is an ordinary study, of the class of the one it refines
    return type(study).create(path, net, study.target, space, objective=settings,
                              solver=solver, solver_options=solver_options, seed=seed,
                              x0=x0, description=description, exist_ok=exist_ok)
