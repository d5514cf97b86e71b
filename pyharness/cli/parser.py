"""The one command-line parser: every command, option, choice and default.

`pyharness completion` and `pyharness manpage` are generated from it (shtab,
argparse-manpage), so the shell, the man page and --help never disagree.
"""
import argparse
import sys

from ..errors import EXIT_USAGE
from ..units import parse_duration

from ..engine import AIMS, BPS, KINDS, POKES, PROTOCOLS, SECSYNCS as SECONDARY_SYNCS, STRESS, SYNCS
from ..engine import table_descriptions
from .._ffi import lib
PLACEMENTS = ("default", "spread", "one-per-core", "smt-pairs", "cross-package")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default after its help, where it has one worth saying."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS, [], ""):
            return text
        if action.option_strings and action.nargs != 0:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*a, **kw)

    def error(self, message):
        # One clear line, the documented exit code, no usage dump; the help
        # it points to is this (sub)command's own.
        sys.stderr.write(f"pyharness: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def _duration(text):
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(text):
    v = _duration(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be more than 0")
    return v


def _nonneg_float(text):
    import math
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    if v < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    return v


def _int_from(low, base=10):
    """An argparse type: an integer of at least ``low``."""
    def convert(text):
        try:
            v = int(text, base)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"'{text}' must be at least {low}" if low else
                                             f"'{text}' must not be negative")
        return v
    return convert


_pos_int = _int_from(1)
_nonneg_int = _int_from(0, base=0)


def _store_options(p, what):
    p.add_argument("--store", nargs="?", const="", default=None, metavar="URL",
                   help=f"record {what} in a results store: sqlite:///path, a path, or "
                        "postgresql://host/db; alone: $PYHARNESS_STORE or "
                        "~/.local/share/pyharness/results.db")
    p.add_argument("--tag", action="append", default=None, metavar="KEY=VALUE",
                   help="tag the stored result (repeatable), e.g. --tag kernel=6.18-rc1")


def _read_store_option(p):
    p.add_argument("--store", default=None, metavar="URL",
                   help="the results store (default: $PYHARNESS_STORE or "
                        "~/.local/share/pyharness/results.db)")


def _json_option(p, what="the JSON result"):
    p.add_argument("--json", default=None, metavar="PATH",
                   help=f"write {what} here (- for standard output)")


def _quiet(p):
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress and no tables: only the verdict line and errors")


def _version():
    from .. import __version__
    try:
        from .._ffi import lib
        from .._ffi import ffi
        commit = ffi.string(lib.ph_build_commit()).decode() if hasattr(lib, "ph_build_commit") else ""
    except Exception:   # noqa: BLE001 - --version must work without the core
        commit = ""
    return f"pyharness {__version__}" + (f" ({commit})" if commit else "")


def build_parser():
    p = Parser(prog="pyharness", description="Stress tester for runtime code patching "
               "(cross-modifying code) on Linux x86_64.",
               epilog="Exit codes: 0 pass, 1 violations found, 2 bad usage or input, 3 this "
                      "environment cannot run it, 130 interrupted.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    r = sub.add_parser("run", help="run the patching protocol under stress and check it")
    r.add_argument("--scenario", default=None, help="preset (see `pyharness scenarios`); default rfc-native")
    r.add_argument("--sites", type=_pos_int, default=None,
                   help="sites to lay out; without --duration each is patched once (default 1000)")
    r.add_argument("--duration", type=_duration, default=None, metavar="TIME",
                   help="patch for this long instead of once per site: seconds, or 90s, 5m, 2h")
    r.add_argument("--cpus", default=None, help='CPU list, e.g. "0-3,7" (default: every usable CPU)')
    r.add_argument("--threads", type=_pos_int, default=None,
                   help="participant threads (default one per CPU; more oversubscribes)")
    r.add_argument("--primary", type=_nonneg_int, default=None, help="CPU of the primary (default: first)")
    r.add_argument("--placement", default=None, choices=PLACEMENTS,
                   help="default | spread (across packages, then cores) | one-per-core | smt-pairs "
                        "(primary and a secondary on SMT siblings) | cross-package")
    r.add_argument("--retest", type=_nonneg_int, default=0, metavar="N",
                   help="on failure: rerun N times (the same seed, then new ones) for a "
                        "reproduction rate, then move the roles around to localize it")
    r.add_argument("--poke", default="mprotect", choices=tuple(POKES), help="how the text is written")
    r.add_argument("--sync", default="cpuid", choices=tuple(SYNCS), help="the serializing instruction")
    r.add_argument("--bp", default=None, choices=tuple(BPS),
                   help="the breakpoint path (default: the scenario's)")
    r.add_argument("--secondary-sync", default=None, choices=tuple(SECONDARY_SYNCS),
                   help="how secondaries are serialized (default: the scenario's)")
    r.add_argument("--site-kinds", default=None, help="comma list of " + ",".join(KINDS))
    r.add_argument("--nmi-rate", type=_nonneg_float, default=None, help="NMIs per second per thread")
    r.add_argument("--executors", type=_nonneg_int, default=None,
                   help="threads that execute sites at full speed")
    r.add_argument("--batch", type=_pos_int, default=None, help="sites per poke_sync round")
    r.add_argument("--protocol", default="rfc", choices=tuple(PROTOCOLS),
                   help="; ".join(f"{n}: {d}" for n, d in
                                  table_descriptions(lib.PH_TABLE_PROTOCOL).items()))
    r.add_argument("--nmi-mode", action="store_true", default=None,
                   help="the RFC's NMI mode (patch 19): the primary patches, and each secondary "
                        "runs its finish loop, inside its own NMI")
    r.add_argument("--stress", default=None,
                   help="the RFC selftest's conditions: comma list of " + ", ".join(STRESS) +
                        "; or all, or none")
    r.add_argument("--nmi-level", type=_nonneg_int, default=None,
                   help="NMI handler: 1 run the site, 2 also take a lock shared by all threads, "
                        "3 also hold it 1 us")
    r.add_argument("--sessions", type=_pos_int, default=None,
                   help="stop_machine calls in the run (the run's sites or time split among them)")
    r.add_argument("--aim", default=None,
                   help="aim NMIs and executions at the windows between pokes: comma list of "
                        + ",".join(AIMS) + ", or all, or none (default: the scenario's)")
    r.add_argument("--trace", type=_nonneg_int, default=4096,
                   help="trace events kept per thread (power of two; 0 = off)")
    r.add_argument("--mutant", default="none", help="run a deliberately broken protocol")
    r.add_argument("--seed", type=_nonneg_int, default=1, help="seed of the schedule and NMI timings")
    r.add_argument("--deadline", type=_positive_duration, default=10.0, metavar="TIME",
                   help="the longest any protocol wait may take, in seconds")
    r.add_argument("--timeout", type=_positive_duration, default=600.0, metavar="TIME",
                   help="time limit of a --sites run (a --duration run is limited by its duration)")
    r.add_argument("--grace", type=_duration, default=5.0, metavar="TIME",
                   help="after the limit, a worker with no progress for this long is hung and "
                        "killed; one still progressing (overloaded) gets up to 4x this more")
    r.add_argument("--inject-delay-ns", type=_nonneg_int, default=0,
                   help="busy wait added to each poke_sync round (benchmark self-check)")
    r.add_argument("--mdwe", action="store_true",
                   help="set PR_SET_MDWE in the worker first (as systemd's MemoryDenyWriteExecute)")
    r.add_argument("--stop-on-violation", action="store_true",
                   help="end the run at the first evidence of a violation (bisecting, mutation runs)")
    _json_option(r, "the JSON report")
    r.add_argument("--log", default=None, metavar="PATH",
                   help="JSON Lines while the run goes on (start, progress each second, each "
                        "violation as found, end), synced to disk every few seconds")
    r.add_argument("--junit", default=None, metavar="PATH",
                   help="JUnit XML: a test case per invariant")
    r.add_argument("--metrics", default=None, metavar="PATH",
                   help="Prometheus text format, for node_exporter's textfile collector")
    _quiet(r)
    _store_options(r, "the run report")

    sub.add_parser("scenarios", help="list the scenarios")

    s = sub.add_parser("selftest", help="prove the checker catches each seeded bug")
    s.add_argument("--seconds", type=_positive_duration, default=3.0, metavar="TIME",
                   help="length of each correct-protocol run (mutants stop when caught, 10 s max)")
    s.add_argument("--cpus", default=None, help="CPU list (default: every usable CPU)")
    s.add_argument("--false-positives", action="store_true",
                   help="instead: the correct protocols under every condition (scenarios, protocols, "
                        "syncs, pokes, NMI rates, sessions, threads, stress, NMI mode, deadline), "
                        "--seeds runs of --seconds each; exit 1 on any FAIL")
    s.add_argument("--seeds", type=_pos_int, default=10, help="with --false-positives: runs per configuration")
    s.add_argument("--subset", action="store_true",
                   help="with --false-positives: six configurations only (CI)")
    _json_option(s, "the selftest's rows")
    _quiet(s)

    b = sub.add_parser("bench", help="measure what the protocol costs and its floor")
    b.add_argument("--quick", action="store_true", help="under a minute on 2 CPUs")
    _json_option(b, "the bench result")
    b.add_argument("--cpus", default=None, help="CPU list (default: every usable CPU)")
    b.add_argument("--inject-delay-ns", type=_nonneg_int, default=0,
                   help="busy wait added to each poke_sync round: a deliberate regression, "
                        "to check that `pyharness compare` catches it")
    b.add_argument("--check-targets", action="store_true",
                   help="exit 1 when a speed target (Python share, ratio to the floor, batch "
                        "gain) is missed")
    _quiet(b)
    _store_options(b, "the result")

    m = sub.add_parser("mutate", help="build each source mutant (tests/mutants) and check that "
                                      "the checker catches it")
    m.add_argument("--only", default=None, help="comma list of mutant names or file prefixes")
    m.add_argument("--runs", type=_pos_int, default=1, help="runs per mutant (seeds 1..N)")
    m.add_argument("--seconds", type=_positive_duration, default=10.0, metavar="TIME",
                   help="cap per run; a mutant must be caught within it")
    m.add_argument("--cpus", default=None, help="CPU list (default: every usable CPU)")
    m.add_argument("--source", default=None, metavar="DIR",
                   help="the pyharness source tree to mutate (default: this checkout, or the "
                        "current directory)")
    m.add_argument("--mutants", default=None, metavar="DIR", help="default: tests/mutants of the source tree")
    m.add_argument("--keep", default=None, metavar="DIR", help="build the scratch trees here and keep them")
    _json_option(m, "the mutation table")
    _quiet(m)

    lt = sub.add_parser("litmus", help="cross-modifying-code litmus tests on this CPU: the shapes "
                                       "JITs and patchers ship, with controls, as litmus7 verdicts")
    lt.add_argument("--list", action="store_true", help="list the shipped tests and exit")
    lt.add_argument("--only", default=None, metavar="NAMES",
                    help="comma list of shipped tests (the two controls always run)")
    lt.add_argument("--test", action="append", default=None, metavar="FILE",
                    help="a test of your own, a TOML file (repeatable; format: README, "
                         "schema: litmus-test.schema.json)")
    lt.add_argument("--time", type=_positive_duration, default=1.0, metavar="TIME",
                    help="per test and placement")
    lt.add_argument("--positive-executions", type=_pos_int, default=10 ** 8, metavar="N",
                    help="raced executions the positive control's Never must rest on")
    lt.add_argument("--positive-cap", type=_positive_duration, default=150.0, metavar="TIME",
                    help="the most the positive control runs to reach them")
    lt.add_argument("--cpus", default=None, help="CPU list: the first writes, one more per "
                                                  "placement executes (default: every usable CPU)")
    _json_option(lt, "the verdicts")
    _quiet(lt)
    _store_options(lt, "the verdicts")

    kn = sub.add_parser("kernel", help="the running kernel's own patching under stress (changes "
                                       "global kernel state, restores it; needs root)")
    kn.add_argument("--targets", default=None, metavar="LIST",
                    help="comma list: static-key, trace-event, uprobe, bpf-jump, nmi (default: every "
                         "target this kernel allows)")
    kn.add_argument("--duration", type=_positive_duration, default=30.0, metavar="TIME",
                    help="the whole run's, shared among the targets")
    kn.add_argument("--cpus", default=None, help="CPUs the drivers run on (default: every usable CPU)")
    kn.add_argument("--dry-run", action="store_true", help="name everything a run would touch, touch nothing")
    kn.add_argument("--restore", action="store_true",
                    help="replay the restore record an interrupted run left (after a kill of its cgroup)")
    _json_option(kn, "the kernel report")
    _quiet(kn)
    _store_options(kn, "the kernel report")

    g = sub.add_parser("campaign", help="selftest, scenario matrix across placements and bench, "
                                        "sized by a time budget, kept under one directory")
    g.add_argument("--budget", default="5m", help="5m | 1h | 8h | forever, or a duration (90s, 20m)")
    g.add_argument("--out", default="results", metavar="DIR",
                   help="results go to DIR/<host>-<date>/")
    g.add_argument("--cpus", default=None, help="CPU list (default: every usable CPU)")
    g.add_argument("--kernel", action="store_true",
                   help="also `pyharness kernel` (changes global kernel state, restores it; root): "
                        "never by default")
    g.add_argument("--store", default=None, metavar="URL",
                   help="also record every run, bench, litmus and kernel result in this store "
                        "(sqlite:///path, a path, or postgresql://host/db): the fleet's meeting point")
    _quiet(g)

    fl = sub.add_parser("fleet", help="launch files for the engines fleets run: an Ansible role, a "
                                      "Slurm job array, a Kubernetes DaemonSet")
    fls = fl.add_subparsers(dest="fleet_command", metavar="COMMAND", parser_class=Parser)
    fls.required = True
    fe = fls.add_parser("export", help="write an engine's files to a new directory")
    fe.add_argument("engine", choices=["ansible", "slurm", "kubernetes"])
    fe.add_argument("dir", metavar="DIR", help="a new (or empty) directory")
    fe.add_argument("--wheel", default=None, metavar="WHEEL",
                    help="a pyharness wheel to ship with the files (the role and the image install it)")

    mg = sub.add_parser("merge", help="merge campaign directories from many boxes into one table")
    mg.add_argument("dirs", nargs="*", metavar="DIR")
    mg.add_argument("--store", nargs="?", const="", default=None, metavar="URL",
                    help="merge every result in this store instead of directories (alone: "
                         "$PYHARNESS_STORE or ~/.local/share/pyharness/results.db)")
    mg.add_argument("--expect", default=None, metavar="HOSTS",
                    help="comma list of the hosts the fleet ran on: each one without a result is "
                         "a row (\"no result: unreachable\", \"install failed\", \"timed out\") and exit 1")
    _json_option(mg, "the merged table")
    mg.add_argument("--format", default="text", choices=["text", "md", "json"])

    c = sub.add_parser("compare", help="compare two bench JSON files")
    c.add_argument("old")
    c.add_argument("new")
    c.add_argument("--fail-above", type=_nonneg_float, default=0.10,
                   help="fail when a figure regressed significantly by more than this fraction")
    c.add_argument("--basis", default="auto", choices=["auto", "raw", "normalized"],
                   help="gate on raw time, or on cost relative to the run's own floor "
                        "(auto: normalized under a hypervisor)")
    c.add_argument("--format", default="text", choices=["text", "md", "json"])

    h = sub.add_parser("history", help="each figure's history in the results store, with its "
                                       "change points")
    _read_store_option(h)
    h.add_argument("--figure", action="append", default=None, metavar="GLOB",
                   help='figures to show, e.g. "rfc/*" (repeatable; default all)')
    h.add_argument("--machine", default=None, metavar="M",
                   help="a hostname, a CPU model substring or a machine identity prefix")
    h.add_argument("--tag", action="append", default=None, metavar="KEY=VALUE",
                   help="only results with this tag (repeatable)")
    h.add_argument("--by", default="time", metavar="time|TAG",
                   help="order by time or by a tag's value, e.g. --by build")
    h.add_argument("--threshold", type=_nonneg_float, default=0.10,
                   help="a change must be larger than this fraction")
    h.add_argument("--basis", default="auto", choices=["auto", "raw", "normalized"],
                   help="judge raw time or cost relative to the run's floor (auto: normalized "
                        "under a hypervisor, as compare)")
    h.add_argument("--kind", default="bench", choices=["bench", "run", "litmus", "kernel"])
    h.add_argument("--check", action="store_true",
                   help="exit 1 when a figure's newest point starts or belongs to a segment "
                        "slower than the one before by more than the threshold")
    h.add_argument("--format", default="text", choices=["text", "md", "json"])

    st = sub.add_parser("store", help="the results store: import JSON results, show what it holds")
    ss = st.add_subparsers(dest="store_command", metavar="SUBCOMMAND", parser_class=Parser)
    ss.required = True
    si = ss.add_parser("import", help="load bench or run JSON files into the store")
    si.add_argument("files", nargs="+", metavar="FILE.json")
    si.add_argument("--store", default=None, metavar="URL",
                    help="default: $PYHARNESS_STORE or ~/.local/share/pyharness/results.db")
    si.add_argument("--tag", action="append", default=None, metavar="KEY=VALUE")
    sinfo = ss.add_parser("info", help="where the store is, its schema revision, what it holds")
    _read_store_option(sinfo)

    pl = sub.add_parser("plot", help="draw bench and run JSON as PNG or SVG images (matplotlib)")
    pl.add_argument("files", nargs="+", metavar="FILE.json")
    pl.add_argument("--out", default=".", metavar="DIR", help="directory for the images (created)")
    pl.add_argument("--format", default="png", choices=["png", "svg"])

    rp = sub.add_parser("report", help="one self-contained HTML file: history charts with change "
                                       "points, bench curves, run latencies and violations")
    rp.add_argument("files", nargs="*", metavar="FILE.json", help="bench or run JSON results")
    rp.add_argument("--store", nargs="?", const="", default=None, metavar="URL",
                    help="include the store's history (alone: the default store)")
    rp.add_argument("--figure", action="append", default=None, metavar="GLOB")
    rp.add_argument("--machine", default=None, metavar="M")
    rp.add_argument("--tag", action="append", default=None, metavar="KEY=VALUE")
    rp.add_argument("--by", default="time", metavar="time|TAG",
                    help="order the history by time or by a tag's value (its labels too)")
    rp.add_argument("--out", required=True, metavar="PATH", help="the HTML file to write")

    co = sub.add_parser("completion", help="print a shell completion script (generated from "
                                           "this parser)")
    co.add_argument("shell", choices=["bash", "zsh", "tcsh"],
                    help='e.g. pyharness completion bash > /etc/bash_completion.d/pyharness')

    sub.add_parser("manpage", help="print the man page (roff, generated from this parser): "
                                   "pyharness manpage | man -l -")
    return p


def subparser(parser, names):
    """The (sub)parser a parsed command line ended in: names = (command, ...)."""
    cur = parser
    for name in names:
        if not name:
            break
        acts = [a for a in cur._actions if isinstance(a, argparse._SubParsersAction)]
        if not acts or name not in acts[0].choices:
            break
        cur = acts[0].choices[name]
    return cur
