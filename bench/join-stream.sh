#!/bin/bash
# Streaming throughput of a join: 3 pebble nodes, 100,000 keys of 1 KiB at quorum, then a 4th node joins.
# usage: bench/join-stream.sh ADAPTKV_BIN  (needs python3; prints the join log line, disk and loopback limits)
BIN=$1; D=$(mktemp -d /tmp/stream.XXXX)
$BIN --dir $D cluster up --base-port 0 --nodes 3 >/dev/null 2>&1 || { echo "up failed"; exit 1; }
EPS=$(python3 -c "import json;d=json.load(open('$D/cluster.json'));print(','.join(n['grpc_addr'] for n in d['nodes']))")
SEED=$(python3 -c "import json;d=json.load(open('$D/cluster.json'));print(d['nodes'][0]['gossip_addr'])")
$BIN bench --endpoints $EPS --workload c --records 100000 --value-size 1024 --consistency quorum --duration 1s --quiet --json > $D/load.json 2>$D/load.err
python3 -c "import json;d=json.load(open('$D/load.json'));l=d['load'];print('load: %d records in %.1f s (%.0f/s), errors %d'%(l['ops'],l['duration_s'],l['ops_per_sec'],l['errors']))"
du -sh $D/n1 $D/n2 $D/n3 2>/dev/null | tr '\n' ' '; echo
read P1 P2 P3 < <(python3 -c "
import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(('127.0.0.1',0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])")
mkdir -p $D/x4
T0=$(date +%s.%N)
$BIN node --id x4 --data-dir $D/x4 --seeds $SEED --bootstrap-expect 0 --grpc-addr 127.0.0.1:$P1 --gossip-addr 127.0.0.1:$P2 --raft-addr 127.0.0.1:$P3 --http-addr "" > $D/x4.log 2>&1 &
PID=$!
for i in $(seq 1 600); do
  if grep -h "topology change done" $D/n*/node.log $D/*.log 2>/dev/null | grep -q "join of x4"; then break; fi
  sleep 0.5
done
T1=$(date +%s.%N)
grep -h "topology change done" $D/n*/node.log $D/*.log 2>/dev/null | grep "join of x4"
grep -h "member joining the ring" $D/n*/node.log 2>/dev/null | grep x4 | head -1
echo "from start of x4 to joined: $(python3 -c "print(round($T1-$T0,1))") s"
du -sh $D/x4
kill $PID; wait $PID 2>/dev/null
$BIN --dir $D cluster down >/dev/null 2>&1
# disk and loopback limits on the same machine
dd if=/dev/zero of=$D/dd.bin bs=1M count=512 conv=fdatasync 2>&1 | tail -1
python3 - <<'PY'
import socket,threading,time
N=1<<30; buf=b'x'*(1<<20)
srv=socket.socket(); srv.bind(('127.0.0.1',0)); srv.listen(1); port=srv.getsockname()[1]
def rx():
    c,_=srv.accept(); got=0
    while got<N:
        b=c.recv(1<<20)
        if not b: break
        got+=len(b)
t=threading.Thread(target=rx); t.start()
s=socket.create_connection(('127.0.0.1',port)); t0=time.time(); sent=0
while sent<N: s.sendall(buf); sent+=len(buf)
t.join(); dt=time.time()-t0
print("loopback TCP (python, one stream): %.0f MB/s"%(N/dt/1e6))
PY
rm -rf $D
