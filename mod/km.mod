TITLE km: slow non-inactivating (muscarinic, M-type) potassium current

COMMENT
M-type K+ current with Hodgkin-Huxley first-order gating (Mainen and
Sejnowski style, as used by the HNN model).

    alpha(v) =  Ra (v - tha) / (1 - exp(-(v - tha)/qa))
    beta(v)  = -Rb (v - tha) / (1 - exp( (v - tha)/qa))
    ninf = alpha / (alpha + beta),  ntau = 1 / (tadj (alpha + beta))
    ik = 1e-4 tadj gbar n (v - ek)        (gbar in pS/um2)

tadj = q10 ^ ((celsius - temp - tshift) / 10) scales both the rates and the
conductance. Rates come from a table over vmin..vmax, as in the published
model. tadj is recomputed in INITIAL (rather than as a side effect of filling
the table) so that no GLOBAL variable is ever assigned.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX km
    USEION k READ ek WRITE ik
    RANGE gbar, gk, n, ninf, ntau, tadj
    GLOBAL Ra, Rb, tha, qa, q10, temp, tshift, vmin, vmax
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (pS) = (picosiemens)
    (um) = (micron)
}

PARAMETER {
    gbar   = 10     (pS/um2)
    tha    = -30    (mV)        : half-activation voltage
    qa     = 9      (mV)        : slope of activation
    Ra     = 0.001  (/ms)       : maximal activation rate
    Rb     = 0.001  (/ms)       : maximal deactivation rate
    temp   = 23     (degC)      : temperature of the original recordings
    q10    = 2.3
    tshift = 30.7   (degC)
    vmin   = -120   (mV)
    vmax   = 100    (mV)
}

ASSIGNED {
    v       (mV)
    celsius (degC)
    ek      (mV)
    ik      (mA/cm2)
    gk      (pS/um2)
    ninf    (1)
    ntau    (ms)
    tadj    (1)
}

STATE { n }

INITIAL {
    tadj = q10 ^ ((celsius - temp - tshift) / 10)
    rates(v)
    n = ninf
}

BREAKPOINT {
    SOLVE gating METHOD cnexp
    gk = tadj * gbar * n
    ik = (1e-4) * gk * (v - ek)
}

DERIVATIVE gating {
    rates(v)
    n' = (ninf - n) / ntau
}

UNITSOFF
PROCEDURE rates(v (mV)) {
    LOCAL alpha, beta, phi, x
    TABLE ninf, ntau DEPEND celsius, temp, tshift, q10, Ra, Rb, tha, qa FROM vmin TO vmax WITH 199

    phi = q10 ^ ((celsius - temp - tshift) / 10)
    x = v - tha
    if (fabs(x) < 1e-9) {
        : removable singularity at v = tha (never on the table grid)
        alpha = Ra * qa * (1 + x / qa / 2)
        beta = Rb * qa * (1 - x / qa / 2)
    } else {
        alpha = Ra * x / (1 - exp(-x / qa))
        beta = -Rb * x / (1 - exp(x / qa))
    }
    ninf = alpha / (alpha + beta)
    ntau = 1 / phi / (alpha + beta)
}
UNITSON
