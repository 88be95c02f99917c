"""Two rewrites of NMODL's CoreNEURON translation of hnnfit's mechanisms.

Both run after ``nrnivmodl -coreneuron`` (see ``_compile.py``), only on the
CoreNEURON build; the plain NEURON build stays the bit-exact path. Both are
strict: code is changed only where it has exactly the shape NMODL 9.0
generates (checked piece by piece); anything else is left as generated,
which is slower but correct.

**Branch-free table look-ups.** Five of hnnfit's channels (``hh2``, ``ca``,
``cat``, ``km``, ``ar``) look their rate functions up in a TABLE, as the published model does: the look-up's
linear interpolation is part of the model's numerical behaviour, so it has
to stay. NMODL translates each look-up into a function with early returns
(a NaN guard, one branch per end of the table). Inlined into the state
update loop, that control flow stops the compiler from vectorising the
loop, so every ``exp`` of the channel's ``cnexp`` update runs one compartment
at a time; in a profile of the default model that was about 30% of the
CoreNEURON run time.

:func:`rewrite_table_lookups` replaces the body of each such function by an
equivalent one without branches: the table position is clamped into the
table, both neighbouring entries are always read, and the end-of-table case
is a select. NEURON's ``usetable_<mechanism>`` switch is not kept (see
``TABLE_SWITCHES``). Inside the table the arithmetic is unchanged
(``t[i] + theta * (t[i+1] - t[i])`` with ``i = int(xi)``, ``theta = xi - i``);
below the table ``theta`` is 0 and the result is ``t[0]``; above it the
select returns ``t[N]``, as before. The only case that differs is a NaN
membrane potential, which already makes the whole simulation NaN (and
``-ffast-math``, used for this build, drops such guards anyway).

**Plain sums into a cell's dipole.** ``dipole`` and ``DipoleTip`` add each
node's contribution into its cell's ``DipoleSum`` with a PROTECT statement,
which NMODL turns into ``#pragma omp atomic update`` (and it leaves that
loop without SIMD pragmas). The atomic guards against two threads adding
into one cell at once, which cannot happen here: CoreNEURON runs each
thread's mechanism loops on one OpenMP thread, and hnnfit never splits a
cell between threads, so a cell's nodes and its DipoleSum share a thread.
:func:`drop_sum_atomics` removes the pragma (a compare-and-swap loop per
node per step, about 6% of a run) from the sums in the AFTER-block loops,
which have no SIMD pragmas, and keeps the plain, scalar add; the sum is
bit-identical. A sum inside a SIMD-marked loop, or outside any loop, keeps
its atomic.
"""
import re
from pathlib import Path

# Marker written into rewritten functions; also lets a build be inspected.
MARKER = "/* hnnfit: branch-free table look-up */"

# hoc names of the switches (one per tabled mechanism) that the rewritten
# look-ups ignore; they must stay 1 (NEURON's default) under CoreNEURON.
TABLE_SWITCHES = ("usetable_hh2", "usetable_ca", "usetable_cat", "usetable_km",
                  "usetable_ar")

_IDENT = r"[A-Za-z_]\w*"

# The whole look-up function: signature, usetable switch, index, NaN guard,
# end-of-table branch and the interpolation lines.
_FUNC = re.compile(
    r"(?P<sig>    inline static int (?P<fn>" + _IDENT + r")\(int id, [^)]*?double (?P<arg>_l\w+)\)\s*\{\n)"
    r"(?P<switch>        if \(inst->global->usetable == 0\) \{\n"
    r"            \w+\([^;]*\);\n"
    r"            return 0;\n"
    r"        \}\n)"
    r"(?P<xi>        double xi = inst->global->(?P<mfac>mfac_\w+) \* \((?P=arg) - inst->global->(?P<tmin>tmin_\w+)\);\n)"
    r"        if \(isnan\(xi\)\) \{\n"
    r"(?P<nan>(?:            inst->\w+\[id\] = xi;\n)+)"
    r"            return 0;\n"
    r"        \}\n"
    r"        if \(xi <= 0\. \|\| xi >= (?P<n>\d+)\.\) \{\n"
    r"            int index = \(xi <= 0\.\) \? 0 : (?P=n);\n"
    r"(?P<ends>(?:            inst->\w+\[id\] = inst->global->t_\w+\[index\];\n)+)"
    r"            return 0;\n"
    r"        \}\n"
    r"        int i = int\(xi\);\n"
    r"        double theta = xi - double\(i\);\n"
    r"(?P<interp>(?:        inst->\w+\[id\] = inst->global->t_\w+\[i\] \+ theta\*\(inst->global->t_\w+\[i\+1\]-inst->global->t_\w+\[i\]\);\n)+)"
    r"        return 0;\n"
    r"    \}\n"
)

_INTERP_LINE = re.compile(
    r"        inst->(\w+)\[id\] = inst->global->t_(\w+)\[i\] \+ theta\*\("
    r"inst->global->t_(\w+)\[i\+1\]-inst->global->t_(\w+)\[i\]\);")
_NAN_LINE = re.compile(r"            inst->(\w+)\[id\] = xi;")
_END_LINE = re.compile(r"            inst->(\w+)\[id\] = inst->global->t_(\w+)\[index\];")


def _rewrite_one(match):
    """Branch-free body for one matched look-up, or None if it is not the
    plain one-table-per-variable shape expected."""
    n = int(match["n"])
    if n < 1:
        return None
    names = []
    for line in match["interp"].splitlines():
        m = _INTERP_LINE.fullmatch(line)
        if m is None or len(set(m.groups())) != 1:
            return None
        names.append(m.group(1))
    nan_names = [_NAN_LINE.fullmatch(ln).group(1) for ln in match["nan"].splitlines()]
    end_names = []
    for line in match["ends"].splitlines():
        m = _END_LINE.fullmatch(line)
        if m.group(1) != m.group(2):
            return None
        end_names.append(m.group(1))
    if not (names == nan_names == end_names) or len(set(names)) != len(names):
        return None
    # The usetable switch is dropped: its call to the un-tabled rate function
    # (control flow inside) would again keep the loop scalar, and GCC cannot
    # hoist the switch out of the loop because the stores may alias it. The
    # simulator refuses CoreNEURON runs with a table switched off instead
    # (TABLE_SWITCHES).
    out = [match["sig"], match["xi"],
           f"        {MARKER}\n",
           "        double xc = xi > 0. ? xi : 0.;\n",
           f"        xc = xc < {n}. ? xc : {n}.;\n",
           "        int i = int(xc);\n",
           f"        i = i < {n - 1} ? i : {n - 1};\n",
           "        double theta = xc - double(i);\n",
           f"        bool top = xi >= {n}.;\n"]
    for name in names:
        out.append(
            f"        {{ double a = inst->global->t_{name}[i], b = inst->global->t_{name}[i+1];\n"
            f"          inst->{name}[id] = top ? b : a + theta*(b-a); }}\n")
    out.append("        return 0;\n    }\n")
    return "".join(out)


def rewrite_table_lookups(text):
    """Make the TABLE look-ups of one NMODL-generated C++ file branch-free.

    Parameters
    ----------
    text : str
        Source generated by NMODL for CoreNEURON.

    Returns
    -------
    text : str
        The source with every recognised look-up function rewritten.
    rewritten : list of str
        Names of the rewritten functions (empty if none was recognised).
    """
    rewritten = []

    def replace(match):
        new = _rewrite_one(match)
        if new is None:
            return match.group(0)
        rewritten.append(match["fn"])
        return new

    return _FUNC.sub(replace, text), rewritten


# ``#pragma omp atomic update`` followed by a sum into the DipoleSum's q
_SUM_ATOMIC = re.compile(
    r"^( *)#pragma omp atomic update\n"
    r"(?P<sum>\1inst->qsum\[(?P<idx>[^\n]+?)\] = inst->qsum\[(?P=idx)\] \+ inst->Q\[id\];\n)",
    re.MULTILINE)

# mechanisms whose PROTECT sums :func:`drop_sum_atomics` may make plain
SUM_MECHANISMS = ("dipole", "DipoleTip")


def drop_sum_atomics(text):
    """Remove the atomic pragma from the dipole mechanisms' sums into ``qsum``.

    Parameters
    ----------
    text : str
        Source generated by NMODL for CoreNEURON (``dipole`` or ``DipoleTip``).

    Returns
    -------
    text : str
        The source without those pragmas.
    n : int
        Number of sums changed.
    """
    count = 0

    def replace(match):
        nonlocal count
        # a sum inside a loop NMODL marked for SIMD must keep its atomic:
        # lanes of one vector may add into the same cell. Sums outside a
        # loop (a PROCEDURE's own copy, which loops may call) keep it too.
        loop = text.rfind("for (int id = 0;", 0, match.start())
        func = text.rfind("\n    }\n", 0, match.start())
        if loop < 0 or loop < func:
            return match.group(0)
        before = text[:loop].rstrip(" ").splitlines()[-2:]
        if any("#pragma omp simd" in ln or "#pragma ivdep" in ln for ln in before):
            return match.group(0)
        count += 1
        return match["sum"]

    return _SUM_ATOMIC.sub(replace, text), count


def rewrite_build(generated_dir, mechanisms):
    """Apply both rewrites to the named mechanisms' generated sources.

    Parameters
    ----------
    generated_dir : path-like
        Folder of NMODL's CoreNEURON output (``<arch>/corenrn/mod2c``).
    mechanisms : iterable of str
        Mechanism file stems (``hh2`` for ``hh2.mod``); NEURON's own
        built-in mechanisms in that folder are left alone.

    Returns
    -------
    report : dict
        ``{stem: [what changed]}`` for the files that changed: names of the
        rewritten look-up functions, ``'qsum sums (n)'`` for plain sums.
    """
    report = {}
    folder = Path(generated_dir)
    for stem in mechanisms:
        path = folder / f"{stem}.cpp"
        if not path.is_file():
            continue
        text = path.read_text()
        new, names = rewrite_table_lookups(text)
        if stem in SUM_MECHANISMS:
            new, n = drop_sum_atomics(new)
            if n:
                names = names + [f"qsum sums ({n})"]
        if names:
            path.write_text(new)
            report[stem] = names
    return report
