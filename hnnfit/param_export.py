"""Writing a network as a parameter file: the inverse of :mod:`hnnfit.params`.

:func:`network_to_params` expresses a network's evoked drives (and its
Poisson drive, if any) as the flat keys of HNN's parameter files
(``t_evprox_1``, ``gbar_evprox_1_L2Pyr_ampa``, ``prng_seedcore_evprox_1``,
``t0_pois``, ...), so that ``Network(params, add_drives_from_params=True)``
rebuilds the same drives. What a file cannot say (targets, delays, space
constants) is fixed by the conventions :mod:`hnnfit.params` holds; a drive
that departs from them is refused by name.
"""
import re

from .exceptions import HnnfitError
from .network import Network
from .params import (CELL_TYPES, EVOKED_DELAYS, EVOKED_SPACE_CONSTANT, EVOKED_TARGETS,
                     POISSON_DELAYS, POISSON_SPACE_CONSTANT, SHORT_NAMES, Params)

__all__ = ["network_to_params"]

# the keys of a file's evoked drives; the network's own copies are replaced
_DRIVE_KEY = re.compile(
    r"^(t_ev(prox|dist)_\d+|sigma_t_ev(prox|dist)_\d+|numspikes_ev(prox|dist)_\d+"
    r"|gbar_ev(prox|dist)_\d+_\w+|prng_seedcore_ev(prox|dist)_\d+)$")


def _cannot(name, why):
    raise HnnfitError(f"drive {name!r} cannot be written to a parameter file: {why}")


def _per_type(value, targets):
    if isinstance(value, dict):
        return {ct: value.get(ct) for ct in targets}
    return {ct: value for ct in targets}


def network_to_params(net):
    """The network's parameters with its evoked drives as flat HNN keys.

    Parameters
    ----------
    net : Network
        A network whose drives are evoked drives of the kind a parameter
        file describes (proximal to all four cell types or distal to the
        three with distal synapses, HNN's fixed delays and space constant,
        probability 1, all drives one-to-one or all synchronous), plus at
        most one Poisson drive like the files' ``extpois`` (proximal to all
        four cell types, one drive cell per cell, HNN's delays, space
        constant 100, an end time), which is written back even when its
        weights are zero: its gids move the other drives' event seeds.

    Returns
    -------
    params : Params
        ``Network(params, add_drives_from_params=True)`` (the grid size too)
        has the same drives (event times, weights) and connections.

    Raises
    ------
    HnnfitError
        Naming the drive (or connection) that a parameter file cannot express.
    """
    params = Params({k: v for k, v in dict(net._params).items() if not _DRIVE_KEY.match(k)})
    tstop = float(params.get("tstop", 250.0))
    # no rhythmic, Gaussian or Poisson input unless the network has one
    for side in ("prox", "dist"):
        params[f"t0_input_{side}"] = 1000.0 + 10.0 * tstop
        params[f"tstop_input_{side}"] = 0.0
    params["L2Basket_Gauss_mu"] = 2000.0 + 10.0 * tstop
    params["t0_pois"] = 0.0
    params["T_pois"] = -1.0
    params["N_pyr_x"], params["N_pyr_y"] = net._n_pyr_x, net._n_pyr_y
    if net._legacy_mode:
        raise HnnfitError("a legacy_mode network cannot be written to a parameter file "
                          "(its drives connect to every cell type)")

    # pick file names (evprox1.., evdist1..) keeping existing numbers when they are 1..n
    by_loc = {"proximal": [], "distal": []}
    sync = set()
    poisson = [n for n, d in net.external_drives.items() if d["type"] == "poisson"]
    if len(poisson) > 1:
        _cannot(poisson[1], f"a parameter file holds one Poisson drive, and {poisson[0]!r} "
                            f"is one already")
    for name, drive in net.external_drives.items():
        if drive["type"] == "poisson":
            _check_file_poisson(name, drive)
            continue
        if drive["type"] != "evoked":
            _cannot(name, f"it is a {drive['type']} drive; only evoked and Poisson drives "
                          f"are written")
        loc = drive["location"]
        if loc not in by_loc:
            _cannot(name, f"its location is {loc!r}, not 'proximal' or 'distal'")
        targets = tuple(drive["target_types"])
        if set(targets) != set(EVOKED_TARGETS[loc]):
            _cannot(name, f"it targets {list(targets)}; a {loc} drive in a parameter file "
                          f"targets {list(EVOKED_TARGETS[loc])}")
        if drive["cell_specific"]:
            sync.add(False)
        elif drive["n_drive_cells"] == 1:
            sync.add(True)
        else:
            _cannot(name, f"it has {drive['n_drive_cells']} shared drive cells; a parameter "
                          f"file's drive has one per cell or a single one")
        _check_file_wiring(name, drive, targets, EVOKED_SPACE_CONSTANT,
                           EVOKED_DELAYS[loc])
        if drive["dynamics"].get("sync_within_trial"):
            _cannot(name, "it has sync_within_trial=True")
        by_loc[loc].append(name)
    if len(sync) > 1:
        raise HnnfitError("drives cannot be written to one parameter file: some are "
                          "one-to-one and some synchronous (sync_evinput is global)")
    params["sync_evinput"] = 1 if sync == {True} else 0

    rename = {}
    for loc, prefix in (("proximal", "evprox"), ("distal", "evdist")):
        names = by_loc[loc]
        wanted = [f"{prefix}{i}" for i in range(1, len(names) + 1)]
        if sorted(names) == sorted(wanted):
            rename.update({n: n for n in names})
        else:
            rename.update(dict(zip(names, wanted)))  # in the order the network added them

    if poisson:
        rename[poisson[0]] = "extpois"

    # gids the rebuilt network gives each drive: cells first, then drives sorted by name
    first_gid = {}
    gid = sum(len(net.gid_ranges[ct]) for ct in net.cell_types)
    new_of = {new: old for old, new in rename.items()}
    for new in sorted(new_of):
        first_gid[new] = gid
        gid += len(net.gid_ranges[new_of[new]])

    for old, new in rename.items():
        drive = net.external_drives[old]
        if new == "extpois":
            _write_poisson(params, drive, first_gid[new])
            continue
        tag = new.replace("evprox", "evprox_").replace("evdist", "evdist_")
        dyn = drive["dynamics"]
        params[f"t_{tag}"] = float(dyn["mu"])
        params[f"sigma_t_{tag}"] = float(dyn["sigma"])
        params[f"numspikes_{tag}"] = int(dyn["numspikes"])
        for ct in drive["target_types"]:
            for receptor in ("ampa", "nmda"):
                weights = drive.get(f"weights_{receptor}") or {}
                params[f"gbar_{tag}_{SHORT_NAMES[ct]}_{receptor}"] = float(weights.get(ct, 0.0))
        # the rebuilt network adds the drive's first gid to the file's seed
        params[f"prng_seedcore_{tag}"] = int(drive["event_seed"]) - first_gid[new]
    _check_rebuild(net, params, rename)
    return params


def _check_file_wiring(name, drive, targets, space_constant, file_delays):
    """Raise unless the drive's connections are those a parameter file fixes."""
    if float(drive["space_constant"]) != space_constant:
        _cannot(name, f"its space constant is {drive['space_constant']}, not {space_constant}")
    probs = _per_type(drive.get("probability", 1.0), targets)
    if any(p is not None and float(p) != 1.0 for p in probs.values()):
        _cannot(name, f"its connection probability is {drive['probability']}, not 1")
    delays = _per_type(drive["synaptic_delays"], targets)
    for ct in targets:
        if delays[ct] is None or float(delays[ct]) != file_delays[ct]:
            _cannot(name, f"its synaptic delay onto {ct} is {delays[ct]} ms; a parameter "
                          f"file fixes it at {file_delays[ct]} ms")


def _check_file_poisson(name, drive):
    """Raise unless ``drive`` is a Poisson drive a parameter file can describe.

    The HNN files carry one (``extpois``, often with zero weights); it takes
    gids and so moves every other drive's event seeds, and an exported file
    must keep it to reproduce the fit.
    """
    targets = CELL_TYPES
    if drive["location"] != "proximal":
        _cannot(name, f"it is a Poisson drive at {drive['location']!r}; a parameter file's "
                      f"Poisson drive is proximal")
    if set(drive["target_types"]) != set(targets):
        _cannot(name, f"it targets {list(drive['target_types'])}; a parameter file's Poisson "
                      f"drive targets {list(targets)}")
    if not drive["cell_specific"]:
        _cannot(name, "it is a Poisson drive with shared drive cells; a parameter file's "
                      "has one per cell")
    _check_file_wiring(name, drive, targets, POISSON_SPACE_CONSTANT, POISSON_DELAYS)
    if drive["dynamics"]["tstop"] is None:
        _cannot(name, "its trains run to the end of the simulation (tstop None); a "
                      "parameter file gives an end time")


def _write_poisson(params, drive, first_gid):
    dyn = drive["dynamics"]
    params["t0_pois"] = float(dyn["tstart"])
    params["T_pois"] = float(dyn["tstop"])
    for ct in CELL_TYPES:
        short = SHORT_NAMES[ct]
        params[f"{short}_Pois_lamtha"] = float(dyn["rate_constant"][ct])
        for receptor in ("ampa", "nmda"):
            weights = drive.get(f"weights_{receptor}") or {}
            params[f"{short}_Pois_A_weight_{receptor}"] = float(weights.get(ct, 0.0))
    # as for the evoked drives: the rebuilt network adds the first gid
    params["prng_seedcore_extpois"] = int(drive["event_seed"]) - first_gid


def _check_rebuild(net, params, rename):
    """Rebuild the network from ``params`` and make sure nothing was lost."""
    new = Network(params, add_drives_from_params=True,
                  mesh_shape=(net._n_pyr_x, net._n_pyr_y))
    cells = set(net.cell_types)
    old_conns = [c for c in net.connectivity if c["src_type"] in cells]
    new_conns = [c for c in new.connectivity if c["src_type"] in cells]
    if len(old_conns) != len(new_conns) or any(
            not any(a == b for b in new_conns) for a in old_conns):
        raise HnnfitError(
            "the network's cell-to-cell connections differ from those its parameters "
            "define (changed by a set_params hook or by hand?); they cannot be written "
            "to a parameter file")
    for old, name in rename.items():
        a, b = net.external_drives[old], new.external_drives[name]
        for key in ("type", "location", "cell_specific", "n_drive_cells", "event_seed",
                    "dynamics"):
            if a[key] != b[key]:
                _cannot(old, f"its {key} would be {b[key]!r} instead of {a[key]!r} when read "
                             f"back")
        for receptor in ("ampa", "nmda"):
            wa = a.get(f"weights_{receptor}") or {}
            wb = b.get(f"weights_{receptor}") or {}
            for ct in set(wa) | set(wb):
                if float(wa.get(ct, 0.0)) != float(wb.get(ct, 0.0)):
                    _cannot(old, f"its {receptor} weight onto {ct} would change when read "
                                 f"back")
    return True

