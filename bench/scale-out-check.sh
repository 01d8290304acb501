#!/bin/bash
# The reproduction, process-level: 3-node local cluster, 300 keys at
# quorum, 3 more nodes started with --bootstrap-expect 0, then every key read at quorum.
BIN=$1; D=$(mktemp -d /tmp/scaleout.XXXX)
# usage: bench/scale-out-check.sh ADAPTKV_BIN  (needs python3)
$BIN --dir $D cluster up --base-port 0 --nodes 3 >/dev/null 2>&1 || { echo "up failed"; exit 1; }
EPS=$(python3 -c "import json;d=json.load(open('$D/cluster.json'));print(','.join(n['grpc_addr'] for n in d['nodes']))")
SEED=$(python3 -c "import json;d=json.load(open('$D/cluster.json'));print(d['nodes'][0]['gossip_addr'])")
for i in $(seq 1 300); do $BIN --endpoints $EPS put --consistency quorum key-$i value-$i >/dev/null || echo "put $i failed"; done
PIDS=()
for k in 4 5 6; do
  read P1 P2 P3 < <(python3 -c "
import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(('127.0.0.1',0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])")
  mkdir -p $D/x$k
  $BIN node --id x$k --data-dir $D/x$k --seeds $SEED --bootstrap-expect 0 --grpc-addr 127.0.0.1:$P1 --gossip-addr 127.0.0.1:$P2 --raft-addr 127.0.0.1:$P3 --http-addr "" > $D/x$k.log 2>&1 &
  PIDS+=($!)
done
sleep 15
$BIN --endpoints $EPS -o json status 2>/dev/null | python3 -c "import json,sys;d=json.load(sys.stdin);print([(m['id'],m.get('ring_state'),m['state']) for m in d['members']])"
missing=0
for i in $(seq 1 300); do out=$($BIN --endpoints $EPS get --consistency quorum key-$i 2>&1); case "$out" in *value-$i*) ;; *) missing=$((missing+1));; esac; done
echo "missing at quorum: $missing of 300"
kill ${PIDS[@]}; wait ${PIDS[@]} 2>/dev/null
$BIN --dir $D cluster down >/dev/null 2>&1
