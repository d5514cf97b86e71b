"""`pyharness report`: a self-contained HTML file, checked with a parser
and in a real headless Chromium (skipped, with the reason, where the
system has no Chromium and chromedriver)."""
import gzip
import json
import os
import shutil
from html.parser import HTMLParser

import pytest

from pyharness.history.store import open_store

DATA = os.path.join(os.path.dirname(__file__), "data", "bench-vm-30.json.gz")


class _Scan(HTMLParser):
    """What a browser would fetch or run, and the charts."""

    def __init__(self):
        super().__init__()
        self.fetches, self.scripts, self.charts, self.svgs = [], 0, [], 0
        self.no_charts_note = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
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
    assert scan.fetches == [] and scan.scripts == 0           # opens with no network
    kinds = [c.get("data-kind") for c in scan.charts]
    assert kinds.count("history") >= 20 and kinds.count("bench") >= 6 and kinds.count("run") >= 2
    assert scan.svgs == len(scan.charts)
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


def _browser():
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
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1800"):
        o.add_argument(a)
    o.binary_location = chrome
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=o)


def test_report_opens_in_headless_chromium(run_cli, inputs):
    pytest.importorskip("matplotlib")
    d, db, bench = inputs
    ok, bad = _runs(run_cli, d)
    out = str(d / "browser.html")
    assert run_cli("report", "--store", db, bench, bad, "--out", out).returncode == 0
    drv = _browser()
    try:
        drv.get("file://" + out)
        assert drv.title == "pyharness report"
        sizes = drv.execute_script(
            "return [...document.querySelectorAll('figure.chart')].map(f => {"
            " const s = f.querySelector('svg'); const r = s.getBoundingClientRect();"
            " return [f.dataset.kind, r.width, r.height, s.querySelectorAll('path').length]; })")
        assert len(sizes) >= 25
        assert all(w > 100 and h > 100 and paths > 5 for _, w, h, paths in sizes), sizes
        errors = [e for e in drv.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        assert errors == []
        regressed = drv.execute_script(
            "return [...document.querySelectorAll('td span.bad')].map(e => e.textContent)")
        assert "REGRESSED" in regressed
        drv.save_screenshot(str(d / "report.png"))
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
