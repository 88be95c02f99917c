TITLE kca: calcium-activated potassium current

COMMENT
Ca2+-dependent K+ current (Pennefather-type kinetics via Reuveni et al.
1993, as used by the HNN model). First-order gating driven by internal
calcium:

    alpha = Ra cai^caix,  beta = Rb
    ninf = alpha / (alpha + beta),  ntau = 1 / (tadj (alpha + beta))
    ik = 1e-4 tadj gbar n (v - ek)        (gbar in pS/um2)

with tadj = q10 ^ ((celsius - temp - tshift) / 10). No table: the rates
depend on cai, not on v.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX kca
    USEION k READ ek WRITE ik
    USEION ca READ cai
    RANGE gbar, gk, n, ninf, ntau, tadj
    GLOBAL Ra, Rb, caix, q10, temp, tshift
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (mM) = (milli/liter)
    (pS) = (picosiemens)
    (um) = (micron)
}

PARAMETER {
    gbar   = 10    (pS/um2)
    caix   = 1
    Ra     = 0.01  (/ms)      : maximal activation rate
    Rb     = 0.02  (/ms)      : maximal deactivation rate
    temp   = 23    (degC)
    q10    = 2.3
    tshift = 30.7  (degC)
}

ASSIGNED {
    v       (mV)
    celsius (degC)
    cai     (mM)
    ek      (mV)
    ik      (mA/cm2)
    gk      (pS/um2)
    ninf    (1)
    ntau    (ms)
    tadj    (1)
}

STATE { n }

INITIAL {
    rates(cai)
    n = ninf
}

BREAKPOINT {
    SOLVE gating METHOD cnexp
    gk = tadj * gbar * n
    ik = (1e-4) * gk * (v - ek)
}

DERIVATIVE gating {
    rates(cai)
    n' = (ninf - n) / ntau
}

UNITSOFF
PROCEDURE rates(c (mM)) {
    LOCAL alpha, beta
    alpha = Ra * c ^ caix
    beta = Rb
    tadj = q10 ^ ((celsius - temp - tshift) / 10)
    ninf = alpha / (alpha + beta)
    ntau = 1 / tadj / (alpha + beta)
}
UNITSON
