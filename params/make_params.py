"""Regenerate hnnfit's parameter sets from the published HNN files.

Each output is written by :func:`hnnfit.params.write_params` from the values
:func:`hnnfit.params.read_params` reads in the published file, so the
numbers are the published ones, typed as there (ints stay int).

Usage::

    python params/make_params.py [SHARED_PARAMS_DIR]

``SHARED_PARAMS_DIR`` defaults to ``$HNNFIT_SHARED/params``, else to
``../shared/params`` next to the repository.
"""
import os
import sys
from pathlib import Path

from hnnfit.params import read_params, write_params

HERE = Path(__file__).resolve().parent

#: output file -> published source file
SOURCES = {
    "default.json": "default.json",
    "ERPYes100Trials.json": "ERPYes100Trials.param",
    "ERPNo100Trials.json": "ERPNo100Trials.param",
    "ERPYesSupraT.json": "ERPYesSupraT.param",
    "N20.json": "N20.json",
    "gamma_L5weak_L2weak.json": "gamma_L5weak_L2weak.json",
}


def shared_params_dir():
    env = os.environ.get("HNNFIT_SHARED")
    shared = Path(env) if env else HERE.parents[1] / "shared"
    return shared / "params"


def main(argv):
    source_dir = Path(argv[1]) if len(argv) > 1 else shared_params_dir()
    for out_name, src_name in SOURCES.items():
        params = read_params(source_dir / src_name)
        path = write_params(params, HERE / out_name)
        print(f"{src_name} -> {path.name} ({len(params)} entries)")


if __name__ == "__main__":
    main(sys.argv)
