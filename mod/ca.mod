TITLE ca: high-voltage-activated calcium current (fixed eca)

COMMENT
HVA Ca2+ current (Reuveni et al. 1993 kinetics, Mainen's formulation, as
used by the HNN model). Driving force uses eca (no GHK).

  activation   m: alpha = 0.055 (-27 - v) / (exp((-27 - v)/3.8) - 1)
                  beta  = 0.94 exp((-75 - v)/17)
  inactivation h: alpha = 0.000457 exp((-13 - v)/50)
                  beta  = 0.0065 / (exp((-v - 15)/28) + 1)
  xinf = alpha / (alpha + beta),  xtau = 1 / (tadj (alpha + beta))
  ica = 1e-4 tadj gbar m^2 h (v - eca)      (gbar in pS/um2)

tadj = q10 ^ ((celsius - temp - tshift) / 10). Rates come from a table over
vmin..vmax (as in the published model); tadj is recomputed in INITIAL so no
GLOBAL variable is assigned.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX ca
    USEION ca READ eca WRITE ica
    RANGE gbar, gca, m, h, minf, hinf, mtau, htau, tadj
    GLOBAL q10, temp, tshift, vshift, vmin, vmax
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (pS) = (picosiemens)
    (um) = (micron)
}

PARAMETER {
    gbar   = 0.1   (pS/um2)
    vshift = 0     (mV)      : shifts every rate curve
    temp   = 23    (degC)
    q10    = 2.3
    tshift = 30.7  (degC)
    vmin   = -120  (mV)
    vmax   = 100   (mV)
}

ASSIGNED {
    v       (mV)
    celsius (degC)
    eca     (mV)
    ica     (mA/cm2)
    gca     (pS/um2)
    minf    (1)
    hinf    (1)
    mtau    (ms)
    htau    (ms)
    tadj    (1)
}

STATE { m h }

INITIAL {
    tadj = q10 ^ ((celsius - temp - tshift) / 10)
    rates(v + vshift)
    m = minf
    h = hinf
}

BREAKPOINT {
    SOLVE gating METHOD cnexp
    gca = tadj * gbar * m * m * h
    ica = (1e-4) * gca * (v - eca)
}

DERIVATIVE gating {
    rates(v + vshift)
    m' = (minf - m) / mtau
    h' = (hinf - h) / htau
}

UNITSOFF
PROCEDURE rates(u (mV)) {
    LOCAL alpha, beta, phi, x
    TABLE minf, hinf, mtau, htau DEPEND celsius, temp, tshift, q10 FROM vmin TO vmax WITH 199

    phi = q10 ^ ((celsius - temp - tshift) / 10)

    x = -27 - u
    if (fabs(x) < 1e-9) {
        : removable singularity: limit of x / (exp(x/3.8) - 1)
        alpha = 0.055 * 3.8 * (1 - x / 7.6)
    } else {
        alpha = 0.055 * x / (exp(x / 3.8) - 1)
    }
    beta = 0.94 * exp((-75 - u) / 17)
    minf = alpha / (alpha + beta)
    mtau = 1 / phi / (alpha + beta)

    alpha = 0.000457 * exp((-13 - u) / 50)
    beta = 0.0065 / (exp((-u - 15) / 28) + 1)
    hinf = alpha / (alpha + beta)
    htau = 1 / phi / (alpha + beta)
}
UNITSON
