"""Exports fleet tools read.

- JUnit XML (--junit): one test case per invariant, failed with the
  evidence in its message, plus one for the run's fate (crashed, hung);
  written with junitparser (maintained, writes and reads the format CI
  systems consume, so we do not hand-build XML).
- Prometheus text format (--metrics) for node_exporter's textfile
  collector: the verdict, violations by invariant, sites per second,
  breakpoint hits, the run's time; written with prometheus_client (the
  official client: its write_to_textfile renames atomically, as the
  collector needs).
"""
from junitparser import Failure, JUnitXml, Properties, Property, TestCase, TestSuite
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile


def write_junit(rep, path):
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
    if rep["status"] not in ("complete", "interrupted"):
        f = Failure(f"the run ended {rep['status']}")
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
    xml.write(path, pretty=True)


def write_metrics(rep, path):
    from ..checker import NAMES
    reg = CollectorRegistry()
    labels = {"scenario": rep["scenario"]}
    g = Gauge("pyharness_pass", "1 if the last run passed, 0 if it failed", ["scenario"], registry=reg)
    g.labels(**labels).set(1 if rep["verdict"] == "pass" else 0)
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
    write_to_textfile(path, reg)
