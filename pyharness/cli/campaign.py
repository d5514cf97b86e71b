"""`pyharness campaign`: the arguments become keywords here, at the boundary."""
import os
import signal

from ..errors import EXIT_INTERRUPTED, UsageError
from ..fleet.campaign import expected_to_fail, parse_budget, run_campaign, summary_text


def campaign_main(args):
    budget = parse_budget(args.budget)
    if args.store is not None:
        # opened (and migrated) now: a bad URL is exit 2/3 before the work, not after it
        from ..history.store import open_store
        open_store(args.store)
    if not os.path.isdir(args.out):
        try:
            os.makedirs(args.out)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: {exc.strerror}") from None
    if not os.access(args.out, os.W_OK):
        raise UsageError(f"--out {args.out}: not writable")
    quiet = getattr(args, "quiet", False)
    old = signal.getsignal(signal.SIGINT)
    s = run_campaign(budget, args.out, cpus=args.cpus,
                     progress=(lambda _text: None) if quiet else print, kernel=args.kernel,
                     store=args.store)
    signal.signal(signal.SIGINT, old)
    text = summary_text(s)
    print(text.splitlines()[-1] + f" ({s['dir']})" if quiet else text)
    if s["interrupted"]:
        return EXIT_INTERRUPTED
    worst = max((st["rc"] for st in s["steps"] if not expected_to_fail(st)), default=0)
    return min(worst, 255)
