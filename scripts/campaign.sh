#!/usr/bin/env bash
# A stress-and-bench campaign for a bare-metal box: the selftest, a matrix of
# scenarios x poke methods on every CPU, then the full benchmark.  Everything
# goes under results/<host>-<date>/ (one .out/.err/.rc/.json per step), with a
# summary at the end (also in summary.txt): per step, its exit code and verdict.
# The script exits with the worst exit code of its steps.
#
#   scripts/campaign.sh                          # 10 minutes per stress run
#   DURATION=3600 NMI_RATE=5000 scripts/campaign.sh
#   PYHARNESS=.venv/bin/pyharness DURATION=5 scripts/campaign.sh   # a smoke run
#
# Variables: PYHARNESS (command), PYTHON (for the summary), DURATION
# (seconds per stress run), CPUS (list or "all"), SCENARIOS, POKES, NMI_RATE
# (empty: each scenario's own rate), OUT (results directory), PLOT=1 (draw the
# bench and reports with `pyharness plot`; needs matplotlib).
set -u
PYHARNESS=${PYHARNESS:-pyharness}
PYTHON=${PYTHON:-python3}
DURATION=${DURATION:-600}
NMI_RATE=${NMI_RATE:-}
CPUS=${CPUS:-all}
SCENARIOS=${SCENARIOS:-"rfc-native upstream-emulated batch mixed"}
POKES=${POKES:-"alias mprotect"}
PLOT=${PLOT:-0}
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-"results/$(hostname -s)-$(date +%Y%m%d-%H%M%S)"}
mkdir -p "$out" || exit 2
echo "campaign: $out (${DURATION}s per stress run, CPUs $CPUS)"

{   # what the results came from
    date -Is
    uname -a
    command -v lscpu >/dev/null && lscpu
    cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null
    (cd "$here/.." && git rev-parse HEAD 2>/dev/null)
    echo "PYHARNESS=$PYHARNESS DURATION=$DURATION NMI_RATE=$NMI_RATE CPUS=$CPUS"
} > "$out/environment.txt" 2>&1

step() {   # step NAME ARGS...: run one pyharness command, keep its output and exit code
    local name=$1; shift
    echo "== $name: $PYHARNESS $*"
    local t0=$SECONDS
    "$PYHARNESS" "$@" > "$out/$name.out" 2> "$out/$name.err"
    local rc=$?
    echo "$rc" > "$out/$name.rc"
    echo "   exit $rc after $((SECONDS - t0)) s"
}

step selftest selftest --cpus "$CPUS" --json "$out/selftest.json"
# The whole source mutation suite (tests/mutants), three seeds each.
step mutate mutate --runs 3 --cpus "$CPUS" --json "$out/mutate.json"
nmi=()
[ -n "$NMI_RATE" ] && nmi=(--nmi-rate "$NMI_RATE")
for sc in $SCENARIOS; do
    for poke in $POKES; do
        step "run-$sc-$poke" run --scenario "$sc" --cpus "$CPUS" --poke "$poke" \
            --duration "$DURATION" "${nmi[@]}" --quiet --json "$out/run-$sc-$poke.json"
    done
done
step bench bench --cpus "$CPUS" --json "$out/bench.json"

if [ "$PLOT" = 1 ]; then
    $PYHARNESS plot "$out"/bench.json "$out"/run-*.json --out "$out/plots" > "$out/plots.out" 2>&1 ||
        echo "plots: failed, see $out/plots.out"
fi

"$PYTHON" - "$out" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
names = sorted(n[:-3] for n in os.listdir(out) if n.endswith(".rc"))
print(f"{'step':36s} {'exit':>4s}  result")
worst = 0
for n in names:
    rc = int(open(os.path.join(out, n + ".rc")).read() or 99)
    worst = max(worst, rc)
    js, note = os.path.join(out, n + ".json"), ""
    try:
        d = json.load(open(js))
    except (OSError, ValueError):
        d = None
    if d is None:
        err = open(os.path.join(out, n + ".err")).read().strip().splitlines()
        note = err[-1] if err else "(no JSON)"
    elif str(d.get("schema", "")).startswith("pyharness.run/"):
        c = d.get("violation_counts") or {}
        note = (f"{d['verdict']} ({d['status']}), {d['totals'].get('sites_patched')} sites"
                + (f", violations {c}" if c else ""))
    elif str(d.get("schema", "")).startswith("pyharness.bench/"):
        bad = [f"{t['target']} ({t['measured']:.3g})" for t in d["targets"] if not t["pass"]]
        note = (f"bench: {len(d['targets']) - len(bad)}/{len(d['targets'])} targets met"
                + (f"; missed: {'; '.join(bad)}" if bad else "")
                + (f"; {len(d['warnings'])} warnings" if d.get("warnings") else ""))
    elif str(d.get("schema", "")).startswith("pyharness.mutate/"):
        sc = d["score"]
        note = f"mutants caught in every run: {sc['caught']}/{sc['scored']}"
    elif "pass" in d:
        note = "selftest " + ("pass" if d["pass"] else "FAIL")
    print(f"{n:36s} {rc:>4d}  {note}")
print("campaign:", "PASS" if worst == 0 else f"attention needed (worst exit code {worst})")
sys.exit(min(worst, 255))
PY
exit "${PIPESTATUS[0]}"
