"""Exports fleet tools read.

- JUnit XML (--junit): one test case per invariant, failed with the
  evidence in its message, plus one for the run's fate (crashed, hung);
  written with junitparser (maintained, writes and reads the format CI
  systems consume, so we do not hand-build XML).
- Prometheus text format (--metrics) for node_exporter's textfile
  collector: the verdict, violations by invariant, sites per second,
  breakpoint hits, the run's time; written with prometheus_client (the
  official client; its text is written by pyharness/outputs.py, which
  renames atomically as the collector needs, and writes through a symlink
  instead of replacing it).
"""
from junitparser import Failure, JUnitXml, Properties, Property, TestCase, TestSuite
import io

from prometheus_client import CollectorRegistry, Gauge, generate_latest


def junit_text(rep):
    from ..checker import INVARIANTS
    suite = TestSuite(f"pyharness.{rep['scenario']}")
    cls = f"pyharness.{rep['scenario']}"
    firsts = {}
    for v in rep["violations"]:
        firsts.setdefault(v["invariant"], []).append(v)
    for name, desc in INVARIANTS:
        case = TestCase(name, classname=cls, time=rep["elapsed_s"])
        n = rep["violation_counts"].get(name, 0)
        if n:
            ev = firsts.get(name, [])
            msg = (ev[0]["detail"] if ev else f"{n} violation(s)")
            f = Failure(f"{n} violation(s): {msg}")
            f.text = "\n".join(f"{v['detail']} [thread {v.get('thread')} cpu {v.get('cpu')}]"
                               for v in ev[:20]) + f"\n{desc}\nreplay: {rep.get('replay')}"
            case.result = [f]
        suite.add_testcase(case)
    fate = TestCase("run-completed", classname=cls, time=rep["elapsed_s"])
    if rep["status"] != "complete":
        # An interrupted run did not pass: it is a failed case, not a green
        # suite with its status in a property.
        f = Failure(f"the run ended {rep['status']} after {rep['elapsed_s']:.1f} s"
                    + (": it did not run to its end, so it did not pass"
                       if rep["status"] == "interrupted" else ""))
        f.text = str(rep.get("crash") or rep.get("stuck_threads") or "")
        fate.result = [f]
    suite.add_testcase(fate)
    props = Properties()
    for k, val in (("verdict", rep["verdict"]), ("status", rep["status"]),
                   ("replay", rep.get("replay") or ""),
                   ("host", rep.get("machine", {}).get("hostname", "")),
                   ("cpu_model", rep.get("machine", {}).get("cpu_model", ""))):
        props.add_property(Property(k, str(val)))
    suite.append(props)
    suite.time = rep["elapsed_s"]
    xml = JUnitXml()
    xml.add_testsuite(suite)
    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    return buf.getvalue()


def metrics_text(rep):
    from ..checker import NAMES
    reg = CollectorRegistry()
    labels = {"scenario": rep["scenario"]}
    g = Gauge("pyharness_pass", "1 if the last run passed, 0 if it failed", ["scenario"], registry=reg)
    g.labels(**labels).set(1 if rep["verdict"] == "pass" else 0)   # incomplete is not a pass
    g = Gauge("pyharness_exit_code", "exit code of the last run", ["scenario"], registry=reg)
    g.labels(**labels).set(rep["exit_code"])
    g = Gauge("pyharness_violations", "violations in the last run, by invariant",
              ["scenario", "invariant"], registry=reg)
    for name in list(NAMES) + sorted(set(rep["violation_counts"]) - set(NAMES)):
        g.labels(invariant=name, **labels).set(rep["violation_counts"].get(name, 0))
    t = rep["totals"]
    g = Gauge("pyharness_sites_per_second", "sites patched per second in the last run", ["scenario"],
              registry=reg)
    g.labels(**labels).set(t.get("sites_patched", 0) / rep["elapsed_s"] if rep["elapsed_s"] else 0)
    g = Gauge("pyharness_breakpoint_hits", "breakpoint hits in the last run, by side",
              ["scenario", "side"], registry=reg)
    for side in ("primary", "secondary"):
        g.labels(side=side, **labels).set(t.get("bp_hits", {}).get(side, 0))
    g = Gauge("pyharness_run_seconds", "duration of the last run", ["scenario"], registry=reg)
    g.labels(**labels).set(rep["elapsed_s"])
    g = Gauge("pyharness_run_status", "1 for the last run's status", ["scenario", "status"],
              registry=reg)
    g.labels(status=rep["status"], **labels).set(1)
    return generate_latest(reg)
