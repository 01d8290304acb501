#!/bin/bash
# Same-run comparison of two adaptkv builds end to end: for each round, each
# build starts a fresh 3-node pebble cluster (adaptkv cluster up --base-port 0)
# and the NEW build's bench drives it with YCSB A and B at one and quorum.
# Prints one line per run (ops/s, p50, p99, errors); BENCHMARKS.md has results.
# usage: bench/ab-builds.sh BASE_BIN NEW_BIN OUTDIR [ROUNDS]  (needs python3)
set -u
BASE=$1; NEW=$2; OUT=$3; ROUNDS=${4:-2}
mkdir -p $OUT
for round in $(seq 1 $ROUNDS); do
  for arm in base new; do
    BIN=$BASE; [ $arm = new ] && BIN=$NEW
    DIR=$OUT/cluster-$arm-$round
    rm -rf $DIR
    $BIN --dir $DIR cluster up --base-port 0 --nodes 3 > $OUT/up-$arm-$round.log 2>&1 || { echo "cluster up failed ($arm)"; cat $OUT/up-$arm-$round.log; exit 1; }
    EPS=$(python3 -c "import json;d=json.load(open('$DIR/cluster.json'));print(','.join(n['grpc_addr'] for n in d['nodes']))")
    for wl in a b; do
      for cons in one quorum; do
        load=true; [ $wl = b -o $cons = quorum ] && load=false
        $NEW bench --endpoints $EPS --workload $wl --consistency $cons --records 20000 --duration 15s --load=$load --quiet --json > $OUT/$arm-$round-$wl-$cons.json 2> $OUT/$arm-$round-$wl-$cons.err
        python3 - $OUT/$arm-$round-$wl-$cons.json $arm $round $wl $cons <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))["run"]
print(*sys.argv[2:6], "ops/s %.0f p50 %.2f p99 %.2f errors %d" % (d["ops_per_sec"], d["latency"]["p50_ms"], d["latency"]["p99_ms"], d["errors"]))
PY
      done
    done
    $BIN --dir $DIR cluster down > /dev/null 2>&1
  done
done
