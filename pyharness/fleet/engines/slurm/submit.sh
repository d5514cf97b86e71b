#!/bin/bash
# Submit the fleet: a job array with one task per node, then the merge.
#   PYHARNESS_STORE=postgresql://user@db/pyharness PYHARNESS_BUDGET=1h ./submit.sh [NODES]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-$(sinfo -h -N -o %N | sort -u | wc -l)}
if [ -n "${PYHARNESS_HOSTNAME_PREFIX:-}" ]; then
    expect=$(seq -s, -f "${PYHARNESS_HOSTNAME_PREFIX}%g" 0 $((n - 1)))
else
    expect=$(sinfo -h -N -o %N | sort -u | head -n "$n" | paste -sd,)
fi
export PYHARNESS_EXPECT="$expect"
jid=$(sbatch --parsable --export=ALL --array=0-$((n - 1)) "$here/pyharness-task.sbatch")
sbatch --parsable --export=ALL --dependency=afterany:"$jid" "$here/pyharness-merge.sbatch"
