TITLE DipoleTip: dipole contribution of a section's 1-end node

COMMENT
Point-process twin of the dipole density mechanism for the zero-area node
at x = 1 of a section, which density mechanisms do not reach. One is placed
at x = 1 of every section of a pyramidal cell, with

    ri   = h.ri(1)                 resistance from the last interior node (Mohm)
    ztan                           projected distance from that node (um)
    pv   -> v of the last interior node
    qsum -> the cell's DipoleSum q

and computes ia = (pv - v) / ri (nA), Q = ia * ztan (fA m) and adds Q to
qsum after initialisation and after every voltage update.

The sum into qsum is a PROTECT statement: many instances (the nodes of one
cell) add into the same qsum, and CoreNEURON's generated loops are marked
for vectorisation, so an unprotected read-add-write loses contributions
once the compiler vectorises it (seen at -O3). In plain NEURON PROTECT only
takes a mutex when threads are used.
ENDCOMMENT

NEURON {
    THREADSAFE
    POINT_PROCESS DipoleTip
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
