"""--protocol rfc: the RFC's steps with pyharness's acks (csrc/proto/rfc.c)."""
from . import Protocol

PROTOCOL = Protocol("rfc")
