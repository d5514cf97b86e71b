"""What every target's items are: a thing to flip, and the evidence that a
flip took effect."""


class Item:
    """One flippable thing: name, what the kernel patches for it."""

    def __init__(self, name, patches):
        self.name, self.patches = name, patches

    def flip(self, on):             # pragma: no cover - every item defines it
        raise NotImplementedError

    def evidence(self, on):
        """After a flip: {"ok": bool, "what": text}, from what can be seen."""
        return {"ok": True, "what": "none beyond the IPIs"}
