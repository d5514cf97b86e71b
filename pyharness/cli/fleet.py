"""`pyharness fleet export ENGINE DIR`."""
from ..errors import EXIT_PASS


def fleet_main(args):
    from ..fleet.export import export
    files, launch = export(args.engine, args.dir, wheel=args.wheel)
    print(f"wrote {len(files)} files to {args.dir}: {', '.join(files)}")
    print(f"launch: cd {args.dir} && {launch}")
    return EXIT_PASS
