#!/usr/bin/env bash
# Sets up this machine (Debian 12, root) and runs the main job against a local 5-node cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_packages
ensure_iptables_nft
ensure_cargo
cargo build --release -p faultline
# The node image: target/x86_64-unknown-linux-gnu/release/faultline-node, which the controller
# in target/release/ finds and uploads instead of itself.
scripts/build-node-image.sh --release
FL="$PWD/target/release/faultline"
NAME="${FAULTLINE_DEMO_CLUSTER:-demo}"

"$FL" cluster down --name "$NAME" >/dev/null 2>&1 || true
trap '"$FL" cluster down --name "$NAME"' EXIT
INV="$("$FL" cluster up --nodes 5 --name "$NAME" | tail -n1)"
echo "inventory: $INV"
"$FL" cluster status --name "$NAME"

# The job: a 25-second linearizability test of the Raft store under network partitions.
# The exit code is the verdict (0 valid, 1 invalid, 2 unknown, 3 harness error).
status=0
"$FL" test -i "$NAME" --db raft --workload register --nemesis partition \
    --nemesis-interval 5 --time-limit 25 --concurrency 10 --rate 200 || status=$?
echo "faultline test exited $status; the run is in store/latest/ (report.html, history.jsonl, results.json)"
exit "$status"
