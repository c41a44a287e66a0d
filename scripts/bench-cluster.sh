#!/usr/bin/env bash
# Times `faultline cluster up --nodes N` (until every sshd answers) and `cluster down`,
# over several rounds, and prints min / median / max in milliseconds.
# Usage: bash scripts/bench-cluster.sh [NODES=5] [ROUNDS=5] [BINARY=target/release/faultline]
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${1:-5}"; ROUNDS="${2:-5}"; FL="${3:-target/release/faultline}"
NAME="bench-$$"
[ -x "$FL" ] || { echo "build first: cargo build --release -p faultline" >&2; exit 64; }
trap '"$FL" cluster down --name "$NAME" >/dev/null 2>&1 || true' EXIT
ms() { date +%s%N | cut -c1-13; }
ups=(); downs=()
for _ in $(seq "$ROUNDS"); do
  t0=$(ms); "$FL" cluster up --nodes "$NODES" --name "$NAME" >/dev/null 2>&1; t1=$(ms)
  "$FL" exec -i "$NAME" -- true >/dev/null
  t2=$(ms); "$FL" cluster down --name "$NAME" >/dev/null 2>&1; t3=$(ms)
  ups+=($((t1 - t0))); downs+=($((t3 - t2)))
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "min %d  median %d  max %d ms\n", a[1], a[int((NR+1)/2)], a[NR]}'; }
echo "cluster up   --nodes $NODES ($ROUNDS rounds): $(stats "${ups[@]}")"
echo "cluster down --nodes $NODES ($ROUNDS rounds): $(stats "${downs[@]}")"
