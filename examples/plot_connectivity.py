"""
Modify the local connectivity of the network
============================================

The workflow of HNN's "modifying local connectivity" example, written
against hnnfit:

1. build the Jones et al. (2009) model with the drives of its parameter
   set, inspect ``net.connectivity`` with
   :func:`~hnnfit.pick_connection` and plot one rule as a matrix and per
   source cell;
2. simulate it and plot the spike raster;
3. replace the cell-to-cell rules by a custom all-to-all pattern, and by a
   sparse version of it, simulate both and compare the rasters;
4. plot the sparse pattern, and compare the three networks' smoothed,
   scaled dipoles above the drive-spike histogram of the default network.
"""
import matplotlib.pyplot as plt

from hnnfit import jones_2009_model, pick_connection, simulate_dipole
from hnnfit.viz import plot_cell_connectivity, plot_connectivity_matrix, plot_dipole

MESH_SHAPE = (3, 3)   # pyramidal cells per layer; the published model uses (10, 10)

# %%
# The network of the evoked example, with the drives its parameter set
# defines (``add_drives_from_params=True``), on a 3 x 3 grid of pyramidal
# cells per layer so that the page builds in seconds (the published model
# uses 10 x 10).
net_erp = jones_2009_model(add_drives_from_params=True, mesh_shape=MESH_SHAPE)

# %%
# ``net.connectivity`` lists every connection rule, drive -> cell and
# cell -> cell. ``pick_connection`` returns the indices of the rules that
# match all the criteria given.
print(len(net_erp.connectivity))

conn_indices = pick_connection(
    net=net_erp, src_gids="L5_basket", target_gids="L5_pyramidal",
    loc="soma", receptor="gabaa")
conn_idx = conn_indices[0]
print(net_erp.connectivity[conn_idx])
plot_connectivity_matrix(net_erp, conn_idx, show=False)

# ``src_gids`` is a set: pop an element of a copy to get one source cell
src_gid = net_erp.connectivity[conn_idx]["src_gids"].copy().pop()
plot_cell_connectivity(net_erp, conn_idx, src_gid, show=False)

# %%
# Simulate the default network; its spikes are kept in ``net.cell_response``.
dpl_erp = simulate_dipole(net_erp, tstop=170., n_trials=1, verbose=False)
net_erp.cell_response.plot_spikes_raster(show=False)

# %%
# A custom network: clear the cell-to-cell rules (the drives keep theirs)
# and connect L5 pyramidal cells and L2 basket cells to both of these cell
# types. ``add_connection`` accepts cell-type names or gids.


def get_network(probability=1.0):
    net = jones_2009_model(add_drives_from_params=True, mesh_shape=MESH_SHAPE)
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
dpl_all = simulate_dipole(net_all, tstop=170., n_trials=1, verbose=False)

# %%
# The same pattern, keeping half of the pairs (HNN's page keeps 10 % of
# the full-size network's pairs; a 3 x 3 grid has too few for that).
net_sparse = get_network(probability=0.5)
dpl_sparse = simulate_dipole(net_sparse, tstop=170., n_trials=1, verbose=False)

# %%
# Spike rasters of the all-to-all and the sparse network.
net_all.cell_response.plot_spikes_raster(show=False)
net_sparse.cell_response.plot_spikes_raster(show=False)

# %%
# The sparse L2 basket -> L2 basket rule as a matrix, and the targets of one
# of its source cells: sparsity comes on top of the fall-off of the weights
# with distance.
conn_indices = pick_connection(
    net=net_sparse, src_gids="L2_basket", target_gids="L2_basket",
    loc="soma", receptor="gabaa")
conn_idx = conn_indices[0]
plot_connectivity_matrix(net_sparse, conn_idx, show=False)

# a source cell that kept at least one target
src_gid = min(net_sparse.connectivity[conn_idx]["gid_pairs"])
plot_cell_connectivity(net_sparse, conn_idx, src_gid=src_gid, show=False)

# %%
# How the connectivity changes the aggregate dipole: the three dipoles,
# smoothed and scaled alike, above the drive-spike histogram of the default
# network.
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
fig

plt.show()
