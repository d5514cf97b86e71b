"""pyharness litmus (issue 18): tests as data, outcomes counted where they
happen, litmus7-style verdicts, and controls that prove the run can see."""
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from pyharness.litmus import run, spec, verdict

TOML_OK = """
name = "my-call-site"
title = "a call's rel32 in one aligned store"
shape = "call-rel32"

[[step]]
store = "mov"

[executor]
side = "loop"
"""


def test_every_shipped_test_parses_against_its_schema_and_names_a_distinct_definition():
    tests = spec.shipped()
    names = [t.name for t in tests]
    assert len(names) == len(set(names)) and len({t.hash for t in tests}) == len(tests)
    assert [t.control for t in tests[:2]] == ["positive", "negative"]    # the controls first
    # the table of the issue: every row is a named test
    for want in ("hotspot-call-rel32", "hotspot-replace-mt-safe", "hotspot-nmethod-barrier",
                 "v8-jump-slot", "coreclr-data-target", "dynamorio-4byte", "windows-hotpatch",
                 "windows-hotpatch-bytewise", "frida-plain-write", "luajit-same-thread"):
        assert want in names


@pytest.mark.parametrize("body,field", [
    ('name = "x"\nshape = "call-rel32"\n[[step]]\nstore = "movv"\n[executor]\nside = "loop"\n',
     "step[1].store"),
    ('name = "x"\nshape = "call-rel33"\n[[step]]\nstore = "mov"\n[executor]\nside = "loop"\n', "shape"),
    ('name = "x"\nshape = "call-rel32"\n[[step]]\nstore = "mov"\n', "executor"),
    ('name = "x"\nshape = "call-rel32"\n[[step]]\nstore = "mov"\nat = [1, 3]\n[executor]\nside = "loop"\n',
     "mov"),
    ('name = "x"\nshape = [\n', "not TOML"),
])
def test_a_malformed_test_file_exits_2_with_one_line_naming_the_field(run_cli, tmp_path, body, field):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    r = run_cli("litmus", "--test", str(f), "--time", "0.1", timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and field in lines[0] and str(f) in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_user_written_test_runs_with_both_controls_and_prints_litmus7_verdicts(run_cli, tmp_path, two_cpus):
    f = tmp_path / "mine.toml"
    f.write_text(TOML_OK)
    out = tmp_path / "l.json"
    r = run_cli("litmus", "--test", str(f), "--time", "0.3", "--positive-executions", "100000",
                "--cpus", ",".join(map(str, two_cpus)), "--json", str(out), timeout=180)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    doc = json.loads(out.read_text())
    by = {v["test"]: v for v in doc["verdicts"]}
    assert set(by) == {"control-positive", "control-negative", "my-call-site"}
    for name, v in by.items():
        assert v["raced"] > 0 and v["trials"] > 0 and v["replay"].startswith("pyharness litmus ")
        assert f"Observation {name} {v['observation']} {v['positive']} {v['negative']}" in r.stdout
        assert f"Hash={v['hash']}" in r.stdout
    # The negative control must see tearing on this machine (or say it
    # could not); the positive control sees no forbidden outcome.
    neg, pos = by["control-negative"], by["control-positive"]
    assert (neg["positive"] > 0 and doc["controls"]["negative"] == "seen") or \
        (doc["controls"]["negative"] == "not seen" and "could not see tearing" in doc["controls"]["why"])
    assert pos["positive"] == 0 and pos["observation"] == "Never" and pos["traps_handled"] > 0
    assert by["my-call-site"]["test"] == "my-call-site" and "--test" in by["my-call-site"]["replay"]
    # the HTML report shows the histograms, forbidden outcomes marked
    html = tmp_path / "r.html"
    r = run_cli("report", str(out), "--out", str(html), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    text = html.read_text()
    assert "Litmus: l.json" in text and "my-call-site on " in text and "log scale" in text
    if neg["positive"]:
        assert "*&gt; torn" in text


def test_the_negative_control_makes_its_nevers_untrusted_when_it_sees_nothing():
    neg = {"control": "negative", "positive": 0, "raced": 10, "observation": "Never"}
    pos = {"control": "positive", "positive": 0, "raced": verdict.POSITIVE_MIN, "observation": "Never"}
    ctl = verdict.controls([neg, pos])
    assert ctl["negative"] == "not seen" and not ctl["trusted"] and "could not see tearing" in ctl["why"]
    assert ctl["positive"] == "clean"
    neg["positive"] = 5
    assert verdict.controls([neg, pos])["trusted"]
    pos["raced"] = 10
    assert verdict.controls([neg, pos])["positive"] == "too few"
    pos["positive"] = 1
    assert verdict.controls([neg, pos])["positive"] == "failed"


def test_outcomes_are_judged_by_the_protocols_assumption_and_by_each_vendors_rule():
    t = spec.load(os.path.join(spec.SHIPPED_DIR, "hotspot-nmethod-barrier.toml"))
    # one aligned 4-byte store, boundaries kept: AMD's asynchronous case
    assert t.single_store_in_qword() and t.vendor_rules()["amd"]["torn"] == "forbidden"
    assert t.vendor_rules()["intel"]["torn"] == "allowed"
    res = {"counts": {"window": {"old": 5, "new": 7, "torn": 2}, "outside": {"new": 3}},
           "trials": 10, "elapsed_s": 1.0, "floor": {"trials": 20, "elapsed_s": 1.0}}
    v = verdict.judge(t, res, "amd")
    assert (v["positive"], v["negative"], v["observation"], v["validated"]) == (2, 12, "Sometimes", True)
    assert v["vendor_rule_broken"] == ["torn"] and v["floor_ratio"] == 0.5
    assert verdict.judge(t, res, "intel")["vendor_rule_broken"] == []
    text = verdict.litmus7(v, "same-die")
    assert "*>outcome=torn;" in text and ":>outcome=new;" in text and "is validated" in text
    # the SDM's method: Intel's rule forbids a stale run after the flag
    sdm = spec.load(os.path.join(spec.SHIPPED_DIR, "sdm-flag-cpuid.toml"))
    assert sdm.vendor_rules()["intel"]["stale-after-barrier"] == "forbidden"
    # bytes across an 8-byte boundary, or several stores: no vendor promises
    assert not spec.load(os.path.join(spec.SHIPPED_DIR, "dynamorio-4byte.toml")).single_store_in_qword()


def test_a_worker_that_dies_is_the_tests_outcome_not_pyharnesss(monkeypatch):
    """A landing outside the region can kill the worker: its death is
    recorded as `crashed`, what it counted before kept."""
    t = spec.parse(TOML_OK, "inline.toml")
    real = subprocess.Popen

    def dying(cmd, **kw):
        return real([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], **kw)
    monkeypatch.setattr(run.subprocess, "Popen", dying)
    res = run.run_one(t, 0, [1], 0.1)
    assert res["crashed"] == "killed by SIGSEGV" and res["counts"]["window"]["crashed"] == 1
    v = verdict.judge(t, res)
    assert v["positive"] == 1 and v["observation"] == "Always"


def test_verdicts_land_in_the_store_by_test_and_machine(run_cli, tmp_path, two_cpus):
    db = tmp_path / "s.db"
    r = run_cli("litmus", "--only", "hotspot-call-rel32", "--time", "0.2", "--positive-executions", "10000",
                "--cpus", ",".join(map(str, two_cpus)), "--store", str(db), timeout=180)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    con = sqlite3.connect(db)
    rows = con.execute("select v.test, v.observation, v.raced, m.cpu_model from litmus_verdicts v "
                       "join results r on v.result_id = r.id join machines m on r.machine_id = m.id").fetchall()
    assert {x[0] for x in rows} == {"control-positive", "control-negative", "hotspot-call-rel32"}
    assert all(x[1] in ("Never", "Sometimes", "Always") and x[2] > 0 and x[3] for x in rows)
    from pyharness.history.store import open_store
    st = open_store(str(db), create=False, announce=False)
    got = st.litmus_verdicts()
    assert len(got) == 3 and got[0]["cpu_model"] and got[0]["test"] == "control-positive"


def test_the_published_schema_names_what_the_c_table_and_the_shapes_have():
    """A store, sync, executor side or outcome is one line of csrc/litmus/*.def and
    a shape one entry of shapes.py; the schema's enums must name the same."""
    import pyharness.documents as documents
    from pyharness.litmus import shapes
    s = json.load(open(documents.schema_path("litmus-test")))
    p = s["properties"]
    step = p["step"]["items"]["properties"]
    assert set(step["store"]["enum"]) == set(spec.STORES)
    assert set(step["sync"]["enum"]) == set(spec.SYNCS)
    ex = p["executor"]["properties"]
    assert set(ex["side"]["enum"]) == set(spec.MODES) and set(ex["serialize"]["enum"]) == set(spec.SERS)
    assert set(p["forbidden"]["items"]["enum"]) == set(spec.OUTCOMES)
    assert set(p["shape"]["enum"]) == set(shapes.SHAPES) and set(p["align"]["enum"]) == set(shapes.ALIGNS)
