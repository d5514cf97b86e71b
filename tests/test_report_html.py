"""`pyharness report`: a self-contained HTML file, checked with a parser
and in a real headless Chromium (skipped, with the reason, where the
system has no Chromium and chromedriver)."""
import gzip
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from pyharness.history.store import open_store
from pyharness.viz import html as report_html

DATA = os.path.join(os.path.dirname(__file__), "data", "bench-vm-30.json.gz")


class _Scan(HTMLParser):
    """What a browser would fetch or run, and the charts."""

    def __init__(self):
        super().__init__()
        self.fetches, self.scripts, self.charts, self.svgs = [], 0, [], 0
        self.no_charts_note = False
        self.script_src = []
        self.h2 = []
        self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
        if tag == "script":
            self.scripts += 1
            if a.get("src"):
                self.script_src.append(a["src"])
        if tag in ("img", "iframe", "link", "source", "video", "audio", "embed") or \
                (tag != "svg" and (a.get("src") or (tag == "link" and a.get("href")))):
            self.fetches.append((tag, a))
        if tag == "image" and (a.get("href") or a.get("xlink:href") or "").startswith("http"):
            self.fetches.append((tag, a))
        if tag == "figure" and "chart" in (a.get("class") or ""):
            self.charts.append(a)
        if tag == "svg":
            self.svgs += 1
        if a.get("id") == "no-charts":
            self.no_charts_note = True


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A store with 6 real benches and a slowed one, a bench JSON, a
    passing and a failing run report."""
    d = tmp_path_factory.mktemp("report")
    with gzip.open(DATA, "rt") as f:
        real = json.load(f)
    db = str(d / "h.db")
    with open_store(db, announce=False) as st:
        for doc in real["results"][:6] + [real["inject"]]:
            st.add(doc)
    bench = d / "bench.json"
    doc = real["inject"]
    for f in doc["figures"].values():       # the fixture keeps no per-site samples: make some
        if f["kind"] != "primitive":
            f["raw_samples"] = [v * (0.9 + 0.01 * (i % 20)) for i, v in enumerate(f["samples"] * 8)]
    bench.write_text(json.dumps(doc))
    return d, db, str(bench)


def _runs(run_cli, d):
    ok, bad = str(d / "ok.json"), str(d / "bad.json")
    if not os.path.exists(ok):
        assert run_cli("run", "--sites", "300", "--quiet", "--json", ok).returncode == 0
        r = run_cli("run", "--mutant", "first-byte-first", "--duration", "2", "--quiet",
                    "--stop-on-violation", "--json", bad)
        assert r.returncode == 1, r.stderr
    return ok, bad


def test_report_is_self_contained_with_charts(run_cli, inputs):
    pytest.importorskip("matplotlib")
    d, db, bench = inputs
    ok, bad = _runs(run_cli, d)
    out = str(d / "report.html")
    r = run_cli("report", "--store", db, bench, ok, bad, "--out", out)
    assert r.returncode == 0, r.stderr
    text = open(out).read()
    scan = _Scan()
    scan.feed(text)
    assert scan.fetches == [] and scan.script_src == []       # opens with no network
    assert scan.h2[:2] == ["Summary", "Contents"]            # the story first
    assert len(text.encode()) < report_html.SIZE_BUDGET
    kinds = [c.get("data-kind") for c in scan.charts]
    # history charts for the figures that changed (the slowed bench's), at
    # most MAX_CHARTS; every figure a row of the every-figure table
    assert 1 <= kinds.count("history") <= report_html.MAX_CHARTS
    assert kinds.count("bench") >= 4 and kinds.count("run") >= 2
    table = text[text.index('id="history-table"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") >= 26
    assert scan.svgs == len(scan.charts)                      # every chart has its static SVG
    assert text.count('class="interactive"') == kinds.count("history")
    flagged = [c for c in scan.charts if int(c.get("data-change-points") or 0) > 0]
    assert flagged, "the slowed bench's change points are drawn"
    assert "REGRESSED" in text and "first-byte-first" in text and "int3-guard" in text


def test_report_without_matplotlib_says_how_to_get_charts(inputs, monkeypatch):
    from pyharness.history.series import build_history
    from pyharness.viz import html as report_html
    from pyharness.viz import plots
    d, db, bench = inputs
    monkeypatch.setattr(plots, "matplotlib_or_none", lambda: None)
    with open_store(db, create=False) as st:
        hist = build_history(st)
    with open(bench) as f:
        text = report_html.build_report([(bench, json.load(f))], hist, plots.matplotlib_or_none())
    scan = _Scan()
    scan.feed(text)
    assert scan.no_charts_note and scan.charts == []
    assert "pyharness[plot]" in text and "REGRESSED" in text


def test_report_bad_input(run_cli, tmp_path):
    r = run_cli("report", "--out", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "nothing to report" in r.stderr
    r = run_cli("report", "--out", "/nonexistent/r.html", "--store", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def _browser(scripts=True):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[test]')")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("no system Chromium and chromedriver (apt-get install chromium "
                    "chromium-driver)")
    o = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1800",
              "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        o.add_argument(a)
    if not scripts:
        o.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    o.binary_location = chrome
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=o)


def _wait_for(drv, script, timeout=30.0):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = drv.execute_script(script)
        if v:
            return v
        time.sleep(0.1)
    return None


# The pixel of a point of a Bokeh chart: the model is found by its name, its
# view by the model, the pixel by the view's scales.
_POINT_XY = """
const [name, x, y] = arguments;
const m = Bokeh.documents[0].get_model_by_name(name);
function find(v, seen) {          // the model's view, under the root views
  if (!v || seen.has(v)) return null;
  seen.add(v);
  if (v.model === m) return v;
  const kids = [];
  for (const k of ["child_views", "_child_views", "renderer_views", "views"]) {
    const c = v[k];
    if (!c) continue;
    if (c instanceof Map) kids.push(...c.values()); else if (c[Symbol.iterator]) kids.push(...c);
  }
  for (const k of kids) { const r = find(k, seen); if (r) return r; }
  return null;
}
const seen = new Set();
let v = null;
for (const r of Bokeh.index.roots) { v = find(r, seen); if (v) break; }
const c = v.canvas_view.el.getBoundingClientRect();
return [c.left + v.frame.x_scale.compute(x), c.top + v.frame.y_scale.compute(y)];
"""
_TOOLTIPS = """
function walk(n, out) {
  if (n.shadowRoot) walk(n.shadowRoot, out);
  for (const c of n.children || []) {
    if (String(c.className || "").includes("tooltip") && c.textContent.trim()) out.push(c.textContent);
    walk(c, out);
  }
  return out;
}
return walk(document.body, []).join(" | ");
"""


def test_report_opens_in_headless_chromium(run_cli, inputs):
    """The acceptance of the report: no console error; the summary first,
    naming the injected regression; hover on the newest point of a history
    chart shows its value; pan and box zoom move the axis; nothing is
    fetched; with scripts off the static charts are there."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("bokeh")
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from pyharness.history.series import build_history
    d, db, bench = inputs
    ok, bad = _runs(run_cli, d)
    out = str(d / "browser.html")
    assert run_cli("report", "--store", db, bench, bad, "--out", out).returncode == 0
    assert os.path.getsize(out) < report_html.SIZE_BUDGET
    with open_store(db, create=False) as st:
        hist = build_history(st)
    (s,) = [x for x in hist["series"] if x["figure"] == "rfc/alias/iret/secondaries=1"]
    anchor = report_html.slug("h", s["figure"], s["series_key"])
    newest = s["points"][-1]
    drv = _browser()
    try:
        drv.get("file://" + out)
        assert drv.title == "pyharness report"
        assert _wait_for(drv, "return window.Bokeh && Bokeh.documents.length > 0 && "
                              "Bokeh.index.roots.length > 0")
        errors = [e for e in drv.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        assert errors == []
        # the summary comes first and names the slowed figure
        first = drv.execute_script("return document.querySelector('h2').textContent")
        assert first == "Summary"
        summ = drv.execute_script("return document.querySelector('section.summary').innerText")
        assert "rfc/alias/iret/secondaries=1" in summ and "REGRESSED" in summ
        # hover the newest point: its value, its spread, its commit
        x, y = drv.execute_script(_POINT_XY, anchor + "-ratio", len(s["points"]) - 1,
                                  newest["value"])
        fig = drv.find_element("id", anchor)
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", fig)
        x, y = drv.execute_script(_POINT_XY, anchor + "-ratio", len(s["points"]) - 1,
                                  newest["value"])
        ab = ActionBuilder(drv)
        ab.pointer_action.move_to_location(int(x), int(y))
        ab.perform()
        tip = _wait_for(drv, _TOOLTIPS, 10)
        assert tip and f"{newest['value']:.3f}x" in tip and "p10-p90" in tip, tip
        assert "raw time" in tip
        # ratio and raw time are two panels of one chart, sharing its x axis
        assert drv.execute_script("const d = Bokeh.documents[0]; return [arguments[0] + '-ratio', "
                                  "arguments[0] + '-raw'].every(n => d.get_model_by_name(n)) && "
                                  "d.get_model_by_name(arguments[0] + '-ratio').x_range === "
                                  "d.get_model_by_name(arguments[0] + '-raw').x_range", anchor)
        assert (newest["commit"] or "")[:12] in tip
        # pan (the active drag) moves the x axis; box zoom narrows it
        rng = "const m = Bokeh.documents[0].get_model_by_name(arguments[0]); " \
              "return [m.x_range.start, m.x_range.end];"
        before = drv.execute_script(rng, anchor + "-ratio")
        x1, y1 = drv.execute_script(_POINT_XY, anchor + "-ratio", 1, newest["value"] / 2)
        ab = ActionBuilder(drv)
        ab.pointer_action.move_to_location(int(x1), int(y1)).pointer_down() \
            .move_to_location(int(x1) - 120, int(y1)).pointer_up()
        ab.perform()
        panned = drv.execute_script(rng, anchor + "-ratio")
        assert panned != before and panned[1] - panned[0] == pytest.approx(before[1] - before[0])
        drv.execute_script("const m = Bokeh.documents[0].get_model_by_name(arguments[0]);"
                           "m.toolbar.active_drag = m.toolbar.tools.find("
                           "t => t.type == 'BoxZoomTool' || t.constructor.name.includes('BoxZoom'));",
                           anchor + "-ratio")
        x0, y0 = drv.execute_script(_POINT_XY, anchor + "-ratio", 0, newest["value"])
        ab = ActionBuilder(drv)
        ab.pointer_action.move_to_location(int(x0) + 5, int(y0) + 5).pointer_down() \
            .move_to_location(int(x0) + 150, int(y0) + 60).pointer_up()
        ab.perform()
        zoomed = drv.execute_script(rng, anchor + "-ratio")
        assert zoomed[1] - zoomed[0] < panned[1] - panned[0]
        # the text of a chart is text: the browser's find reaches it
        assert drv.execute_script("return window.find('cost / floor (x floor)')")
        # nothing left the page
        assert drv.execute_script("return performance.getEntriesByType('resource').length") == 0
        drv.save_screenshot(str(d / "report.png"))
    finally:
        drv.quit()
    drv = _browser(scripts=False)
    try:
        drv.get("file://" + out)
        assert drv.execute_script("return typeof Bokeh") == "undefined"
        sizes = [(e.size["width"], e.size["height"])
                 for e in drv.find_elements("css selector", "figure.chart svg")]
        charts = drv.find_elements("css selector", "figure.chart")
        assert len(sizes) == len(charts) >= 10 and all(w > 100 and h > 100 for w, h in sizes), sizes
    finally:
        drv.quit()


def test_a_ten_thousand_result_report_keeps_its_budget_and_opens(run_cli, tmp_path):
    """Issue 27: a store of 10,000 realistic results (scripts/gen_history.py:
    one real bench with 3% noise between results, a +15% step 20 results
    before the end) gives a page within the 5 MB budget that opens in
    Chromium with its summary first, naming the step's regressions."""
    pytest.importorskip("matplotlib")
    drv = _browser()            # skips here, before the store is made, without Chromium
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        db = str(tmp_path / "h10k.db")
        subprocess.run([sys.executable, os.path.join(root, "scripts", "gen_history.py"),
                        "--results", "10000", "--store", db], check=True,
                       stdout=subprocess.DEVNULL, timeout=900)
        out = str(tmp_path / "r10k.html")
        r = run_cli("report", "--store", db, "--out", out, timeout=600)
        assert r.returncode == 0, r.stderr
        assert os.path.getsize(out) <= report_html.SIZE_BUDGET
        drv.get("file://" + out)
        assert drv.execute_script("return document.querySelector('h2').textContent") == "Summary"
        summ = drv.execute_script("return document.querySelector('section.summary').innerText")
        assert "REGRESSED" in summ and "upstream/alias/cpuid/secondaries=1" in summ
        assert "10000 result(s)" in summ
        errors = [e for e in drv.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        drv.quit()


def test_report_escapes_what_results_carry(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    with gzip.open(DATA, "rt") as f:
        doc = json.load(f)["inject"]
    # Hostile text where the schema has text (a document that breaks its
    # schema is refused before the report: tests/test_documents.py).
    doc["warnings"] = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>"]
    doc["machine"]["hostname"] = "$\\foo$ <b>"
    doc["figures"]["rfc/$x$/<i>/secondaries=1"] = doc["figures"].pop("rfc/rwx/iret/secondaries=1")
    doc["figures"]["batch/odd"] = {"kind": "batch", "samples": [1.0]}   # no summary, no '='
    p = tmp_path / "x.json"
    p.write_text(json.dumps(doc))
    run = {"schema": "pyharness.run/1", "verdict": "fail", "status": "complete", "exit_code": 1,
           "scenario": "<i>s</i>", "elapsed_s": 1.0, "config": {},
           "totals": {"sites_patched": 0, "bp_hits": {}},
           "violation_counts": {"<b>x</b>": 1},
           "violations": [{"invariant": "<b>x</b>", "detail": "<script>alert(3)</script>"}]}
    q = tmp_path / "run.json"
    q.write_text(json.dumps(run))
    out = tmp_path / "r.html"
    r = run_cli("report", str(p), str(q), "--out", str(out))
    assert r.returncode == 0, r.stderr
    scan = _Scan()
    scan.feed(out.read_text())
    assert scan.scripts == 0 and scan.fetches == []
    text = out.read_text()
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<script>alert" not in text and "<img src=x" not in text
    # Names are escaped for TeX, and TeX stays on: the log axes' own labels
    # (10^k) are TeX; turning it off printed them as raw "$\mathdefault..."
    import matplotlib
    from pyharness.viz import plots
    plt = plots.matplotlib_or_none()
    assert matplotlib.rcParams["text.parse_math"]
    name, _, fig = plots.bench_plots(plt, doc)[0]
    fig.canvas.draw()
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert any("mathdefault" in t for t in ticks)        # TeX that renders, not text
    plt.close(fig)
