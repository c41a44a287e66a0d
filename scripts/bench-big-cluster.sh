#!/usr/bin/env bash
# The bundled cores on a bigger local cluster: times `cluster up`, then runs the register
# test per database under every partition shape, under kill and pause of a minority, and
# under kill and pause of the leader, and prints each run's verdict and the peak RSS of the
# node processes. Every run is bounded (--time-limit) and the cluster is taken down on exit.
#
#   bash scripts/bench-big-cluster.sh [NODES=9] [DBS=raft,paxos] [SECONDS=60] [BINARY=target/release/faultline]
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${1:-9}"; DBS="${2:-raft,paxos}"; SECS="${3:-60}"; FL="${4:-target/release/faultline}"
NAME="big$$"
STORE="$(mktemp -d /tmp/faultline-big.XXXXXX)"
[ -x "$FL" ] || { echo "build first: cargo build --release -p faultline" >&2; exit 64; }
trap '"$FL" cluster down --name "$NAME" >/dev/null 2>&1 || true' EXIT
ms() { date +%s%N | cut -c1-13; }
t0=$(ms)
"$FL" cluster up --nodes "$NODES" --name "$NAME" >/dev/null
"$FL" exec -i "$NAME" -- true >/dev/null
echo "cluster up --nodes $NODES: $(( $(ms) - t0 )) ms (until every sshd answers)"
SHAPES=halves,one,leader,majorities-ring,bridge,quorum-loss,constrained,chained
status=0
run() { # db label args...
  local db="$1" label="$2"; shift 2
  local rc=0
  "$FL" test -i "$NAME" --db "$db" --workload register --store "$STORE" --name "$db-$label" \
      --time-limit "$SECS" --concurrency 10 --rate 200 --seed 42 --leave-db-running "$@" \
      >"$STORE/$db-$label.out" 2>&1 || rc=$?
  # Peak RSS (VmHWM) of each node process, read from its pidfile before the next run.
  local rss
  rss=$("$FL" exec -i "$NAME" -- sh -c 'grep VmHWM /proc/$(cat /var/lib/faultline/node/node.pid)/status 2>/dev/null | tr -s " " | cut -d" " -f2' 2>/dev/null \
        | grep -Eo '^[^ ]*[0-9]+$' | grep -Eo '[0-9]+$' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "node peak RSS min %.1f / median %.1f / max %.1f MB (%d nodes)", a[1]/1024, a[int((NR+1)/2)]/1024, a[NR]/1024, NR}')
  local faults
  faults=$(grep -h '"process":"nemesis","type":"ok","f":"start-' "$STORE/$db-$label"/*/history.jsonl 2>/dev/null | wc -l)
  local shapes
  shapes=$(grep -ho '"shape":"[a-z-]*"' "$STORE/$db-$label"/*/history.jsonl 2>/dev/null | sort -u | cut -d'"' -f4 | paste -sd, -)
  echo "$db $label: exit $rc, $faults faults applied${shapes:+ (shapes: $shapes)}; $rss"
  [ "$rc" = 0 ] || status=1
}
for db in ${DBS//,/ }; do
  run "$db" partition --nemesis partition --nemesis-shapes "$SHAPES" --nemesis-interval 3
  run "$db" kill-pause-minority --nemesis kill,pause --nemesis-targets minority --nemesis-interval 3
  run "$db" kill-pause-leader --nemesis kill,pause --nemesis-targets leader --nemesis-interval 3
done
echo "runs: $STORE"
exit "$status"
