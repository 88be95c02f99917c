"""A live web page over a folder of studies (``hnnfit dashboard``).

:func:`serve` starts a Bokeh server with two pages:

``/``
    every study file of the folder: state, evaluations against the
    budget, best value, last evaluation, stage; a file that is not a
    readable study is listed with the reason.
``/study?name=<file>``
    one study: the target waveform and the best fit so far, the stage
    windows and weights of a staged fit, the convergence, each parameter
    over the evaluations and the best point within the bounds, the
    evaluations (sortable, filtered by status and stage), the settings
    and machine, and the best point as a parameter file to download
    (``/download?study=<file>``).

Pages poll their files every second and update in place while a fit
runs. Studies are only ever opened read-only
(:mod:`hnnfit.dashboard.data`). BokehJS is served by the server itself, so
the pages work without internet access. Needs the ``dashboard`` extra
(``pip install hnnfit[dashboard]``).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from ..validation import check_int, check_type

__all__ = ["make_server", "serve"]

DEFAULT_PORT = 5006


def _import_bokeh():
    try:
        import bokeh  # noqa: F401
    except ImportError:
        raise ImportError("the dashboard needs Bokeh: pip install 'hnnfit[dashboard]'") \
            from None


def _download_handler():
    from tornado.web import RequestHandler

    from ..exceptions import HnnfitError
    from .data import parameter_file_text, study_path

    class DownloadHandler(RequestHandler):
        """The best point of ``?study=<file>`` as a JSON parameter file."""

        def initialize(self, folder):
            self.folder = folder

        def get(self):
            name = self.get_argument("study", "")
            try:
                text = parameter_file_text(study_path(self.folder, name))
            except (HnnfitError, OSError, ValueError) as err:
                self.set_status(404)
                self.set_header("Content-Type", "text/plain; charset=utf-8")
                self.finish(f"no parameter file for {name!r}: {err}\n")
                return
            stem = Path(name).stem
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{stem}_best.json"')
            self.finish(text)

    return DownloadHandler


def make_server(folder, port=DEFAULT_PORT, host="127.0.0.1", allow_origin=()):
    """A Bokeh server of the dashboard over ``folder`` (not yet started).

    Parameters
    ----------
    folder : str | pathlib.Path
        The folder whose ``*.sqlite`` study files are shown.
    port : int
        TCP port (0: any free port; read it from ``server.port``).
    host : str
        Address to listen on; the default serves this machine only (reach
        a cluster's dashboard through an SSH tunnel).
    allow_origin : sequence of str
        Further ``host[:port]`` names browsers may reach the server by
        (e.g. the local end of a tunnel on another port).

    Returns
    -------
    bokeh.server.server.Server
        Call ``server.start()`` then ``server.io_loop.start()``; stop with
        ``server.stop()``.
    """
    _import_bokeh()
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from ._fits import FitCache
    from ._pages import studies_page, study_page

    folder = Path(check_type(folder, (str, os.PathLike), "folder"))
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing folder, got {str(folder)!r}")
    port = check_int(port, "port", low=0, high=65535)
    check_type(host, str, "host")
    fits = FitCache()
    apps = {
        "/": Application(FunctionHandler(lambda doc: studies_page(doc, folder))),
        "/study": Application(FunctionHandler(lambda doc: study_page(doc, folder, fits))),
    }
    sock = None
    if port == 0:
        # pick the free port first: the allowed websocket origins name it
        sock = socket.socket()
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        sock.close()
    origins = {f"{name}:{port}" for name in ("localhost", "127.0.0.1", host,
                                              socket.gethostname(), socket.getfqdn())}
    origins.update(str(o) for o in allow_origin)
    server = Server(apps, port=port, address=host, allow_websocket_origin=sorted(origins),
                    extra_patterns=[(r"/download", _download_handler(),
                                     {"folder": folder})],
                    num_procs=1)
    server._hnnfit_fits = fits
    return server


def serve(folder="studies", port=DEFAULT_PORT, host="127.0.0.1", allow_origin=(),
          show=False):
    """Serve the dashboard over ``folder`` until interrupted (Ctrl-C).

    Parameters
    ----------
    folder : str | pathlib.Path
        The folder of study files (default ``'studies'``).
    port : int
        TCP port (default 5006).
    host : str
        Address to listen on (default ``'127.0.0.1'``: this machine only).
    allow_origin : sequence of str
        See :func:`make_server`.
    show : bool
        Open the page in this machine's web browser.
    """
    server = make_server(folder, port=port, host=host, allow_origin=allow_origin)
    server.start()
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{server.port}/"
    print(f"hnnfit dashboard of {folder} at {url} (Ctrl-C to stop)", flush=True)
    if show:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        server._hnnfit_fits.close()
