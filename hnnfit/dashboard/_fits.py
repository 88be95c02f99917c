"""Simulate best points in the background, once each.

A study whose objective does not store each evaluation's waveform still
gets its best fit drawn: the page asks for it and shows the target at
once; one worker process simulates the point (so the model never runs in
the server's thread) and the page picks the result up when it polls.
"""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

from .data import simulate_point


class FitCache:
    """Processed dipoles of best points, by (study file, evaluation id)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._futures = {}
        self._pool = None

    def _executor(self):
        if self._pool is None:
            # spawn: a fresh interpreter, never a fork of the server's threads
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def get(self, path, row_id, params):
        """``('ready', dipole)``, ``('pending', None)`` or ``('failed', message)``.

        The first call for a key starts its simulation.
        """
        key = (str(path), int(row_id))
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = self._executor().submit(simulate_point, str(path), dict(params))
                self._futures[key] = future
        if not future.done():
            return "pending", None
        err = future.exception()
        if err is not None:
            return "failed", f"{type(err).__name__}: {err}"
        return "ready", future.result()

    def close(self):
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
