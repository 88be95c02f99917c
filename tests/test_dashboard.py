"""hnnfit dashboard: what it reads from study files, and its pages in a real browser.

The browser test runs a small fit (3x3 network, 40 ms) in a subprocess,
serves the folder with ``hnnfit dashboard`` in another and drives Debian's
headless Chromium through Selenium: the studies table, the study page's
waveform data (read from BokehJS's document, not from pixels), a live
update without reload, and that no other file of the folder changed. It
saves the screenshots the documentation shows.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from hnnfit.dashboard.data import (fingerprint, parameter_file_text, read_folder,
                                   read_study, simulate_point, study_path)
from hnnfit.fit.storage import StudyStorage

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "_static" / "dashboard"

# A small Bayesian fit of one evoked drive; the target is the model's own
# dipole at another point, so the fitted waveform resembles it.
FIT_SCRIPT = textwrap.dedent("""
    import sys

    import numpy as np

    from hnnfit.fit import DipoleObjective, Parameter, ParameterSpace, Study, Target
    from hnnfit.network import jones_2009_model

    path, n_evals = sys.argv[1], int(sys.argv[2])
    staged = sys.argv[3:] == ["staged"]
    net = jones_2009_model(mesh_shape=(3, 3))
    ampa = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.2,
            "L5_pyramidal": 0.02}
    net.add_evoked_drive("evprox1", mu=15.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa=ampa, weights_nmda={k: 0.0 for k in ampa},
                         synaptic_delays={"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                          "L5_basket": 1.0, "L5_pyramidal": 1.0},
                         event_seed=4)
    params = [Parameter("evprox1.mu", 8.0, 25.0),
              Parameter("evprox1.ampa.L5_pyramidal", 0.005, 0.06, log=True)]
    if staged:
        net.add_evoked_drive("evdist1", mu=28.0, sigma=2.0, numspikes=1, location="distal",
                             weights_ampa={"L2_basket": 0.01, "L2_pyramidal": 0.02,
                                           "L5_pyramidal": 0.01},
                             synaptic_delays=0.1, event_seed=11)
        params.append(Parameter("evdist1.mu", 20.0, 35.0))
    space = ParameterSpace(params)
    settings = {"smooth_window": 5.0, "scale": 3000.0}
    times = np.arange(0.0, 40.0 + 1e-9, 0.5)
    truth = {"evprox1.mu": 18.0, "evprox1.ampa.L5_pyramidal": 0.03, "evdist1.mu": 30.0}
    truth = {k: v for k, v in truth.items() if k in space.names}
    values = DipoleObjective(net, Target(times, np.zeros_like(times)), space,
                             **settings)(truth)["dipole"]
    values = values + np.random.RandomState(0).normal(0.0, 0.03 * np.ptp(values),
                                                      len(values))
    target = Target(times, values, source="<synthetic>")
    study = Study.create(path, net, target, space, objective=settings, solver="bayesian",
                         solver_options={"n_initial_points": 3, "acq_optimizer": "sampling",
                                         "n_points": 500},
                         description="small fit of one evoked drive",
                         stages="evoked" if staged else None)
    study.optimize(n_evals, progress=False)
    study.close()
""")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder with two finished studies (one staged), a damaged file and a
    half-created (empty) one."""
    out = tmp_path_factory.mktemp("studies")
    script = out.parent / "fit_script.py"
    script.write_text(FIT_SCRIPT)
    subprocess.run([sys.executable, str(script), str(out / "done.sqlite"), "4"],
                   check=True, env=_env(), timeout=300)
    subprocess.run([sys.executable, str(script), str(out / "staged.sqlite"), "9", "staged"],
                   check=True, env=_env(), timeout=300)
    (out / "broken.sqlite").write_bytes(b"this is not an SQLite database\n" * 64)
    (out / "empty.sqlite").write_bytes(b"")
    return out


# ----------------------------------------------------------- data, no browser
def test_read_folder_lists_studies_and_files_that_are_not(folder):
    rows = {r["study"]: r for r in read_folder(folder)}
    assert sorted(rows) == ["broken.sqlite", "done.sqlite", "empty.sqlite", "staged.sqlite"]
    done = rows["done.sqlite"]
    assert done["ok"] and done["state"] == "done"
    assert done["progress"] == "4/4"
    with StudyStorage.load(folder / "done.sqlite", readonly=True) as storage:
        assert done["best"] == f"{storage.best().value:.6g}"
        assert done["last_utc"] == time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.gmtime(storage.last_end_time()))
    for name in ("broken.sqlite", "empty.sqlite"):
        assert not rows[name]["ok"]
        assert rows[name]["state"] == "not a study"
        assert name in rows[name]["error"]
    assert "is not an hnnfit study file" in rows["broken.sqlite"]["error"]


def test_read_study_follows_the_stored_evaluations(folder):
    info = read_study(folder / "done.sqlite")
    with StudyStorage.load(folder / "done.sqlite", readonly=True) as storage:
        rows = storage.rows()
        best = storage.best()
        target = storage.target
    ev = info["evaluations"]
    assert ev["id"] == [r.id for r in rows]
    assert ev["value"] == [r.value for r in rows]
    assert ev["n"] == list(range(1, len(rows) + 1))
    assert ev["best_so_far"] == list(np.minimum.accumulate([r.value for r in rows]))
    assert info["params"]["evprox1.mu"] == [r.params["evprox1.mu"] for r in rows]
    assert info["times"] == list(target.times)
    assert np.allclose(info["target"], target.values)
    assert info["best"]["id"] == best.id and info["best"]["value"] == best.value
    assert info["point"] == best.params
    assert np.allclose(info["best"]["dipole"], best.info["dipole"])
    assert len(info["best"]["dipole"]) == len(info["times"])
    assert [s["name"] for s in info["space"]] == ["evprox1.mu", "evprox1.ampa.L5_pyramidal"]
    assert info["space"][1]["log"] and not info["space"][0]["log"]
    assert info["stages"] is None
    assert info["settings"]["budget"]["n_evals"] == 4
    assert info["settings"]["solver"]["name"] == "bayesian"
    assert info["settings"]["description"] == "small fit of one evoked drive"
    assert isinstance(info["machine"], dict) and info["machine"]


def test_a_simulated_best_point_matches_its_stored_waveform(folder):
    # the fallback for studies whose evaluations store no waveform
    info = read_study(folder / "done.sqlite")
    dipole = simulate_point(folder / "done.sqlite", info["best"]["params"])
    assert np.allclose(dipole, info["best"]["dipole"], rtol=1e-9, atol=1e-9)


def test_fit_cache_simulates_a_best_point_once_in_the_background(folder):
    from hnnfit.dashboard._fits import FitCache

    info = read_study(folder / "done.sqlite")
    cache = FitCache()
    try:
        first = cache.get(folder / "done.sqlite", info["best"]["id"], info["point"])
        assert first[0] in ("pending", "ready")
        state, dipole = _wait(lambda: (lambda r: r if r[0] != "pending" else None)(
            cache.get(folder / "done.sqlite", info["best"]["id"], info["point"])),
            120, "the background simulation")
        assert state == "ready"
        assert np.allclose(dipole, info["best"]["dipole"], rtol=1e-9, atol=1e-9)
        assert len(cache._futures) == 1
        state, message = _wait(lambda: (lambda r: r if r[0] != "pending" else None)(
            cache.get(folder / "done.sqlite", -1, {"evprox1.mu": 99.0})),
            120, "the failing simulation")
        assert state == "failed" and "evprox1" in message
    finally:
        cache.close()


def test_parameter_file_holds_the_best_point(folder):
    info = read_study(folder / "done.sqlite")
    flat = json.loads(parameter_file_text(folder / "done.sqlite"))
    assert flat["t_evprox_1"] == info["point"]["evprox1.mu"]
    assert flat["gbar_evprox_1_L5Pyr_ampa"] == info["point"]["evprox1.ampa.L5_pyramidal"]


def test_reading_changes_no_file(folder):
    before = {p.name: _sha256(p) for p in folder.iterdir()}
    read_folder(folder)
    read_study(folder / "done.sqlite")
    parameter_file_text(folder / "done.sqlite")
    assert {p.name: _sha256(p) for p in folder.iterdir()} == before


def test_read_study_of_a_staged_fit(folder):
    info = read_study(folder / "staged.sqlite")
    with StudyStorage.load(folder / "staged.sqlite", readonly=True) as storage:
        plan = json.loads(storage.get_metadata("stages"))
        final = storage.best("final")
        rows = storage.rows()
    assert [s["name"] for s in info["stages"]] == [d["name"] for d in plan]
    assert [s["name"] for s in info["stages"]] == ["evprox1", "evdist1", "final"]
    for stage, d in zip(info["stages"], plan):
        assert stage["t_start"] == d["t_start"]
        assert stage["t_end"] == min(d["t_end"], info["times"][-1])
        assert len(stage["weights"]) == len(info["times"])
        assert 0.0 <= min(stage["weights"]) and max(stage["weights"]) <= 1.0
    assert info["evaluations"]["stage"] == [r.stage for r in rows]
    # the waveform drawn is the final stage's best, the point all of its values
    assert info["best"]["stage"] == "final" and info["best"]["id"] == final.id
    assert info["point"] == final.params
    assert info["record"]["stage"] == "final"
    # a drive stage's rows hold only its own parameters
    first = info["evaluations"]["stage"].index("evprox1")
    assert info["params"]["evdist1.mu"][first] is None


def _page(path):
    from bokeh.document import Document

    from hnnfit.dashboard._fits import FitCache
    from hnnfit.dashboard._pages import StudyPage

    return StudyPage(Document(), path, FitCache())


def _data(page, name):
    return page.doc.get_model_by_name(name).data


def test_study_page_models_of_a_staged_fit(folder):
    from bokeh.models import BoxAnnotation

    page = _page(folder / "staged.sqlite")
    info = page.info
    assert np.allclose(_data(page, "target_source")["y"], info["target"])
    assert np.allclose(_data(page, "fit_source")["y"], info["best"]["dipole"])
    # the drive stages' windows shaded on the waveform, their weights below
    boxes = [(b.left, b.right) for b in page.wave.renderers + page.wave.center
             if isinstance(b, BoxAnnotation)]
    assert boxes == [(s["t_start"], s["t_end"]) for s in info["stages"][:2]]
    assert len(page.weights.renderers) == 2
    # convergence: each stage marked where its first evaluation is
    marks = [(span.location, span.visible, label.text.strip())
             for span, label in page.stage_marks]
    assert marks == [(1, True, "evprox1"), (4, True, "evdist1"), (5, True, "final")]
    conv = _data(page, "convergence_source")
    assert list(conv["n"]) == list(range(1, 10))
    assert list(conv["best"]) == list(_nan_to_list(info["evaluations"]["best_so_far"]))
    # the evaluations table, filtered by stage and by status
    assert len(_data(page, "table_source")["id"]) == 9
    page.stage_select.value = "evprox1"
    assert list(_data(page, "table_source")["id"]) == [1, 2, 3]
    page.state_select.value = "failed"
    assert list(_data(page, "table_source")["id"]) == []
    page.state_select.value = "complete"
    page.stage_select.value = "all"
    assert len(_data(page, "table_source")["id"]) == 9
    assert sorted(page.stage_select.options) == ["all", "evdist1", "evprox1", "final"]
    # the best point within the bounds
    point = _data(page, "point_source")
    assert point["name"] == [s["name"] for s in info["space"]]
    mu = info["point"]["evprox1.mu"]
    assert point["unit"][0] == pytest.approx((mu - 8.0) / (25.0 - 8.0))
    assert "download?study=staged.sqlite" in page.summary.text


def _nan_to_list(values):
    return [np.nan if v is None else v for v in values]


def test_study_page_survives_its_file_damaged_or_deleted(folder, tmp_path):
    path = tmp_path / "copy.sqlite"
    shutil.copy(folder / "done.sqlite", path)
    page = _page(path)
    shown = list(_data(page, "table_source")["id"])
    assert len(shown) == 4
    path.write_bytes(b"garbage" * 100)
    page.poll()
    assert "not an hnnfit study file" in page.status.text
    assert "last state read" in page.status.text
    assert list(_data(page, "table_source")["id"]) == shown
    path.unlink()
    page.poll()
    assert "gone" in page.status.text
    assert list(_data(page, "table_source")["id"]) == shown
    shutil.copy(folder / "done.sqlite", path)
    page.poll()
    assert page.status.text == ""


def test_dashboard_command_refuses_a_missing_folder(tmp_path, capsys):
    from hnnfit.cli import main

    assert main(["dashboard", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_study_path_refuses_names_outside_the_folder(folder):
    assert study_path(folder, "done.sqlite") == folder / "done.sqlite"
    for bad in ("../done.sqlite", "sub/done.sqlite", "done.txt", "", "/etc/x.sqlite"):
        with pytest.raises(ValueError, match="name of a .sqlite file"):
            study_path(folder, bad)


def test_fingerprint_is_none_for_a_missing_file_and_follows_writes(tmp_path):
    path = tmp_path / "x.sqlite"
    assert fingerprint(path) is None
    path.write_bytes(b"a")
    first = fingerprint(path)
    path.write_bytes(b"ab")
    assert fingerprint(path) != first


# ----------------------------------------------------------------- browser
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(condition, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _n_complete(path):
    try:
        with StudyStorage.load(path, readonly=True) as storage:
            return storage.counts()["complete"]
    except Exception:
        return 0


# a column of a named ColumnDataSource of the page's Bokeh document
COLUMN_JS = """
const doc = (window.Bokeh && Bokeh.documents) ? Bokeh.documents[0] : null;
if (!doc) { return null; }
const model = doc.get_model_by_name(arguments[0]);
if (!model) { return null; }
const data = model.data;
const col = data instanceof Map ? data.get(arguments[1]) : data[arguments[1]];
return col ? Array.from(col) : null;
"""


# Bokeh draws widgets in shadow roots, which CSS selectors do not enter
ERROR_TEXTS_JS = """
const out = [];
const walk = (root) => root.querySelectorAll("*").forEach((el) => {
  if (el.dataset && el.dataset.hnnfit === "error") { out.push(el.textContent); }
  if (el.shadowRoot) { walk(el.shadowRoot); }
});
walk(document);
return out;
"""
CLICK_LINK_JS = """
let found = null;
const walk = (root) => root.querySelectorAll("*").forEach((el) => {
  if (!found && el.tagName === "A" && el.textContent === arguments[0]) { found = el; }
  if (el.shadowRoot) { walk(el.shadowRoot); }
});
walk(document);
if (found) { found.click(); }
return found !== null;
"""


def test_dashboard_in_a_browser(folder, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    script = folder.parent / "fit_script.py"
    run = folder / "running.sqlite"
    before = {p.name: _sha256(p) for p in folder.iterdir()}
    fit = subprocess.Popen([sys.executable, str(script), str(run), "400"], env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = driver = None
    log = open(tmp_path / "dashboard.log", "w")
    try:
        _wait(lambda: _n_complete(run) >= 1, 90, "the fit's first evaluation")
        port = _free_port()
        # the folder given relative to the working directory, as users do (and
        # as the screenshots show it)
        server = subprocess.Popen([sys.executable, "-m", "hnnfit.cli", "dashboard",
                                   folder.name, "--port", str(port)], cwd=folder.parent,
                                  env=_env(), stdout=log, stderr=subprocess.STDOUT)
        base = f"http://localhost:{port}/"

        def up():
            try:
                return urllib.request.urlopen(base, timeout=5).status == 200
            except OSError:
                return False
        _wait(up, 60, "the dashboard server")

        options = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1300,330"):
            options.add_argument(arg)
        chromedriver = shutil.which("chromedriver")
        assert chromedriver, ("the browser test needs Chromium's driver on the PATH "
                              "(Debian: apt-get install chromium chromium-driver)")
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        driver.set_page_load_timeout(60)

        # -- the studies page
        driver.get(base)
        studies = _wait(lambda: driver.execute_script(COLUMN_JS, "studies", "study"), 30,
                        "the studies table")
        assert sorted(studies) == ["broken.sqlite", "done.sqlite", "empty.sqlite",
                                   "running.sqlite", "staged.sqlite"]
        ok = dict(zip(studies, driver.execute_script(COLUMN_JS, "studies", "ok")))
        assert ok == {"broken.sqlite": False, "done.sqlite": True, "empty.sqlite": False,
                      "running.sqlite": True, "staged.sqlite": True}
        state = dict(zip(studies, driver.execute_script(COLUMN_JS, "studies", "state")))
        assert state["running.sqlite"] == "running" and state["done.sqlite"] == "done"
        # the file that is not a study is drawn as an error row, with the reason
        errors = _wait(lambda: driver.execute_script(ERROR_TEXTS_JS), 20, "the error rows")
        assert "broken.sqlite" in errors and "empty.sqlite" in errors
        assert any("not an hnnfit study file" in text for text in errors)
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "studies.png"))

        # -- the running study's page, reached by its link
        driver.set_window_size(1300, 2300)
        assert driver.execute_script(CLICK_LINK_JS, "running.sqlite")
        _wait(lambda: "name=running.sqlite" in driver.current_url, 20, "the study page")
        with StudyStorage.load(run, readonly=True) as storage:
            target = storage.target
        t = _wait(lambda: driver.execute_script(COLUMN_JS, "target_source", "t"), 30,
                  "the target waveform")
        y = driver.execute_script(COLUMN_JS, "target_source", "y")
        assert np.allclose(t, target.times) and np.allclose(y, target.values)
        fit_y = _wait(lambda: driver.execute_script(COLUMN_JS, "fit_source", "y"), 30,
                      "the best fit's waveform")
        fit_t = driver.execute_script(COLUMN_JS, "fit_source", "t")
        assert np.allclose(fit_t, target.times) and len(fit_y) == len(target.times)
        # the drawn fit is a complete evaluation's stored waveform
        with StudyStorage.load(run, readonly=True) as storage:
            dipoles = [r.info["dipole"] for r in storage.rows(state="complete")]
        assert any(np.allclose(fit_y, d) for d in dipoles)
        assert not np.allclose(fit_y, target.values)

        # -- live: a new evaluation shows up without a reload
        driver.execute_script("window.hnnfitMarker = 'same page';")
        shown = len(driver.execute_script(COLUMN_JS, "convergence_source", "n"))
        _wait(lambda: len(driver.execute_script(COLUMN_JS, "convergence_source", "n")
                          or []) > shown, 60, "a new evaluation on the page")
        assert driver.execute_script("return window.hnnfitMarker;") == "same page"
        ids = driver.execute_script(COLUMN_JS, "table_source", "id")
        assert len(ids) > shown
        time.sleep(1.0)
        driver.save_screenshot(str(SHOTS / "study.png"))

        # -- a staged fit's page: its stages' windows and weights
        driver.get(base + "study?name=staged.sqlite")
        _wait(lambda: driver.execute_script(COLUMN_JS, "fit_source", "y"), 30,
              "the staged fit's waveform")
        driver.set_window_size(1300, 900)
        time.sleep(1.0)
        driver.save_screenshot(str(SHOTS / "staged.png"))
    finally:
        if driver is not None:
            driver.quit()
        fit.terminate()
        fit.wait(60)
        if server is not None:
            server.terminate()
            server.wait(60)
        log.close()
    # nothing but the running fit's own files changed
    after = {p.name: _sha256(p) for p in folder.iterdir()}
    own = {p for p in after if p.startswith("running.sqlite")}
    assert {k: v for k, v in after.items() if k not in own} == before
    assert (tmp_path / "dashboard.log").read_text().count("Traceback") == 0
