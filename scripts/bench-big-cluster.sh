#!/usr/bin/env bash
# The bundled cores on a bigger local cluster: times `cluster up`, then runs the register
# test per database under each partition shape in turn (one run per shape, so every shape
# is applied), under kill and pause of a minority, and under kill and pause of the leader,
# and prints each run's verdict, the faults applied and the peak RSS of the node processes.
# Every run is bounded (--time-limit) and the cluster is taken down on exit.
#
#   bash scripts/bench-big-cluster.sh [NODES=9] [DBS=raft,paxos] [SECONDS=30] [BINARY=target/release/faultline]
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${1:-9}"; DBS="${2:-raft,paxos}"; SECS="${3:-30}"; FL="${4:-target/release/faultline}"
NAME="big$$"
STORE="$(mktemp -d /tmp/faultline-big.XXXXXX)"
[ -x "$FL" ] || { echo "build first: cargo build --release -p faultline" >&2; exit 64; }
trap '"$FL" cluster down --name "$NAME" >/dev/null 2>&1 || true' EXIT
ms() { date +%s%N | cut -c1-13; }
t0=$(ms)
"$FL" cluster up --nodes "$NODES" --name "$NAME" >/dev/null
"$FL" exec -i "$NAME" -- true >/dev/null
echo "cluster up --nodes $NODES: $(( $(ms) - t0 )) ms (until every sshd answers)"
status=0
run() { # db label args...
  local db="$1" label="$2"; shift 2
  local rc=0
  "$FL" test -i "$NAME" --db "$db" --workload register --store "$STORE" --name "$db-$label" \
      --time-limit "$SECS" --concurrency 10 --rate 200 --seed 42 --leave-db-running "$@" \
      >"$STORE/$db-$label.out" 2>&1 || rc=$?
  # Peak RSS (VmHWM) of each node process, read from its pidfile before the next run.
  local rss
  # `exec` runs its arguments as one remote shell command line, as ssh does.
  rss=$( { "$FL" exec -i "$NAME" -- 'grep VmHWM /proc/$(cat /var/lib/faultline/node/node.pid)/status' 2>/dev/null || true; } \
        | awk '{print $(NF-1)}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "node peak RSS min %.1f / median %.1f / max %.1f MB (%d nodes)", a[1]/1024, a[int((NR+1)/2)]/1024, a[NR]/1024, NR}')
  local faults
  faults=$(cat "$STORE/$db-$label"/latest/history.jsonl | { grep -E '"process":"nemesis","type":"(ok|info)","f":"start-' || true; } | { grep -v '"error"' || true; } | wc -l)
  local verdict
  verdict=$({ grep -Eo 'seed 42: [a-z]+' "$STORE/$db-$label.out" || true; } | head -n1 | cut -d' ' -f3)
  echo "$db $label: $verdict (exit $rc), $faults faults applied; $rss"
  [ "$rc" = 0 ] || status=1
}
for db in ${DBS//,/ }; do
  for shape in halves one leader majorities-ring bridge quorum-loss constrained chained; do
    run "$db" "$shape" --nemesis "$shape-partition" --nemesis-interval 2
  done
  run "$db" kill-pause-minority --nemesis kill,pause --nemesis-targets minority --nemesis-interval 2
  run "$db" kill-pause-leader --nemesis kill,pause --nemesis-targets leader --nemesis-interval 2
done
echo "runs: $STORE"
exit "$status"
