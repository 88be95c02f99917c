"""
Simulate the dipole of an evoked response
=========================================

The workflow of HNN's "simulate dipole for evoked inputs" example, written
against hnnfit:

1. read the default parameter set and look parameters up with wildcards;
2. build the network (:class:`~hnnfit.Network`) from it and plot
   its cells;
3. add one distal and two proximal evoked drives;
4. simulate two trials and plot their smoothed, scaled dipoles (with the
   trial average) above a histogram of the drive spikes;
5. plot the spike raster, and write the spikes to files and read them back;
6. copy the network, make every drive synchronous within a trial, simulate
   again and plot the result.

The page uses a 3 x 3 grid of pyramidal cells per layer so that it builds
in seconds; drop ``mesh_shape`` for the full 10 x 10 column.
"""
import os.path as op
import tempfile

import matplotlib.pyplot as plt

import hnnfit
from hnnfit import JoblibBackend, Network, read_params, read_spikes, simulate_dipole
from hnnfit.viz import plot_dipole

MESH_SHAPE = (3, 3)   # pyramidal cells per layer; the published model uses (10, 10)

# %%
# Read the parameter file. hnnfit ships its parameter sets in
# ``hnnfit.PARAMS_DIR``; ``read_params('default.json')`` finds the same file
# by its bare name.
params_fname = op.join(hnnfit.PARAMS_DIR, "default.json")
params = read_params(params_fname)
print(params)

# %%
# Most parameters describe cell geometry and connection weights. A key with
# shell-style wildcards returns the matching subset.
print(params["L2Pyr_soma*"])

# %%
# Build the network from the parameters and look at where its cells sit:
# the Jones et al. (2009) column with its 16 local connection rules,
# weighted by the parameter set. ``mesh_shape`` sets the grid of pyramidal
# cells in each layer: the model's 10 x 10 grid takes about half a minute
# per 170 ms trial; the 3 x 3 grid of this page runs in a couple of
# seconds and shows the same workflow (its dipole is smaller, as fewer
# pyramidal cells add to it).
net = Network(params, mesh_shape=MESH_SHAPE)
print(net)
net.plot_cells(show=False)

# %%
# Add the drives. A distal evoked drive first; AMPA and NMDA weights (uS)
# are given per targeted cell type, and delays (ms) likewise.
weights_ampa_d1 = {"L2_basket": 0.006562, "L2_pyramidal": .000007,
                   "L5_pyramidal": 0.142300}
weights_nmda_d1 = {"L2_basket": 0.019482, "L2_pyramidal": 0.004317,
                   "L5_pyramidal": 0.080074}
synaptic_delays_d1 = {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                      "L5_pyramidal": 0.1}
net.add_evoked_drive(
    "evdist1", mu=63.53, sigma=3.85, numspikes=1, weights_ampa=weights_ampa_d1,
    weights_nmda=weights_nmda_d1, location="distal",
    synaptic_delays=synaptic_delays_d1, seedcore=4)

# %%
# Then two proximal drives, AMPA only.
weights_ampa_p1 = {"L2_basket": 0.08831, "L2_pyramidal": 0.01525,
                   "L5_basket": 0.19934, "L5_pyramidal": 0.00865}
synaptic_delays_prox = {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                        "L5_basket": 1., "L5_pyramidal": 1.}
net.add_evoked_drive(
    "evprox1", mu=26.61, sigma=2.47, numspikes=1, weights_ampa=weights_ampa_p1,
    weights_nmda=None, location="proximal",
    synaptic_delays=synaptic_delays_prox, seedcore=4)

weights_ampa_p2 = {"L2_basket": 0.000003, "L2_pyramidal": 1.438840,
                   "L5_basket": 0.008958, "L5_pyramidal": 0.684013}
net.add_evoked_drive(
    "evprox2", mu=137.12, sigma=8.33, numspikes=1,
    weights_ampa=weights_ampa_p2, location="proximal",
    synaptic_delays=synaptic_delays_prox, seedcore=4)

# %%
# Simulate two trials. ``postproc=True`` smooths each dipole with the
# parameter file's ``dipole_smooth_win`` (ms) and scales it by
# ``dipole_scalefctr``. With ``n_jobs=2`` the trials would run in two
# worker processes.
with JoblibBackend(n_jobs=1):
    dpls = simulate_dipole(net, n_trials=2, postproc=True, verbose=False)

# %%
# Plot the aggregate dipole of both trials with their average, above a
# histogram of the drive spikes (the two proximal drives pooled under
# ``'evprox'``).
fig, axes = plt.subplots(2, 1, sharex=True, figsize=(6, 6),
                         constrained_layout=True)
plot_dipole(dpls, ax=axes[0], layer="agg", average=True, show=False)
net.cell_response.plot_spikes_hist(ax=axes[1], spike_types=["evprox", "evdist"],
                                   show=False)
fig

# %%
# The spikes of every cell, and a round trip through text files: ``%d`` in
# the file name writes one file per trial, and a glob pattern reads them
# back in trial order.
net.cell_response.plot_spikes_raster(show=False)
with tempfile.TemporaryDirectory() as tmp_dir_name:
    net.cell_response.write(op.join(tmp_dir_name, "spk_%d.txt"))
    cell_response = read_spikes(op.join(tmp_dir_name, "spk_*.txt"))
print(f"read back {cell_response}; identical to the simulated spikes: "
      f"{cell_response.spike_times == net.cell_response.spike_times}")
cell_response.plot_spikes_raster(show=False)

# %%
# Now make the drives synchronous: with ``sync_within_trial=True`` every
# drive cell of a drive fires at the same time(s) in a trial. ``copy()``
# clones the network without the outputs of the previous simulation.
net_sync = net.copy()
net_sync.external_drives["evdist1"]["dynamics"]["sync_within_trial"] = True
net_sync.external_drives["evprox1"]["dynamics"]["sync_within_trial"] = True
net_sync.external_drives["evprox2"]["dynamics"]["sync_within_trial"] = True

print(net_sync.external_drives["evdist1"]["dynamics"])

# %%
# Simulate one trial of the synchronous network and plot its dipole and the
# histogram of its drive spikes.
dpls_sync = simulate_dipole(net_sync, n_trials=1, postproc=True, verbose=False)

trial_idx = 0
dpls_sync[trial_idx].plot(show=False)
net_sync.cell_response.plot_spikes_hist(show=False)

plt.show()
