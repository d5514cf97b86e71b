"""`pyharness mutate`: the checker measured against bugs written into the C
core's source.

Each mutant is a patch (tests/mutants/*.diff) with a header that says what
real bug it models, the scenarios that reach it, extra run flags, the
invariants expected to catch it, and, for an equivalent mutant, why no x86
execution can tell it from the correct code.  For each mutant this builds a
scratch copy of the core with the patch applied, runs each of its scenarios
(stopping at the first evidence), and reports: caught or not, by which
invariants, after how long.  Equivalent mutants are listed with their
reason and left out of the score.

    pyharness mutate                       # every mutant, once, 10 s cap
    pyharness mutate --runs 10 --json m.json
    pyharness mutate --only 05,text-left-writable --seconds 5
"""
import concurrent.futures
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from .documents import KINDS
from .errors import UnsupportedError, UsageError

SCHEMA = KINDS["mutate"]
CAP_S = 10.0
DEADLINE_S = 3.0


@dataclasses.dataclass
class Mutant:
    name: str
    path: str
    models: str
    scenarios: List[str]
    flags: List[str]
    expect: List[str]
    equivalent: Optional[str]


def _is_tree(d):
    return bool(d) and os.path.isfile(os.path.join(d, "csrc", "build_ffi.py"))


def source_root(given=None):
    """The source tree: given, else the checkout this pyharness was imported
    from, else the current directory; None when none has csrc/."""
    if given is not None:
        return os.path.abspath(given) if _is_tree(given) else None
    for d in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.getcwd()):
        if _is_tree(d):
            return d
    return None


def default_mutants_dir(root=None):
    root = root or source_root()
    return os.path.join(root, "tests", "mutants") if root else None


def parse_mutant(path):
    head = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("# "):
                break
            key, _, val = line[2:].partition(":")
            head[key.strip()] = val.strip()
    if "mutant" not in head or "scenario" not in head:
        raise UsageError(f"{path}: a mutant needs '# mutant:' and '# scenario:' header lines")
    return Mutant(name=head["mutant"], path=path, models=head.get("models", ""),
                  scenarios=[s.strip() for s in head["scenario"].split(",") if s.strip()],
                  flags=head.get("flags", "").split(),
                  expect=[s.strip() for s in head.get("expect", "").split(",") if s.strip()],
                  equivalent=head.get("equivalent"))


def load_mutants(directory, only=None):
    if not directory or not os.path.isdir(directory):
        raise UnsupportedError(
            f"no mutants directory ({directory or 'no source checkout'}): `pyharness mutate` "
            f"needs a source checkout (csrc/ and tests/mutants/), or --mutants DIR")
    out = [parse_mutant(os.path.join(directory, n)) for n in sorted(os.listdir(directory))
           if n.endswith(".diff")]
    if only:
        keys = [k.strip() for k in only.split(",") if k.strip()]

        def hit(m, k):   # a name, a name's start, or a file's number
            return m.name.startswith(k) or os.path.basename(m.path).startswith(k)
        picked = [m for m in out if any(hit(m, k) for k in keys)]
        missing = [k for k in keys if not any(hit(m, k) for m in out)]
        if missing:
            raise UsageError(f"no mutant named {', '.join(missing)}; see {directory}")
        out = picked
    return out


def _copy_sources(root, dest):
    shutil.copytree(os.path.join(root, "csrc"), os.path.join(dest, "csrc"),
                    ignore=shutil.ignore_patterns("*.o", "__pycache__"))
    shutil.copytree(os.path.join(root, "pyharness"), os.path.join(dest, "pyharness"),
                    ignore=shutil.ignore_patterns("*.so", "_core.c", "_core.o", "__pycache__"))


def applies(root, mutant):
    """True if the patch applies cleanly to the tree at root (no build)."""
    rc = subprocess.run(["patch", "-p1", "--dry-run", "-s", "-f", "-i", mutant.path], cwd=root,
                        capture_output=True, text=True)
    return rc.returncode == 0, (rc.stdout + rc.stderr).strip()


def build(root, mutant, workdir):
    """A scratch tree with the mutant applied and its core built; returns
    its path, or raises UnsupportedError with the tool's last lines."""
    dest = os.path.join(workdir, mutant.name)
    shutil.rmtree(dest, ignore_errors=True)     # --keep DIR used again
    _copy_sources(root, dest)
    rc = subprocess.run(["patch", "-p1", "-s", "-f", "--no-backup-if-mismatch", "-i", mutant.path],
                        cwd=dest, capture_output=True, text=True)
    if rc.returncode:
        raise UnsupportedError(f"mutant {mutant.name} does not apply: "
                               f"{(rc.stdout + rc.stderr).strip().splitlines()[-1:]}")
    code = ("import sys; sys.path.insert(0, 'csrc'); from build_ffi import ffibuilder; "
            "ffibuilder.compile(tmpdir='.', verbose=False)")
    rc = subprocess.run([sys.executable, "-c", code], cwd=dest, capture_output=True, text=True)
    if rc.returncode:
        tail = (rc.stdout + rc.stderr).strip().splitlines()[-3:]
        raise UnsupportedError(f"mutant {mutant.name} does not build: {' | '.join(tail)}")
    return dest


def run_once(tree, mutant, scenario, seconds, seed, cpus=None):
    """One run of a mutant's scenario, stopped at the first evidence."""
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    # A wait longer than DEADLINE_S on an idle 2-CPU box is a hang: the
    # deadline must fire well inside the cap for a hang to count as caught.
    cmd = [sys.executable, "-m", "pyharness", "run", "--scenario", scenario,
           "--duration", f"{seconds:g}", "--seed", str(seed), "--stop-on-violation", "--quiet",
           "--deadline", f"{min(DEADLINE_S, seconds / 2):g}", "--grace", "3",
           "--json", out] + (["--cpus", cpus] if cpus else []) + mutant.flags
    env = dict(os.environ, PYTHONPATH=tree)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=seconds + 60)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "timed out"
    wall = time.monotonic() - t0
    try:
        with open(out) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        rep = None
    finally:
        os.unlink(out)
    replay = (f"PYTHONPATH={tree} python -m pyharness run --scenario {scenario} "
              f"--duration {seconds:g} --seed {seed} {' '.join(mutant.flags)}").strip()
    if rep is None:
        return {"scenario": scenario, "seed": seed, "caught": False, "error": True,
                "invariants": [], "after_s": None, "wall_s": wall, "status": "error",
                "exit_code": rc, "detail": (err or "").strip().splitlines()[-1:], "replay": replay}
    caught = rep["verdict"] == "fail"
    after = rep.get("first_evidence_s")
    if caught and after is None:
        after = rep["elapsed_s"]
    first = rep["violations"][0]["detail"] if rep["violations"] else None
    return {"scenario": scenario, "seed": seed, "caught": caught, "error": False,
            "invariants": sorted(rep["violation_counts"]), "after_s": after, "wall_s": wall,
            "status": rep["status"], "exit_code": rc, "detail": first, "replay": replay}


def evaluate(mutants, runs=1, seconds=CAP_S, cpus=None, progress=None, keep=None, root=None):
    """Build every mutant (two at a time), then run each: returns rows."""
    root = root or source_root()
    if root is None:
        raise UnsupportedError("`pyharness mutate` needs a source checkout (csrc/); this pyharness "
                               "was installed without one")
    work = keep or tempfile.mkdtemp(prefix="pyharness-mutate-")
    rows = []
    interrupted = False
    try:
        todo = [m for m in mutants if not m.equivalent]
        trees = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futs = {pool.submit(build, root, m, work): m for m in todo}
            for fut in concurrent.futures.as_completed(futs):
                m = futs[fut]
                try:
                    trees[m.name] = fut.result()
                except UnsupportedError as exc:
                    trees[m.name] = exc
        for m in mutants:
            if interrupted:
                break
            row = {"mutant": m.name, "file": os.path.basename(m.path), "models": m.models,
                   "expect": m.expect, "equivalent": m.equivalent, "runs": []}
            if m.equivalent:
                rows.append(row)
                continue
            tree = trees[m.name]
            if isinstance(tree, Exception):
                row["build_error"] = str(tree)
                rows.append(row)
                continue
            for k in range(runs):
                for sc in m.scenarios:
                    if progress:
                        progress(f"{m.name}: {sc}, run {k + 1}/{runs}")
                    r = run_once(tree, m, sc, seconds, seed=1 + k, cpus=cpus)
                    row["runs"].append(r)
                    if r["exit_code"] == 130:
                        interrupted = True
                        break
                    if r["caught"]:
                        break      # one scenario that catches it is enough for this run
                if interrupted:
                    break
            rows.append(row)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        _summarize(row, runs, seconds)
    if interrupted:
        raise MutateInterrupted(rows)
    return rows


class MutateInterrupted(KeyboardInterrupt):
    """Ctrl-C: the rows measured so far."""

    def __init__(self, rows):
        super().__init__()
        self.rows = rows


def _summarize(row, runs, seconds):
    if row.get("equivalent"):
        row["verdict"] = "equivalent"
        return
    if row.get("build_error"):
        row["verdict"] = "error"
        row["caught_runs"] = 0
        return
    per_run = {}
    for r in row["runs"]:
        per_run.setdefault(r["seed"], []).append(r)
    caught = [rs for rs in per_run.values() if any(r["caught"] and r["after_s"] is not None
                                                   and r["after_s"] <= seconds for r in rs)]
    row["caught_runs"] = len(caught)
    row["total_runs"] = runs
    times = [min(r["after_s"] for r in rs if r["caught"]) for rs in caught]
    row["after_s"] = {"median": statistics.median(times), "max": max(times)} if times else None
    invs = sorted({i for rs in caught for r in rs if r["caught"] for i in r["invariants"]})
    row["invariants"] = invs
    row["verdict"] = ("caught" if len(caught) == runs else "sometimes" if caught else "missed")


def score(rows):
    scored = [r for r in rows if r["verdict"] != "equivalent"]
    caught = [r for r in scored if r["verdict"] == "caught"]
    return len(caught), len(scored)


def format_table(rows):
    w = max([len("mutant")] + [len(r["mutant"]) for r in rows])
    lines = [f"{'mutant':{w}s}  {'caught':>7s}  {'time to catch':>15s}  by invariant"]
    for r in rows:
        if r["verdict"] == "equivalent":
            lines.append(f"{r['mutant']:{w}s}  {'-':>7s}  {'-':>15s}  equivalent: {r['equivalent']}")
            continue
        if r["verdict"] == "error":
            lines.append(f"{r['mutant']:{w}s}  {'error':>7s}  {'-':>15s}  {r['build_error']}")
            continue
        t = r["after_s"]
        tt = f"{t['median']:.2f}/{t['max']:.2f} s" if t else "-"
        lines.append(f"{r['mutant']:{w}s}  {r['caught_runs']:>3d}/{r['total_runs']:<3d}  {tt:>15s}  "
                     f"{','.join(r['invariants']) or 'MISSED'}")
    got, total = score(rows)
    eq = sum(1 for r in rows if r["verdict"] == "equivalent")
    lines.append(f"score: {got}/{total} non-equivalent mutants caught in every run "
                 f"({eq} equivalent, left out); time to catch is median/max over runs")
    return "\n".join(lines)
