"""Each protocol's Python description: what it can run with, what the
checker tolerates of it, how a failure of it is diagnosed, how the
selftest proves it -- one module per protocol, named after its line in
csrc/proto/protocols.def (``-`` as ``_``).

    from pyharness import protocols
    protocols.get("rfc-as-posted").ack_map      # True

Adding a protocol is its C file, its table line and its module here
(README, "Adding a protocol").  A protocol in the C table without a
module here is an error at import: nothing runs it half described.
"""
import dataclasses
import importlib
from typing import Callable, Optional, Tuple

from ..engine import PROTOCOLS, table_descriptions
from .._ffi import lib


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What Python knows of one protocol (its C side: struct ph_proto)."""
    name: str
    # What it runs with: the secondary syncs (--secondary-sync) it takes,
    # and whether executors may run beside it (stop_machine has none).
    secondary_syncs: Tuple[str, ...] = ("ack", "membarrier")
    executors: bool = True
    # Why it cannot run what it refuses, said with the refusal.
    why: str = ""
    # Its acks are the RFC's shared map (a bit per thread, num_acks): the
    # diagnosis shows the map, the reports its weight.
    ack_map: bool = False
    # SYNC_DONE acks a secondary may give beyond the published ones, per
    # session (the posted finish loop sets its bit on each session's first
    # SYNC_DONE too).
    extra_done_acks_per_session: int = 0
    # diagnose(view, config, violations, d, find): findings of its own
    # beyond the shared ones (pyharness/diagnose.py); None: none.
    diagnose: Optional[Callable] = None
    # A protocol known to fail: the selftest runs it as (scenario, options)
    # and it must be caught, its findings diagnosed; None: a correct
    # protocol, held to zero violations wherever it runs.
    must_fail: Optional[Tuple[str, dict]] = None

    @property
    def description(self):
        return table_descriptions(lib.PH_TABLE_PROTOCOL)[self.name]

    def check(self, config):
        """A UsageError's message if ``config`` asks what this protocol
        cannot run, else None."""
        why = f" ({self.why})" if self.why else ""
        if config.secondary_sync not in self.secondary_syncs:
            return (f"--protocol {self.name} runs with --secondary-sync "
                    f"{' or '.join(self.secondary_syncs)} only{why}")
        if config.executors and not self.executors:
            return f"--protocol {self.name} runs without --executors{why}"
        return None

    def diagnose_hang(self, view, config, d, waits, amap, find):
        """Its own findings of a hung run (the shared ones are
        pyharness/diagnose.py's); none unless it says."""
        if self.diagnose:
            self.diagnose(view, config, d, waits, amap, find)


def module_name(name):
    return __name__ + "." + name.replace("-", "_")


def _load():
    out = {}
    for name in PROTOCOLS:
        mod = importlib.import_module(module_name(name))
        proto = getattr(mod, "PROTOCOL", None)
        if not isinstance(proto, Protocol) or proto.name != name:
            raise ImportError(f"{module_name(name)} must define PROTOCOL = Protocol({name!r}, ...)")
        out[name] = proto
    return out


REGISTRY = _load()


def get(name):
    return REGISTRY[name]
