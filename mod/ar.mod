TITLE ar: anomalous rectifier (h-like) current, non-specific

COMMENT
Hyperpolarisation-activated cation current with Traub et al. (2003)
kinetics, as used by the HNN model:

    minf = 1 / (1 + exp((v + 75)/5.5))
    mtau = 1 / (exp(-14.6 - 0.086 v) + exp(-1.87 + 0.07 v))
    i = gbar m (v - erev),  erev = -35 mV

No temperature scaling. As in the published model, m starts at 0.25 rather
than at minf, and the rates are tabled over -120..40 mV.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX ar
    NONSPECIFIC_CURRENT i
    RANGE gbar, i, erev, minf, mtau
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S)  = (siemens)
}

PARAMETER {
    gbar = 0    (S/cm2)
    erev = -35  (mV)
}

ASSIGNED {
    v    (mV)
    i    (mA/cm2)
    minf (1)
    mtau (ms)
}

STATE { m }

INITIAL {
    rates(v)
    m = 0.25
}

BREAKPOINT {
    SOLVE gating METHOD cnexp
    i = gbar * m * (v - erev)
}

DERIVATIVE gating {
    rates(v)
    m' = (minf - m) / mtau
}

UNITSOFF
PROCEDURE rates(v (mV)) {
    TABLE minf, mtau FROM -120 TO 40 WITH 641
    minf = 1 / (1 + exp((v + 75) / 5.5))
    mtau = 1 / (exp(-14.6 - 0.086 * v) + exp(-1.87 + 0.07 * v))
}
UNITSON
