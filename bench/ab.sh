#!/usr/bin/env bash
# Two trees of Atrium measured in turn through bench/gateway.py (issue 17): the tree at REV (a
# git worktree, put first on PYTHONPATH) and the working tree, PAIRS pairs of 5 s runs of one
# era at c=16. Each line: the ratio, Atrium's and the backend's CPU per call, and Atrium's over
# the backend's ("norm"): the backend does the same work in both trees, so that ratio cancels
# the machine's speed, which drifts by a quarter between runs here. With a third argument,
# `callgrind`, each run is bench/callgrind.py instead (600 calls): the gateway's instructions per
# call, which the machine's speed does not move at all (about 2 minutes a run).
#
#     bench/ab.sh REV [PAIRS] [callgrind]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/ab.sh REV [PAIRS] [callgrind]}
pairs=${2:-4}
gauge=${3:-cpu}
base=$(mktemp -d)
trap 'git worktree remove --force "$base"' EXIT
git worktree add --detach --force "$base" "$rev" >/dev/null 2>&1
run() {
    if [ "$gauge" = callgrind ]; then
        env -u PYTHONDONTWRITEBYTECODE "$@" .venv/bin/python bench/callgrind.py --calls 600 |
            sed 's/^gateway *run 1: //'
        return
    fi
    env -u PYTHONDONTWRITEBYTECODE "$@" .venv/bin/python bench/gateway.py --seconds 5 --runs 1 \
        --concurrency 16 --no-workers --no-listing --no-floor --modern-only 2>/dev/null |
        awk -F'|' '/^\| 2026/ { printf "ratio %s gw %.2f ms be %.2f ms norm %.3f\n", $5, $6, $7, $6 / $7 }'
}
for _ in $(seq "$pairs"); do
    echo "A $rev: $(run PYTHONPATH="$base/src")"
    echo "B work: $(run)"
done
