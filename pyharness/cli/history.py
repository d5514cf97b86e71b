"""`pyharness history`: the arguments become keywords here, at the boundary."""
import sys

from ..errors import PyharnessError, UsageError
from ..history.series import build_history, check_code, parse_tags
from ..history.store import open_store


def store_main(args):
    if args.store_command == "import":
        from .. import documents
        tags = parse_tags(args.tag)
        # One file at a time (memory bounded by the largest, not the sum):
        # one that is not a result is one line and exit 2, and the others
        # still go in; the store is opened once the first file reads.
        failed, store, added = [], None, 0
        for path in args.files:
            try:
                doc = documents.load(path, ("bench", "run"))
            except PyharnessError as exc:
                sys.stderr.write(f"pyharness: error: {exc}\n")
                failed.append(exc)
                continue
            if store is None:
                store = open_store(args.store)
            try:
                rid, new = store.add(doc, tags=tags, source=path)
            except PyharnessError as exc:      # one line per file; the others still go in
                sys.stderr.write(f"pyharness: error: {path}: {exc}\n")
                failed.append(exc)
                continue
            added += new
            print(f"{path}: result {rid}" + ("" if new else " (already stored)"))
        if store is None:
            return max(e.exit_code for e in failed)
        print(f"{added} of {len(args.files)} imported into {store.describe()}"
              + (f"; {len(failed)} failed" if failed else ""))
        return max((e.exit_code for e in failed), default=0)
    if args.store_command == "info":
        store = open_store(args.store, create=False)
        rows = store.results()
        print(f"store: {store.describe()}")
        print(f"schema revision: {store.revision() or 'none (an empty database: initialised on first write)'}")
        print(f"results: {len(rows)} ({sum(r['kind'] == 'bench' for r in rows)} bench, "
              f"{sum(r['kind'] == 'run' for r in rows)} run)")
        hosts = {}
        for r in rows:
            hosts.setdefault((r["hostname"], r["cpu_model"], r["kernel"]), 0)
            hosts[(r["hostname"], r["cpu_model"], r["kernel"])] += 1
        for (h, c, k), n in sorted(hosts.items(), key=str):
            print(f"  {h}: {c}, kernel {k}: {n} results")
        return 0
    raise UsageError("store: expected a subcommand (import, info)")


def history_main(args):
    from ..history.formats import history_json, history_md, history_text
    store = open_store(args.store, create=False)
    hist = build_history(store, figure=args.figure, machine=args.machine,
                         tags=parse_tags(args.tag), by=args.by, threshold=args.threshold,
                         basis=args.basis, kind=args.kind)
    code = check_code(hist) if args.check else 0
    if args.format == "json":
        print(history_json(hist, args.check, code))
    elif args.format == "md":
        print(history_md(hist, args.check))
    else:
        print(history_text(hist, args.check))
    from ..history.changes import MIN_POINTS
    from ..history.series import judged, young_line
    line = young_line(hist)
    if line and args.format != "json":
        (sys.stderr if args.format == "md" else sys.stdout).write(
            ("check: " if args.check else "") + line + "\n")
    if args.check and not judged(hist) and hist["results"] < MIN_POINTS:
        if not line:
            print(f"check: {hist['results']} result(s): a change needs {MIN_POINTS} to be told "
                  "from noise; nothing is judged yet")
        return 0        # a young history does not break CI
    if args.check and not judged(hist):
        sys.stderr.write("pyharness history: --check found no series it can judge (none, or "
                         "only primitives under a hypervisor)\n")
        return 2
    return code
