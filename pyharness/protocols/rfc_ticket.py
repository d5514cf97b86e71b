"""--protocol rfc-ticket: the RFC's steps with one shared ticket of acks
(csrc/proto/ticket.c).  A correct protocol: it runs with everything our
rfc protocol runs with, and is held to every invariant."""
from . import Protocol

PROTOCOL = Protocol("rfc-ticket")
