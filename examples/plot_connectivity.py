"""Modify the local connectivity of the network.

The workflow of HNN's "modifying local connectivity" example, written
against hnnfit:

1. build the Jones et al. (2009) model with the drives of its parameter
   set, inspect ``net.connectivity`` with ``pick_connection`` and plot one
   rule as a matrix and per source cell;
2. simulate it and plot the spike raster;
3. replace the cell-to-cell rules by a custom all-to-all pattern, and by a
   sparse (10 %) version of it, simulate both and compare the rasters;
4. plot the sparse pattern, and compare the three networks' smoothed,
   scaled dipoles above the drive-spike histogram of the default network.

Run it headless with::

    MPLBACKEND=Agg python examples/plot_connectivity.py --out figures/

Every figure is saved as a PNG file in the output folder (default:
``figures/`` next to this script). The script simulates the full
270-cell network three times for 170 ms (about half a minute each on one
core).
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from hnnfit import jones_2009_model, simulate_dipole


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "figures",
        help="folder for the PNG figures (created if missing)")
    return parser.parse_args()


args = _parse_args()
args.out.mkdir(parents=True, exist_ok=True)


def save(fig, name):
    """Write ``fig`` as ``<out>/connectivity_<name>.png`` and release it."""
    path = args.out / f"connectivity_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


###############################################################################
# The network of the evoked example, with the drives its parameter set
# defines (``add_drives_from_params=True``).
net_erp = jones_2009_model(add_drives_from_params=True)

###############################################################################
# ``net.connectivity`` lists every connection rule, drive -> cell and
# cell -> cell. ``pick_connection`` returns the indices of the rules that
# match all the criteria given.
from hnnfit.viz import plot_connectivity_matrix, plot_cell_connectivity  # noqa: E402
from hnnfit.network import pick_connection  # noqa: E402

print(len(net_erp.connectivity))

conn_indices = pick_connection(
    net=net_erp, src_gids="L5_basket", target_gids="L5_pyramidal",
    loc="soma", receptor="gabaa")
conn_idx = conn_indices[0]
print(net_erp.connectivity[conn_idx])
save(plot_connectivity_matrix(net_erp, conn_idx, show=False), "matrix_L5basket_L5pyr")

# ``src_gids`` is a set: pop an element of a copy to get one source cell
src_gid = net_erp.connectivity[conn_idx]["src_gids"].copy().pop()
fig = plot_cell_connectivity(net_erp, conn_idx, src_gid, show=False)
save(fig, "cell_L5basket_L5pyr")

###############################################################################
# Simulate the default network; its spikes are kept in ``net.cell_response``.
dpl_erp = simulate_dipole(net_erp, tstop=170., n_trials=1)
save(net_erp.cell_response.plot_spikes_raster(show=False), "raster_default")

###############################################################################
# A custom network: clear the cell-to-cell rules (the drives keep theirs)
# and connect L5 pyramidal cells and L2 basket cells to both of these cell
# types. ``add_connection`` accepts cell-type names or gids.


def get_network(probability=1.0):
    net = jones_2009_model(add_drives_from_params=True)
    net.clear_connectivity()

    # add_connection takes (..., weight, delay, lamtha); the original page
    # passes delay before weight, which is harmless here as both are 1.0
    # pyramidal cell connections
    location, receptor = "distal", "ampa"
    weight, delay, lamtha = 1.0, 1.0, 70
    src = "L5_pyramidal"
    conn_seed = 3
    for target in ["L5_pyramidal", "L2_basket"]:
        net.add_connection(src, target, location, receptor,
                           delay, weight, lamtha, probability=probability,
                           conn_seed=conn_seed)

    # basket cell connections
    location, receptor = "soma", "gabaa"
    weight, delay, lamtha = 1.0, 1.0, 70
    src = "L2_basket"
    for target in ["L5_pyramidal", "L2_basket"]:
        net.add_connection(src, target, location, receptor,
                           delay, weight, lamtha, probability=probability,
                           conn_seed=conn_seed)
    return net


net_all = get_network()
dpl_all = simulate_dipole(net_all, tstop=170., n_trials=1)

###############################################################################
# The same pattern, keeping only 10 % of the pairs.
net_sparse = get_network(probability=0.1)
dpl_sparse = simulate_dipole(net_sparse, tstop=170., n_trials=1)

###############################################################################
# Spike rasters of the all-to-all and the sparse network.
save(net_all.cell_response.plot_spikes_raster(show=False), "raster_all")
save(net_sparse.cell_response.plot_spikes_raster(show=False), "raster_sparse")

###############################################################################
# The sparse L2 basket -> L2 basket rule as a matrix, and the targets of one
# of its source cells: sparsity comes on top of the fall-off of the weights
# with distance.
conn_indices = pick_connection(
    net=net_sparse, src_gids="L2_basket", target_gids="L2_basket",
    loc="soma", receptor="gabaa")
conn_idx = conn_indices[0]
save(plot_connectivity_matrix(net_sparse, conn_idx, show=False),
     "matrix_L2basket_L2basket_sparse")

src_gid = net_sparse.connectivity[conn_idx]["src_gids"].copy().pop()
save(plot_cell_connectivity(net_sparse, conn_idx, src_gid=src_gid, show=False),
     "cell_L2basket_L2basket_sparse")

###############################################################################
# How the connectivity changes the aggregate dipole: the three dipoles,
# smoothed and scaled alike, above the drive-spike histogram of the default
# network.
from hnnfit.viz import plot_dipole  # noqa: E402

fig, axes = plt.subplots(2, 1, sharex=True, figsize=(6, 6),
                         constrained_layout=True)

window_len = 30  # ms
scaling_factor = 3000
dpls = [dpl_erp[0].smooth(window_len).scale(scaling_factor),
        dpl_all[0].smooth(window_len).scale(scaling_factor),
        dpl_sparse[0].smooth(window_len).scale(scaling_factor)]

plot_dipole(dpls, ax=axes[0], layer="agg", show=False)
axes[0].legend(["Default", "Custom All", "Custom Sparse"])
net_erp.cell_response.plot_spikes_hist(
    ax=axes[1], spike_types=["evprox", "evdist"], show=False)
save(fig, "dipole_comparison")
