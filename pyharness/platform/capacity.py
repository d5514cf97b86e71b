"""What a configuration asks of the box, against what the box can deliver.

    signal_warning(args) -> a sentence, or None

Each participant thread gets --nmi-rate "NMIs" a second from its own POSIX
timer; the kernel delivers every one as a signal on a CPU the run uses.
Past a few tens of thousands of signals a second per CPU, the CPUs spend
their time entering and leaving signal handlers: the protocol still runs,
but slowly, and the supervisor sees a slow worker.  Measured on the 2-vCPU
VM (AMD EPYC under KVM, Linux 6.18), --duration 5, signals delivered a
second while the run went on:

    threads x rate    asked/s   delivered/s   run
    1024 x 50          51,000       53,000    pass, 7.3 s
    1024 x 100        102,000       54,000    ended 15 s (killed as hung before the fix)
    1024 x 200        205,000       74,000    ended 15-51 s (likewise)
    256 x 800         205,000      103,000    pass, 5.3 s

so the box delivers at most about 100,000 a second, 45,000-50,000 per CPU.
"""

SIGNALS_PER_CPU = 45000.0     # what one CPU delivers (above)
WARN_SHARE = 0.8              # warn when a run asks for more than this share of it
MANY_THREADS_PER_CPU = 128    # ... or half of it with this many threads a CPU


def signal_warning(threads, nmi_rate, ncpus):
    """A warning sentence when a run of ``threads`` at ``nmi_rate`` NMIs a
    second each asks for more signals than ``ncpus`` CPUs deliver, else None."""
    want = float(threads) * float(nmi_rate or 0.0)
    ncpus = max(1, int(ncpus))
    can = SIGNALS_PER_CPU * ncpus
    share = 0.5 if threads / ncpus > MANY_THREADS_PER_CPU else WARN_SHARE
    if want <= share * can:
        return None
    return (f"this run asks for {want:,.0f} NMIs a second ({threads} threads at --nmi-rate "
            f"{nmi_rate:g}) on {ncpus} CPU(s), which deliver about {can:,.0f} a second; it will "
            "run slowly and may be reported overloaded (lower --nmi-rate or --threads)")
