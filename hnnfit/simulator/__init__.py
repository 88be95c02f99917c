"""Everything that touches NEURON: compiling and loading the mechanisms,
instantiating cells and networks, running them.

No other part of hnnfit imports ``neuron``.
"""
import os

# hnnfit never opens NEURON's GUI; without this NEURON prints a warning
# about a missing display at its first import on a headless machine.
os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
