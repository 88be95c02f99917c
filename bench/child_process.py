"""Running a bench script's work in a child interpreter and reading its result.

Baselines (hnn-core in its own environment) and cold runs need a fresh
process. The child prints its result as one JSON line on stdout, the last
line starting with ``{``; anything else it prints is ignored.
"""
from __future__ import annotations

import json
import os
import subprocess


def check_interpreter(python, flag="--baseline-python"):
    """Exit with a clear message unless ``python`` is a file."""
    if not os.path.isfile(python):
        raise SystemExit(f"{flag} must be an interpreter, got {python!r} (no such file)")


def run_json_child(cmd, what="the baseline run"):
    """Run ``cmd``; the dict of its last JSON line.

    A child that fails, or prints no JSON line, raises RuntimeError naming
    ``what`` and the command, with the end of its stderr.
    """
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({' '.join(map(str, cmd))}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1])
