"""Check that deliberately broken builds make the test suite fail.

Each mutation breaks hnnfit in one small, plausible way:

``channel_constant``
    the maximal activation rate ``Ra`` of the M-type potassium channel
    (``mod/km.mod``, in the dendrites and soma of both pyramidal cell
    types) is raised by 1%; the mechanisms are compiled afresh;
``connection_rule``
    one of the 16 cell-to-cell rules of the Jones et al. (2009) column
    (L5 basket to L5 pyramidal, GABA-A, in ``hnnfit/network.py``) is dropped;
``demo_solver_start``
    the Bayesian solver the demo fit uses proposes its start point at every
    request (``hnnfit/fit/solvers.py``), so the fit never moves.

For each mutation the script copies the repository's tracked files (as they
are in the working tree) to a temporary folder, applies the mutation to
the copy only, and runs there the tests that should catch it, with a
mechanism cache of its own (``HNNFIT_CACHE``). By default it first runs
the same tests on an unmutated copy: a mutation only counts as caught if
its tests pass without it. It prints a table (mutation, tests run, result
without and with the mutation, caught) and exits with status 1 if any
mutation is not caught::

    python bench/broken_builds.py --list          # the mutations and their tests
    python bench/broken_builds.py                 # all of them (the demo fit is
                                                  # full-size: several minutes)
    python bench/broken_builds.py --only connection_rule --no-baseline

The tests need the project's shared folder: ``$HNNFIT_SHARED`` or
``../shared`` next to this repository (passed on to the copies).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class MutationError(RuntimeError):
    """A mutation's anchor is not found exactly once in the file it changes."""


@dataclass(frozen=True)
class Mutation:
    """One deliberate break: where, what, and which tests should notice.

    Attributes
    ----------
    name : str
        Short identifier (``--only``).
    claim : str
        What the mutation changes, in words.
    path : str
        File it edits, relative to the repository root.
    tests : tuple of str
        pytest arguments (files and ``-k`` selections), run from the root.
    """

    name: str
    claim: str
    path: str
    tests: tuple

    def apply_to_text(self, text):
        """Return ``text`` with the mutation applied (raises MutationError)."""
        return _APPLY[self.name](text, self.path)

    def apply(self, root):
        """Apply the mutation to the tree at ``root`` (a copy), in place."""
        target = Path(root) / self.path
        target.write_text(self.apply_to_text(target.read_text()))


def _replace_once(text, pattern, repl, path):
    found = list(re.finditer(pattern, text, flags=re.MULTILINE))
    if len(found) != 1:
        raise MutationError(f"{path}: expected exactly one match of {pattern!r}, "
                            f"found {len(found)}; update the mutation to the new code")
    m = found[0]
    return text[:m.start()] + repl(m) + text[m.end():]


#: the km channel's maximal activation rate, and how much it is changed
KM_RATE_PATTERN = r"^(\s*Ra\s*=\s*)([0-9.eE+-]+)"
KM_RATE_FACTOR = 1.01
#: the dropped rule of the Jones et al. (2009) column
DROPPED_RULE_PATTERN = (r'^[ \t]*\("L5_basket", "L5_pyramidal", "soma", "gabaa", '
                        r'"gbar_L5Basket_L5Pyr_gabaa",[^\n]*\),[ \t]*\n')
#: appended to the solvers' module: every proposal is the start point
START_POINT_PATCH = '''

# -- deliberately broken build (bench/broken_builds.py): the Bayesian solver
# -- proposes its start point at every request, so a fit never moves
def _start_point_only(self, n=1):
    return [dict(self.x0) for _ in range(n)]


def _start_point_while_pending(self, pending, lie):
    return dict(self.x0)


BayesianSolver.ask = _start_point_only
BayesianSolver.ask_with_pending = _start_point_while_pending
'''


def _scale_km_rate(text, path):
    def repl(m):
        return f"{m.group(1)}{float(m.group(2)) * KM_RATE_FACTOR!r}"
    return _replace_once(text, KM_RATE_PATTERN, repl, path)


def _drop_rule(text, path):
    return _replace_once(text, DROPPED_RULE_PATTERN, lambda m: "", path)


def _start_point_solver(text, path):
    if not re.search(r"^class BayesianSolver\(", text, flags=re.MULTILINE):
        raise MutationError(f"{path}: no class BayesianSolver to break; update the mutation")
    return text.rstrip("\n") + "\n" + START_POINT_PATCH


_APPLY = {
    "channel_constant": _scale_km_rate,
    "connection_rule": _drop_rule,
    "demo_solver_start": _start_point_solver,
}

MUTATIONS = (
    Mutation("channel_constant",
             "mod/km.mod: Ra, the M-type K+ channel's maximal activation rate "
             "(pyramidal cells), x 1.01",
             "mod/km.mod",
             ("tests/test_mechanisms.py", "tests/test_cells.py",
              "-k", "channel_rates_match or traces_match_reference")),
    Mutation("connection_rule",
             "hnnfit/network.py: the L5 basket -> L5 pyramidal GABA-A rule dropped "
             "from the Jones 2009 column",
             "hnnfit/network.py",
             ("tests/test_network.py", "-k", "reference_gid_ranges_and_rules or 38_rules")),
    Mutation("demo_solver_start",
             "hnnfit/fit/solvers.py: the demo's Bayesian solver proposes its start "
             "point every time",
             "hnnfit/fit/solvers.py",
             ("tests/test_cli.py", "-k", "demo_fit")),
)


def mutation(name):
    """The :class:`Mutation` called ``name``."""
    for m in MUTATIONS:
        if m.name == name:
            return m
    raise ValueError(f"mutation must be one of {[m.name for m in MUTATIONS]}, got {name!r}")


def shared_dir():
    """The shared folder the tests read: ``$HNNFIT_SHARED`` or ``../shared``."""
    env = os.environ.get("HNNFIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def tracked_files(repo=REPO):
    """Paths (relative) of the files git tracks in ``repo`` that exist in its work tree."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and (Path(repo) / p).is_file()]


def copy_tree(dest, repo=REPO):
    """Copy the tracked files of ``repo`` (working-tree state) to ``dest``.

    Returns
    -------
    pathlib.Path
        ``dest``, created.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    for rel in tracked_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(repo) / rel, target)
    return dest


def copy_env(root, cache):
    """Environment for running the copy's tests: its own hnnfit and mechanism cache."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(root), HNNFIT_CACHE=str(cache), MPLBACKEND="Agg",
               HNNFIT_SHARED=str(shared_dir().resolve()))
    return env


def run_tests(root, tests, cache, python=sys.executable):
    """Run pytest on ``tests`` in the tree ``root``.

    Returns
    -------
    status : str
        ``'pass'`` (exit status 0), ``'fail: <first failed test> (+N
        more)'`` (1: tests failed) or ``'error (N)'`` for any other pytest exit status
        (nothing collected, usage error, interrupted).
    seconds : float
        Wall time.
    output : str
        The tail of pytest's output.
    """
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=copy_env(root, cache),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    status = {0: "pass", 1: "fail"}.get(proc.returncode, f"error ({proc.returncode})")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [ln.split()[1] for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    if failed:
        names = [f.split("/")[-1] for f in failed]
        status = f"fail: {names[0]}" + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")
    return status, seconds, "\n".join(lines[-15:])


@dataclass
class Outcome:
    mutation: Mutation
    baseline: str          # 'pass', 'fail', 'error (N)' or 'not run'
    mutated: str
    seconds: float

    @property
    def caught(self):
        return self.mutated.startswith("fail") and self.baseline in ("pass", "not run")


def check(mutations, workdir, baseline=True, verbose=True):
    """Run each mutation's tests on a mutated copy (and on an unmutated one).

    Parameters
    ----------
    mutations : list of Mutation
    workdir : path-like
        Empty folder for the copies and their caches.
    baseline : bool
        Also run each mutation's tests on an unmutated copy first.

    Returns
    -------
    list of Outcome
    """
    workdir = Path(workdir)
    plain = None
    outcomes = []
    for m in mutations:
        base = "not run"
        seconds = 0.0
        if baseline:
            if plain is None:
                plain = copy_tree(workdir / "unmutated")
            base, s, tail = run_tests(plain, m.tests, workdir / "cache" / f"unmutated-{m.name}")
            seconds += s
            if verbose:
                print(f"[{m.name}] unmutated: {base} in {s:.0f} s", file=sys.stderr)
                if base != "pass":
                    print(tail, file=sys.stderr)
        root = copy_tree(workdir / m.name)
        m.apply(root)
        status, s, tail = run_tests(root, m.tests, workdir / "cache" / m.name)
        seconds += s
        if verbose:
            print(f"[{m.name}] mutated: {status} in {s:.0f} s\n{tail}", file=sys.stderr)
        outcomes.append(Outcome(m, base, status, seconds))
    return outcomes


def format_table(outcomes):
    """The markdown table of a list of :class:`Outcome`."""
    lines = ["| mutation | tests run | unmutated | mutated | caught |",
             "| --- | --- | --- | --- | --- |"]
    for o in outcomes:
        tests = shlex.join(o.mutation.tests)
        lines.append(f"| {o.mutation.claim} | `{tests}` | {o.baseline} | {o.mutated} "
                     f"| {'yes' if o.caught else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Check that deliberately broken builds make the tests fail.")
    parser.add_argument("--list", action="store_true",
                        help="print the mutations and the tests each runs, and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        choices=[m.name for m in MUTATIONS], help="run only these mutations")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the tests on an unmutated copy first")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="build the copies in DIR (must not exist) and keep them")
    args = parser.parse_args(argv)
    chosen = [mutation(n) for n in args.only] if args.only else list(MUTATIONS)
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.claim}\n    pytest {shlex.join(m.tests)}")
        return 0
    if args.keep is not None:
        if args.keep.exists():
            parser.error(f"--keep folder must not exist yet, got {args.keep}")
        outcomes = check(chosen, args.keep, baseline=not args.no_baseline)
    else:
        with tempfile.TemporaryDirectory(prefix="hnnfit-broken-") as tmp:
            outcomes = check(chosen, tmp, baseline=not args.no_baseline)
    print(format_table(outcomes))
    missed = [o.mutation.name for o in outcomes if not o.caught]
    if missed:
        print(f"\nNOT caught: {', '.join(missed)}")
        return 1
    print(f"\nall {len(outcomes)} mutations caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
