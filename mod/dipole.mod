TITLE dipole: per-node contribution to a cell's current dipole moment

COMMENT
Density mechanism placed in every section of a pyramidal cell. At each
interior node it estimates the axial current flowing into that node from
its neighbour on the section's 0-side,

    ia = (pv - v) / ri          (mV / Mohm = nA)

and its dipole contribution along the cell's axis,

    Q = ia * ztan               (nA * um = fA * m)

where ztan is the projection, on the dipole axis, of the distance between
the two nodes. Q is added to the cell's DipoleSum through the qsum POINTER.

The builder sets, for every interior node:
    ri   = h.ri(x)               axial resistance to the previous node (Mohm)
    ztan                         projected inter-node distance (um)
    pv   -> v of the previous node (sec(x_prev)._ref_v)
    qsum -> the cell's DipoleSum q (dsum._ref_q)

Evaluated after the voltage update (AFTER SOLVE) and after initialisation,
so the value recorded at a step uses that step's voltages.

The sum into qsum is a PROTECT statement: many instances (the nodes of one
cell) add into the same qsum, and CoreNEURON's generated loops are marked
for vectorisation, so an unprotected read-add-write loses contributions
once the compiler vectorises it (seen at -O3). In plain NEURON PROTECT only
takes a mutex when threads are used.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX dipole
    RANGE ri, ztan, ia, Q
    POINTER pv, qsum
}

UNITS {
    (nA)   = (nanoamp)
    (mV)   = (millivolt)
    (Mohm) = (megaohm)
    (um)   = (micrometer)
    (fAm)  = (femto amp meter)
}

PARAMETER {
    ri   = 1  (Mohm)
    ztan = 0  (um)
}

ASSIGNED {
    v    (mV)
    pv   (mV)
    ia   (nA)
    Q    (fAm)
    qsum (fAm)
}

AFTER INITIAL {
    contribute()
}

AFTER SOLVE {
    contribute()
}

PROCEDURE contribute() {
    ia = (pv - v) / ri
    Q = ia * ztan
    PROTECT qsum = qsum + Q
}
