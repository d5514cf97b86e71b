"""`pyharness compare`: the arguments become keywords here, at the boundary."""
from ..compare import compare_figures, format_report, load


def compare_main(args):
    """`pyharness compare OLD NEW [--fail-above F] [--basis B]`."""
    old, new = load(args.old), load(args.new)
    rows, summ, code = compare_figures(old, new, args.fail_above,
                                       getattr(args, "basis", None) or "auto")
    fmt = getattr(args, "format", None) or "text"
    if fmt == "md":
        from ..history.formats import compare_md
        print(compare_md(rows, summ))
    elif fmt == "json":
        from ..history.formats import compare_json
        print(compare_json(rows, summ, code))
    else:
        print(format_report(rows, summ, old, new))
    return code
