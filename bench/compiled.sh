#!/usr/bin/env bash
# What the interpreter costs on a call (issue 17): the gateway's instructions per proxied
# `tools/call` (bench/callgrind.py) as shipped, then with the modules a call runs through
# compiled to C by mypyc (a copy of the working tree's src/ in a temporary folder, first on
# PYTHONPATH). The same Python, the same work: the difference is what CPython's bytecode loop,
# frames and boxed values cost Atrium's own code on a call. A measurement only: the compiled
# copy is not a way Atrium ships (bench/RESULTS.md, "Session 14", says why).
#
# With KEEP=DIR the compiled run's dumps stay in DIR, where
#     callgrind_annotate --inclusive=yes DIR/gateway-1/gateway.callgrind.1 | grep CPyDef_
# gives the instructions of each compiled function, its callees included: the profile of a
# call by Python function that the interpreter, one C function, cannot give.
#
#     bench/compiled.sh            (about 4 minutes: 2 to compile, 1 a run)
set -euo pipefail
cd "$(dirname "$0")/.."
# The modules a proxied call runs through. Left out, as mypyc changes what they do: serving.py
# and auth/resource_guard.py (classes that interpreted code subclasses), ratelimit.py (an int
# where a float is declared), store/audit_rows.py (lone surrogates in string literals) and
# store/audit_sqlite.py (a cached property of a frozen dataclass that mypyc does not honour).
modules=(
    gateway/proxy gateway/exchange gateway/jsonrpc gateway/access gateway/audit
    gateway/journal gateway/http1 gateway/origins gateway/upstream gateway/inflight
    gateway/sessions gateway/tasks gateway/guard gateway/errors gateway/directory
    gateway/lookup gateway/metrics gateway/cancellation gateway/sse gateway/policy
    gateway/header_codec auth/wire redaction store/rollup
)
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r src "$copy/src"
find "$copy/src" -name __pycache__ -prune -exec rm -rf {} +
paths=()
for module in "${modules[@]}"; do paths+=("atrium/$module.py"); done
(cd "$copy/src" && "$OLDPWD/.venv/bin/mypyc" "${paths[@]}" >"$copy/mypyc.log" 2>&1) ||
    { tail -20 "$copy/mypyc.log"; exit 1; }
[ -z "${KEEP:-}" ] || mkdir -p "$KEEP"
# gauge PYTHONPATH [callgrind.py's options]: the gateway's M instructions per call
gauge() {
    local path=$1
    shift
    env -u PYTHONDONTWRITEBYTECODE ${path:+PYTHONPATH="$path"} .venv/bin/python \
        bench/callgrind.py --calls 600 "$@" | sed -n 's/^gateway *run 1: \([0-9.]*\) M.*/\1/p'
}
interpreted=$(gauge "")
compiled=$(gauge "$copy/src" ${KEEP:+--keep "$KEEP"})
echo "interpreted: $interpreted M instructions per call"
echo "compiled:    $compiled M instructions per call ($(echo "$compiled $interpreted" |
    awk '{ printf "%.2f", $1 / $2 }') of interpreted)"
