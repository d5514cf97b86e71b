"""pyharness kernel: the running kernel's own patching under stress
(targets.py), observed from outside the kernel, every global change
written down before it is made and undone on every exit (record.py,
restorer.py)."""
