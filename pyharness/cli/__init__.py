"""Command line: pyharness run | scenarios | selftest | mutate | bench | compare | history |
store | report | plot | campaign | merge | completion | manpage.

Exit codes: 0 pass, 1 violations found, 2 bad usage or input, 3 this
environment cannot run it, 130 interrupted.  Errors are one line on stderr;
an unexpected exception is one line too, and exits 70 (EX_SOFTWARE), never
a documented code.
"""
import os
import sys

from ..errors import (EXIT_INTERRUPTED, EXIT_PASS, EXIT_USAGE, EXIT_VIOLATIONS, PyharnessError,
                      UsageError)
from .parser import build_parser, subparser

EXIT_SOFTWARE = 70      # sysexits.h: an internal error, not a verdict

_COMMANDS = {
    "run": (".run", "run_main", True),
    "scenarios": (".run", "scenarios_main", False),
    "selftest": (".selftest", "selftest_main", False),
    "bench": (".bench", "bench_main", False),
    "mutate": (".mutate", "mutate_main", False),
    "litmus": (".litmus", "litmus_main", False),
    "kernel": (".kernel", "kernel_main", False),
    "fleet": (".fleet", "fleet_main", False),
    "campaign": (".campaign", "campaign_main", False),
    "merge": (".merge", "merge_main", False),
    "compare": (".compare", "compare_main", False),
    "history": (".history", "history_main", False),
    "store": (".history", "store_main", False),
    "plot": (".plot", "plot_main", False),
    "report": (".report", "report_main", False),
}


def _completion(args, parser):
    import shtab
    sys.stdout.write(shtab.complete(parser, shell=args.shell))
    return EXIT_PASS


def _manpage(args, parser):
    from argparse_manpage.manpage import Manpage
    from .. import __version__
    parser.man_short_description = "stress tester for runtime code patching"
    sys.stdout.write(str(Manpage(parser, _data={"version": __version__, "project_name":
                                                "pyharness"})))
    return EXIT_PASS


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:     # named against the subcommand whose help lists what it takes
        sub = subparser(parser, (args.command, getattr(args, "store_command", None)))
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "completion":
            return _completion(args, parser)
        if args.command == "manpage":
            return _manpage(args, parser)
        modname, fname, wants_argv = _COMMANDS[args.command]
        import importlib
        fn = getattr(importlib.import_module(modname, __name__), fname)
        return fn(args, argv) if wants_argv else fn(args)
    except PyharnessError as exc:
        sys.stderr.write(f"pyharness: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("pyharness: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed (| head): what was asked for is written; stay quiet
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_PASS
    except Exception as exc:   # noqa: BLE001 - a bug of ours: one line, not a verdict's code
        if os.environ.get("PYHARNESS_TRACEBACK"):
            raise
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        sys.stderr.write(f"pyharness: internal error: {type(exc).__name__}: {exc}{where} "
                         f"(a bug in pyharness; PYHARNESS_TRACEBACK=1 shows the traceback)\n")
        return EXIT_SOFTWARE


__all__ = ["main", "build_parser", "EXIT_PASS", "EXIT_VIOLATIONS", "UsageError", "EXIT_USAGE"]
