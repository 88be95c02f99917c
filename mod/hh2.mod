TITLE hh2: Hodgkin-Huxley sodium, delayed-rectifier potassium and leak

COMMENT
Hodgkin-Huxley type Na/K/leak currents in the form used by the HNN model
(Jones et al. 2009): voltages in absolute mV with rest near -65 mV.

Temperature: every time constant is divided by
    phi = 3 ^ ((celsius - temp - tshift) / 10)
with temp = 6.3 degC and tshift = 30.7 degC, so phi = 1 at 37 degC.

Rates are looked up in a table over -100..100 mV (NEURON's usetable_hh2
switch turns the table off), because the published model was run that way
and the lookup's linear interpolation is part of its numerical behaviour.
Table entries are RANGE variables here so that nothing GLOBAL is assigned
(needed for CoreNEURON and for thread safety).
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX hh2
    USEION na READ ena WRITE ina
    USEION k READ ek WRITE ik
    NONSPECIFIC_CURRENT il
    RANGE gnabar, gkbar, gl, el, gna, gk
    RANGE minf, hinf, ninf, mtau, htau, ntau
    GLOBAL temp, tshift
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S)  = (siemens)
}

PARAMETER {
    gnabar = 0.12    (S/cm2) <0, 1e9>
    gkbar  = 0.036   (S/cm2) <0, 1e9>
    gl     = 0.0003  (S/cm2) <0, 1e9>
    el     = -54.3   (mV)
    temp   = 6.3     (degC)
    tshift = 30.7    (degC)
}

ASSIGNED {
    v       (mV)
    celsius (degC)
    ena     (mV)
    ek      (mV)
    ina     (mA/cm2)
    ik      (mA/cm2)
    il      (mA/cm2)
    gna     (S/cm2)
    gk      (S/cm2)
    minf    (1)
    hinf    (1)
    ninf    (1)
    mtau    (ms)
    htau    (ms)
    ntau    (ms)
}

STATE { m h n }

INITIAL {
    rates(v)
    m = minf
    h = hinf
    n = ninf
}

BREAKPOINT {
    SOLVE gating METHOD cnexp
    gna = gnabar * m * m * m * h
    gk = gkbar * n * n * n * n
    ina = gna * (v - ena)
    ik = gk * (v - ek)
    il = gl * (v - el)
}

DERIVATIVE gating {
    rates(v)
    m' = (minf - m) / mtau
    h' = (hinf - h) / htau
    n' = (ninf - n) / ntau
}

UNITSOFF
PROCEDURE rates(v (mV)) {
    LOCAL am, bm, ah, bh, an, bn, phi
    TABLE minf, hinf, ninf, mtau, htau, ntau DEPEND celsius, temp, tshift FROM -100 TO 100 WITH 200

    phi = 3 ^ ((celsius - temp - tshift) / 10)

    : Na activation
    am = 0.1 * efun(-(v + 40), 10)
    bm = 4 * exp(-(v + 65) / 18)
    minf = am / (am + bm)
    mtau = 1 / (phi * (am + bm))

    : Na inactivation
    ah = 0.07 * exp(-(v + 65) / 20)
    bh = 1 / (1 + exp(-(v + 35) / 10))
    hinf = ah / (ah + bh)
    htau = 1 / (phi * (ah + bh))

    : K activation
    an = 0.01 * efun(-(v + 55), 10)
    bn = 0.125 * exp(-(v + 65) / 80)
    ninf = an / (an + bn)
    ntau = 1 / (phi * (an + bn))
}

FUNCTION efun(x, s) {
    : x / (exp(x/s) - 1), with its limit near x = 0 (first-order expansion)
    if (fabs(x / s) < 1e-6) {
        efun = s * (1 - x / s / 2)
    } else {
        efun = x / (exp(x / s) - 1)
    }
}
UNITSON
