TITLE cat: low-threshold (T-type) calcium current, non-specific

COMMENT
T-type Ca2+ current with Traub et al. (2003) kinetics, as used by the HNN
model. It is a NONSPECIFIC current with a fixed reversal of 125 mV, so it
does not change the calcium concentration.

    minf = 1 / (1 + exp((-v - 56)/6.2))
    mtau = 0.204 + 0.333 / (exp((v + 15.8)/18.2) + exp((-v - 131)/16.7))
    hinf = 1 / (1 + exp((v + 80)/4))
    htau = 0.333 exp((v + 466)/66.6)         for v < -81 mV
           9.32 + 0.333 exp((-v - 21)/10.5)  otherwise
    i = gbar m^2 h (v - 125)

No temperature scaling. As in the published model, m starts at 0 (not at
minf) while h starts at hinf, and the rates are tabled over -120..40 mV.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX cat
    NONSPECIFIC_CURRENT i
    RANGE gbar, i, minf, hinf, mtau, htau
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S)  = (siemens)
}

PARAMETER {
    gbar = 0  (S/cm2)
}

ASSIGNED {
    v    (mV)
    i    (mA/cm2)
    minf (1)
    hinf (1)
    mtau (ms)
    htau (ms)
}

STATE { m h }

INITIAL {
    rates(v)
    m = 0
    h = hinf
}

BREAKPOINT {
    SOLVE gating METHOD cnexp
    i = gbar * m * m * h * (v - 125)
}

DERIVATIVE gating {
    rates(v)
    m' = (minf - m) / mtau
    h' = (hinf - h) / htau
}

UNITSOFF
PROCEDURE rates(v (mV)) {
    TABLE minf, mtau, hinf, htau FROM -120 TO 40 WITH 641
    minf = 1 / (1 + exp((-v - 56) / 6.2))
    mtau = 0.204 + 0.333 / (exp((v + 15.8) / 18.2) + exp((-v - 131) / 16.7))
    hinf = 1 / (1 + exp((v + 80) / 4))
    if (v < -81) {
        htau = 0.333 * exp((v + 466) / 66.6)
    } else {
        htau = 9.32 + 0.333 * exp((-v - 21) / 10.5)
    }
}
UNITSON
