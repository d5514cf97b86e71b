"""`pyharness merge`: the arguments become keywords here, at the boundary."""
import sys

from ..fleet.merge import litmus_table, merge, merge_store, table


def merge_main(args):
    from .. import documents
    if args.json:
        from ..outputs import check_output_path
        check_output_path(args.json)
    from ..errors import UsageError
    if args.store is not None and args.dirs:
        raise UsageError("merge takes campaign directories or --store, not both")
    if args.store is None and not args.dirs:
        raise UsageError("nothing to merge: give campaign directories, or --store URL")
    expect = [h.strip() for h in args.expect.split(",") if h.strip()] if args.expect else None
    doc = merge_store(args.store) if args.store is not None else merge(args.dirs, expect)
    code = 1 if any(r["failed_steps"] for r in doc["rows"]) or doc.get("missing") else 0
    if args.json and not documents.write(doc, args.json, "--json", "merge") and code == 0:
        code = 3
    if args.format == "json":
        print(documents.dumps(doc), end="")
    else:
        out = sys.stderr if args.json == "-" else sys.stdout
        print(table(doc, args.format), file=out)
        lt = litmus_table(doc, args.format)
        if lt:
            print("\nlitmus verdicts by CPU model and microcode:", file=out)
            print(lt, file=out)
    return code
