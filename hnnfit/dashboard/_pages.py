"""The dashboard's two Bokeh documents: the studies table and one study.

Each browser tab is a Bokeh session; a periodic callback of the session
polls the files it shows (two ``stat`` calls a second) and re-reads them
only when they changed, then updates the plots' data sources in place:
the page changes without a reload.
"""
from __future__ import annotations

import html
import json
import math
import sqlite3
import time
from pathlib import Path

import numpy as np
from bokeh.layouts import column, gridplot, row
from bokeh.models import (BoxAnnotation, ColumnDataSource, DataTable, Div,
                          HTMLTemplateFormatter, Label, NumberFormatter, Range1d, Select,
                          Span, TableColumn)
from bokeh.plotting import figure

from ..exceptions import HnnfitError
from .data import fingerprint, read_folder, read_study, study_path

# how often a page looks at its files (ms), and reads them even if unchanged (s)
POLL_MS = 1000
REREAD_S = 10.0
# Bokeh draws each widget in a shadow root of its own, where a page's style
# sheet does not reach: the markup carries its styles inline
ERROR = 'data-hnnfit="error" style="color: #a00; font-weight: bold;"'
KV_CELL = 'style="padding: 1px 12px 1px 0; vertical-align: top;"'
PRE = 'style="margin: 0; white-space: pre-wrap;"'
STAGE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                "#17becf", "#bcbd22")


def _nan(values):
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _header(title, text=""):
    return Div(text=f"<h2>{html.escape(title)}</h2>{text}",
               sizing_mode="stretch_width")


# --------------------------------------------------------------- studies
_STUDY_COLUMNS = (
    ("study", "Study", 220), ("state", "State", 110), ("stage", "Stage", 110),
    ("progress", "Evaluations", 90), ("best", "Best value", 100),
    ("last_utc", "Last evaluation (UTC)", 160), ("solver", "Solver", 80),
    ("description", "Description / error", 420),
)


def _folder_fingerprint(folder):
    return tuple((p.name, fingerprint(p)) for p in sorted(Path(folder).glob("*.sqlite")))


def _studies_data(folder):
    rows = read_folder(folder)
    data = {key: [] for key, _, _ in _STUDY_COLUMNS}
    data["ok"] = []
    for rec in rows:
        for key, _, _ in _STUDY_COLUMNS:
            data[key].append(str(rec.get(key) or ""))
        data["ok"].append(bool(rec["ok"]))
        if not rec["ok"]:
            data["description"][-1] = rec["error"]
    return data


def _table_height(n_rows):
    """Pixels showing ``n_rows`` rows and the header, up to a scrolling maximum."""
    return min(600, 30 + 25 * max(n_rows, 1))


def studies_page(doc, folder):
    """Fill ``doc`` with the table of the studies of ``folder``."""
    folder = Path(folder)
    problem = ""
    try:
        data = _studies_data(folder)
    except (OSError, ValueError, sqlite3.Error) as err:   # e.g. the folder is gone
        data = {key: [] for key, _, _ in _STUDY_COLUMNS}
        data["ok"] = []
        problem = f"<p {ERROR}>{html.escape(str(err))}</p>"
    source = ColumnDataSource(data, name="studies")
    link = HTMLTemplateFormatter(template=(
        '<% if (ok) { %><a href="study?name=<%= encodeURIComponent(value) %>">'
        '<%= value %></a><% } else { %><span ' + ERROR + '><%= value %></span>'
        '<% } %>'))
    flagged = HTMLTemplateFormatter(template=(
        '<% if (ok) { %><%= value %><% } else { %>'
        '<span ' + ERROR + '><%= value %></span><% } %>'))
    columns = []
    for key, title, width in _STUDY_COLUMNS:
        fmt = link if key == "study" else flagged if key in ("state", "description") else None
        kwargs = {"formatter": fmt} if fmt is not None else {}
        columns.append(TableColumn(field=key, title=title, width=width, **kwargs))
    table = DataTable(source=source, columns=columns, index_position=None,
                      sizing_mode="stretch_width", height=_table_height(len(source.data["ok"])),
                      name="studies_table")
    intro = (f"<p>Study files (*.sqlite) of <code>{html.escape(str(folder))}</code>; "
             "updated as fits record evaluations. Click a study to see it.</p>")
    note = Div(text=intro + problem, sizing_mode="stretch_width")
    doc.add_root(column(_header("hnnfit studies"), note, table, sizing_mode="stretch_width"))
    doc.title = "hnnfit studies"
    last = {"fp": _folder_fingerprint(folder), "time": time.monotonic()}

    def poll():
        try:
            fp = _folder_fingerprint(folder)
        except OSError:
            return
        # a driver that died leaves its file as it was: read again now and
        # then to see its state change
        if fp == last["fp"] and time.monotonic() - last["time"] < REREAD_S:
            return
        last["fp"], last["time"] = fp, time.monotonic()
        try:
            source.data = _studies_data(folder)
            table.height = _table_height(len(source.data["ok"]))
            note.text = intro
        except (OSError, ValueError, sqlite3.Error) as err:   # e.g. the folder is gone
            note.text = intro + f'<p {ERROR}>{html.escape(str(err))}</p>'

    doc.add_periodic_callback(poll, POLL_MS)


# ----------------------------------------------------------------- study
def _table_html(pairs):
    cells = []
    for key, value in pairs:
        if isinstance(value, (dict, list)):
            value = f"<pre {PRE}>{html.escape(json.dumps(value, indent=1, sort_keys=True))}</pre>"
        else:
            value = html.escape("" if value is None else str(value))
        cells.append(f"<tr><td {KV_CELL}><b>{html.escape(str(key))}</b></td>"
                     f"<td {KV_CELL}>{value}</td></tr>")
    return f'<table>{"".join(cells)}</table>'


def _summary_html(info):
    rec = info["record"]
    best = info["best"]
    progress = f"{rec['evaluations']}" + ("" if rec["budget"] is None else f"/{rec['budget']}")
    parts = [f"<b>state</b> {html.escape(str(rec['state']))}",
             f"<b>evaluations</b> {progress}"]
    if rec.get("stage"):
        parts.append(f"<b>stage</b> {html.escape(rec['stage'])}")
    if best is not None:
        parts.append(f"<b>best</b> {best['value']:.6g} (evaluation {best['id']}"
                     + (f", stage {html.escape(best['stage'])}" if best["stage"] else "")
                     + ")")
    if rec.get("failed"):
        parts.append(f"<b>failed</b> {rec['failed']}")
    link = ""
    if info["point"] is not None:
        link = (f' &middot; <a href="download?study={html.escape(info["name"])}" '
                f'download>download the best point as a parameter file</a>')
    return ('<p><a href="./">&larr; all studies</a></p><p>' + " &middot; ".join(parts)
            + link + "</p>")


def _settings_html(info):
    s = info["settings"]
    pairs = [("description", s["description"]), ("created (UTC)", s["created"]),
             ("hnnfit version", s["hnnfit_version"]), ("budget", s["budget"]),
             ("objective", s["objective"]), ("solver", s["solver"])]
    out = "<h3>Settings</h3>" + _table_html(pairs)
    out += "<h3>Machine</h3>" + (_table_html(sorted(info["machine"].items()))
                                 if isinstance(info["machine"], dict)
                                 else "<p>not recorded</p>")
    return out


class StudyPage:
    """The models of one study's page and how to refresh them from a read."""

    def __init__(self, doc, path, fits):
        self.doc = doc
        self.path = Path(path)
        self.fits = fits
        self.fp = fingerprint(self.path)
        self.info = read_study(self.path)
        self.read_at = time.monotonic()
        self.fit_key = None
        info = self.info
        self.title = _header(f"Study {info['name']}")
        self.summary = Div(text=_summary_html(info), sizing_mode="stretch_width",
                           name="summary")
        self.status = Div(text="", name="status", sizing_mode="stretch_width")
        self._build_waveform()
        self._build_convergence()
        self._build_params()
        self._build_table()
        self.settings = Div(text=_settings_html(info), sizing_mode="stretch_width",
                            name="settings")
        self.refresh(info)
        parts = [self.title, self.summary, self.status, self.wave]
        if self.weights is not None:
            parts.append(self.weights)
        parts += [self.conv, Div(text="<h3>Parameters</h3>"), self.point_fig,
                  self.param_grid, Div(text="<h3>Evaluations</h3>"),
                  row(self.state_select, self.stage_select), self.table, self.settings]
        doc.add_root(column(*parts, sizing_mode="stretch_width"))
        doc.title = f"hnnfit: {info['name']}"

    # -- construction ------------------------------------------------------
    def _build_waveform(self):
        info = self.info
        times = np.asarray(info["times"])
        self.target_src = ColumnDataSource({"t": times, "y": np.asarray(info["target"])},
                                           name="target_source")
        self.fit_src = ColumnDataSource({"t": [], "y": []}, name="fit_source")
        p = figure(height=330, sizing_mode="stretch_width", title="Target and best fit",
                   x_axis_label="Time (ms)", y_axis_label="Dipole (nAm)", name="waveform",
                   tools="pan,box_zoom,wheel_zoom,reset,save")
        self.weights = None
        if info["stages"]:
            w = figure(height=170, sizing_mode="stretch_width", x_range=p.x_range,
                       y_range=Range1d(0, 1.05), x_axis_label="Time (ms)",
                       title="Stage windows (shaded above) and weights; the final stage "
                       "weighs every time point alike", y_axis_label="weight", tools="")
            for i, st in enumerate(info["stages"]):
                if st["name"] == "final":
                    continue
                color = STAGE_COLORS[i % len(STAGE_COLORS)]
                p.add_layout(BoxAnnotation(left=st["t_start"], right=st["t_end"],
                                           fill_color=color, fill_alpha=0.08))
                p.add_layout(Label(x=st["t_start"], y=5, y_units="screen",
                                   text=st["name"], text_font_size="8pt", text_color=color))
                w.varea(x=times, y1=0, y2=np.asarray(st["weights"]), fill_color=color,
                        fill_alpha=0.3, legend_label=st["name"])
            w.legend.location = "top_left"
            w.legend.orientation = "horizontal"
            w.legend.label_text_font_size = "8pt"
            self.weights = w
        p.line("t", "y", source=self.target_src, color="black", line_width=2,
               legend_label="target")
        p.line("t", "y", source=self.fit_src, color="#1f77b4", line_width=2,
               legend_label="best fit")
        p.legend.location = "top_left"
        self.wave = p

    def _build_convergence(self):
        self.conv_src = ColumnDataSource({"n": [], "value": [], "best": []},
                                         name="convergence_source")
        self.failed_src = ColumnDataSource({"n": [], "y": []})
        p = figure(height=280, sizing_mode="stretch_width", title="Convergence",
                   x_axis_label="Evaluation", y_axis_label="Objective value",
                   name="convergence", tools="pan,box_zoom,wheel_zoom,reset,save")
        p.scatter("n", "value", source=self.conv_src, size=4, color="gray",
                  legend_label="evaluation")
        p.step("n", "best", source=self.conv_src, mode="after", color="#1f77b4",
               line_width=2, legend_label="best so far")
        p.scatter("n", "y", source=self.failed_src, marker="x", size=8, color="#d62728",
                  legend_label="failed")
        p.legend.location = "top_right"
        self.stage_marks = []
        self.conv = p

    def _build_params(self):
        info = self.info
        self.param_src = ColumnDataSource({"n": []}, name="params_source")
        figs = []
        self.best_spans = {}
        for spec in info["space"]:
            pad = 0.05 * (spec["high"] - spec["low"]) if not spec["log"] else 0.0
            kw = {"y_axis_type": "log"} if spec["log"] else {}
            f = figure(height=150, width=300, title=spec["name"], tools="", **kw,
                       y_range=Range1d(spec["low"] - pad, spec["high"] + pad))
            f.title.text_font_size = "8pt"
            for bound in (spec["low"], spec["high"]):
                f.add_layout(Span(location=bound, dimension="width", line_color="gray",
                                  line_dash="dotted"))
            span = Span(location=spec["low"], dimension="width", line_color="#2ca02c",
                        line_width=2, visible=False)
            f.add_layout(span)
            self.best_spans[spec["name"]] = span
            f.scatter("n", spec["name"], source=self.param_src, size=3, color="#1f77b4")
            figs.append(f)
        self.param_grid = gridplot(figs, ncols=4, toolbar_location=None)
        names = [s["name"] for s in info["space"]]
        self.point_src = ColumnDataSource({"name": names, "unit": [math.nan] * len(names),
                                           "text": [""] * len(names)}, name="point_source")
        p = figure(height=max(120, 22 * len(names) + 60), sizing_mode="stretch_width",
                   y_range=list(reversed(names)), x_range=Range1d(-0.02, 1.02),
                   title="Best point within the bounds (0 = low bound, 1 = high bound)",
                   tools="", name="best_point")
        p.hbar(y="name", right="unit", height=0.6, source=self.point_src, color="#2ca02c")
        p.text(x=0.01, y="name", text="text", source=self.point_src, text_font_size="8pt",
               text_baseline="middle")
        self.point_fig = p

    def _build_table(self):
        cols = [("id", "id", 50), ("n", "#", 50), ("stage", "stage", 90),
                ("state", "status", 80), ("value", "value", 90),
                ("best_so_far", "best so far", 90), ("scale", "scale", 70),
                ("sim_seconds", "time (s)", 70), ("end_utc", "end (UTC)", 140)]
        cols += [(s["name"], s["name"], 110) for s in self.info["space"]]
        cols += [("error", "error", 300)]
        numbers = {"value", "best_so_far", "scale", "sim_seconds"} | {
            s["name"] for s in self.info["space"]}
        self.table_src = ColumnDataSource({c[0]: [] for c in cols}, name="table_source")
        columns = [TableColumn(field=k, title=t, width=w,
                               **({"formatter": NumberFormatter(format="0.[0000]")}
                                  if k in numbers else {}))
                   for k, t, w in cols]
        self.table = DataTable(source=self.table_src, columns=columns, height=360,
                               sizing_mode="stretch_width", sortable=True,
                               index_position=None, name="evaluations")
        self.state_select = Select(title="Status", value="all",
                                   options=["all", "complete", "failed", "running",
                                            "abandoned"], width=160)
        self.stage_select = Select(title="Stage", value="all", options=["all"], width=200)
        for sel in (self.state_select, self.stage_select):
            sel.on_change("value", lambda attr, old, new: self._fill_table())

    # -- updates -----------------------------------------------------------
    def _fill_table(self):
        info = self.info
        ev = info["evaluations"]
        keep = [i for i in range(len(ev["id"]))
                if self.state_select.value in ("all", ev["state"][i])
                and self.stage_select.value in ("all", ev["stage"][i])]
        data = {}
        for key in ("id", "stage", "state", "end_utc", "error"):
            data[key] = [ev[key][i] for i in keep]
        data["n"] = [("" if ev["n"][i] is None else ev["n"][i]) for i in keep]
        for key in ("value", "best_so_far", "scale", "sim_seconds"):
            data[key] = _nan([ev[key][i] for i in keep])
        for name, values in info["params"].items():
            data[name] = _nan([values[i] for i in keep])
        self.table_src.data = data

    def refresh(self, info):
        """Show ``info`` (a :func:`read_study` result)."""
        self.info = info
        ev = info["evaluations"]
        n = _nan(ev["n"])
        finished = ~np.isnan(n)
        value = _nan(ev["value"])
        self.conv_src.data = {"n": n[finished], "value": value[finished],
                              "best": _nan(ev["best_so_far"])[finished]}
        failed = np.array([s == "failed" for s in ev["state"]], dtype=bool)
        y0 = np.nanmax(value) if np.isfinite(value).any() else 0.0
        self.failed_src.data = {"n": n[failed], "y": np.full(int(failed.sum()), y0)}
        # stage boundaries: first finished evaluation of each stage
        for span, label in self.stage_marks:
            span.visible = label.visible = False
        first = {}
        for i, stage in enumerate(ev["stage"]):
            if stage and finished[i] and stage not in first:
                first[stage] = float(n[i])
        for k, (stage, x) in enumerate(first.items()):
            if k == len(self.stage_marks):
                span = Span(location=x, dimension="height", line_color="#999",
                            line_dash="dashed")
                label = Label(x=x, y=5, y_units="screen", text="", text_font_size="8pt")
                self.conv.add_layout(span)
                self.conv.add_layout(label)
                self.stage_marks.append((span, label))
            span, label = self.stage_marks[k]
            span.location, label.x, label.text = x, x, f" {stage}"
            span.visible = label.visible = True
        params = {"n": n[finished]}
        for name, values in info["params"].items():
            params[name] = _nan(values)[finished]
        self.param_src.data = params
        point = info["point"]
        units, texts = [], []
        for spec in info["space"]:
            v = None if point is None else point.get(spec["name"])
            span = self.best_spans[spec["name"]]
            if v is None:
                units.append(math.nan)
                texts.append("")
                span.visible = False
                continue
            lo, hi = spec["low"], spec["high"]
            if spec["log"]:
                u = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
            else:
                u = (v - lo) / (hi - lo) if hi > lo else 0.5
            units.append(u)
            texts.append(f"{spec['name']} = {v:.4g}")
            span.location, span.visible = float(v), True
        self.point_src.data = {"name": [s["name"] for s in info["space"]],
                               "unit": units, "text": texts}
        stages = sorted({s for s in ev["stage"]})
        self.stage_select.options = ["all"] + stages
        self._fill_table()
        self.summary.text = _summary_html(info)
        self._update_fit()

    def _update_fit(self):
        """Draw the best fit: its stored waveform, else a simulation of it."""
        best = self.info["best"]
        if best is None:
            self.fit_src.data = {"t": [], "y": []}
            self.fit_key = None
            self.status.text = "<p>No complete evaluation yet: the target is shown.</p>"
            return
        key = (str(self.path), best["id"])
        if key == self.fit_key:
            return
        dipole = best["dipole"]
        if dipole is None:
            # the full point: for a staged fit, every stage's best carried forward
            state, result = self.fits.get(self.path, best["id"], self.info["point"])
            if state == "pending":
                self.status.text = "<p>Simulating the best point to draw its waveform...</p>"
                return
            if state == "failed":
                self.status.text = (f'<p {ERROR}>The best fit could not be drawn: '
                                    f'{html.escape(result)}</p>')
                self.fit_key = key
                return
            dipole = result
        times = np.asarray(self.info["times"])[:len(dipole)]
        self.fit_src.data = {"t": times, "y": np.asarray(dipole, dtype=float)[:len(times)]}
        self.fit_key = key
        self.status.text = ""

    def poll(self):
        """Re-read the study if its file changed; pick up a finished simulation."""
        fp = fingerprint(self.path)
        if fp is None:
            self.status.text = (f'<p {ERROR}>The study file is gone; the last '
                                'state read is shown.</p>')
            self.fp = None
            return
        if fp == self.fp and time.monotonic() - self.read_at < REREAD_S:
            self._update_fit()
            return
        try:
            info = read_study(self.path)
        except Exception as err:   # whatever a damaged file raises, keep serving
            if not isinstance(err, (HnnfitError, OSError, ValueError, sqlite3.Error)):
                err = f"{type(err).__name__}: {err}"
            self.status.text = (f'<p {ERROR}>{html.escape(str(err))}; the last '
                                f'state read is shown.</p>')
            return
        unchanged = fp == self.fp and info["record"] == self.info["record"]
        self.fp, self.read_at = fp, time.monotonic()
        if unchanged:
            return
        self.status.text = ""
        self.refresh(info)


def study_page(doc, folder, fits):
    """Fill ``doc`` with the page of the study named by the ``name`` argument."""
    args = doc.session_context.request.arguments if doc.session_context else {}
    name = (args.get("name") or [b""])[0]
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    try:
        path = study_path(folder, name)
        page = StudyPage(doc, path, fits)
    except (HnnfitError, OSError, ValueError, KeyError, sqlite3.Error) as err:
        doc.add_root(column(_header("hnnfit study"), Div(
            text=f'<p><a href="./">&larr; all studies</a></p>'
                 f'<p {ERROR}>{html.escape(str(err))}</p>')))
        doc.title = "hnnfit: not a study"
        return
    doc.add_periodic_callback(page.poll, POLL_MS)
