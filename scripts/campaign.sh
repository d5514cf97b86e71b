#!/usr/bin/env bash
# A stress-and-bench campaign for a bare-metal box: the selftest, a matrix
# of scenarios on every CPU, then the benchmark.  Results go under
# results/<host>-<date>/, with a summary at the end (and in summary.txt).
#
#   scripts/campaign.sh                     # 10 minutes per stress run
#   DURATION=3600 NMI_RATE=5000 scripts/campaign.sh
#   PYHARNESS=.venv/bin/pyharness DURATION=5 scripts/campaign.sh   # a smoke run
set -u
PYHARNESS=${PYHARNESS:-pyharness}
DURATION=${DURATION:-600}
NMI_RATE=${NMI_RATE:-2000}
CPUS=${CPUS:-all}
SCENARIOS=${SCENARIOS:-"rfc-native upstream-emulated batch mixed"}
POKES=${POKES:-"alias mprotect"}
out="results/$(hostname -s)-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "campaign: $out (duration ${DURATION}s per run, CPUs $CPUS)"

step() {   # step NAME ARGS...: run one pyharness command, keep its output and exit code
    local name=$1; shift
    echo "== $name: $PYHARNESS $*"
    "$PYHARNESS" "$@" > "$out/$name.out" 2> "$out/$name.err"
    echo "$?" > "$out/$name.rc"
}

step selftest selftest --cpus "$CPUS" --json "$out/selftest.json"
for sc in $SCENARIOS; do
    for poke in $POKES; do
        step "run-$sc-$poke" run --scenario "$sc" --cpus "$CPUS" --poke "$poke" \
            --duration "$DURATION" --nmi-rate "$NMI_RATE" --quiet --json "$out/run-$sc-$poke.json"
    done
done
step bench bench --cpus "$CPUS" --json "$out/bench.json"

python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
names = sorted(n[:-3] for n in os.listdir(out) if n.endswith(".rc"))
print(f"{'step':40s} {'exit':>4s}  result")
worst = 0
for n in names:
    rc = int(open(os.path.join(out, n + ".rc")).read())
    worst = max(worst, rc)
    js, note = os.path.join(out, n + ".json"), ""
    if os.path.exists(js):
        d = json.load(open(js))
        if "verdict" in d:
            c = d.get("violation_counts") or {}
            note = f"{d['verdict']} ({d['status']}), sites {d['totals'].get('sites_patched')}" + (
                f", violations {c}" if c else "")
        elif "pass" in d:
            note = "selftest " + ("pass" if d["pass"] else "FAIL")
        elif "targets" in d:
            bad = [t["target"] for t in d["targets"] if not t["pass"]]
            note = f"bench: {len(d['targets']) - len(bad)}/{len(d['targets'])} targets met"
    else:
        err = open(os.path.join(out, n + ".err")).read().strip().splitlines()
        note = err[-1] if err else ""
    print(f"{n:40s} {rc:>4d}  {note}")
print("campaign:", "PASS" if worst == 0 else f"attention needed (worst exit code {worst})")
PY
