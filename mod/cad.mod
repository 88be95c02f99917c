TITLE cad: submembrane calcium shell with first-order removal

COMMENT
Internal Ca2+ in a thin shell of the given depth (Destexhe et al. 1993
style, as used by the HNN model):

    dca/dt = max(0, -ica / (2 F depth)) + (cainf - ca) / taur

The influx term is clipped at zero: outward calcium current cannot pump
calcium out through this path. The factor 1e4 converts
(mA/cm2) / (C/mol * um) to mM/ms. Writes cai.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX cad
    USEION ca READ ica, cai WRITE cai
    RANGE ca, taur, depth, cainf
}

UNITS {
    (molar) = (1/liter)
    (mM)    = (millimolar)
    (um)    = (micron)
    (mA)    = (milliamp)
    FARADAY = (faraday) (coulomb)
}

PARAMETER {
    depth = 0.1     (um)     : shell depth
    taur  = 200     (ms)     : removal time constant
    cainf = 100e-6  (mM)     : resting concentration
}

ASSIGNED {
    ica    (mA/cm2)
    cai    (mM)
    influx (mM/ms)
}

STATE { ca (mM) <1e-5> }

INITIAL {
    ca = cainf
    cai = ca
}

BREAKPOINT {
    SOLVE shell METHOD cnexp
}

DERIVATIVE shell {
    influx = -(10000) * ica / (2 * FARADAY * depth)
    if (influx <= 0) {
        influx = 0
    }
    ca' = influx + (cainf - ca) / taur
    cai = ca
}
