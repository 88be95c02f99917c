TITLE DipoleSum: accumulator of one cell's current dipole moment

COMMENT
One per pyramidal cell (its location does not matter). q is cleared before
initialisation and before every current evaluation; the cell's dipole and
DipoleTip mechanisms then add their contributions to it after initialisation
and after every voltage update, so a Vector recording q (Vector.record(
dsum._ref_q)) holds the cell's total dipole moment at each step, in fA m
(nA um); multiply by 1e-6 for nA m.
ENDCOMMENT

NEURON {
    THREADSAFE
    POINT_PROCESS DipoleSum
    RANGE q
}

UNITS {
    (fAm) = (femto amp meter)
}

ASSIGNED {
    q (fAm)
}

BEFORE INITIAL {
    q = 0
}

BEFORE BREAKPOINT {
    q = 0
}
