#!/usr/bin/env bash
# Records JSON logs of a 4-node loopback run: blocks, a killed and restarted node, a clean stop.
set -u
B=${TINYCHAIN_NODE:-target/debug/tinychain-node}
D=${1:?usage: record.sh OUTPUT_DIR}; rm -rf "$D"; mkdir -p "$D"
A=mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r
start() { # name port bootstrap...
  local name=$1 port=$2; shift 2
  local boot=(); for b in "$@"; do boot+=(--bootstrap "$b"); done
  RUST_LOG=info $B run --network regtest --datadir $D/$name --listen /ip4/127.0.0.1/tcp/$port --log-format json --log-name $name --rpc-socket $D/$name.sock "${boot[@]}" 2>>$D/$name.log &
  echo $! > $D/$name.pid
}
gen() { $B call --network regtest --rpc-socket $D/$1.sock --datadir $D/$1 generatetoaddress $2 $A >/dev/null; }
id() { grep -o '"peer_id":"12D3Koo[A-Za-z0-9]*' $D/$1.log | head -1 | cut -d'"' -f4; }
start seed1 19744; sleep 1.5
S=/ip4/127.0.0.1/tcp/19744/p2p/$(id seed1)
start node2 19745 $S; start node3 19746 $S; sleep 1.5
N2=/ip4/127.0.0.1/tcp/19745/p2p/$(id node2)
start node4 19747 $N2; sleep 4
gen seed1 3; sleep 2
kill -KILL $(cat $D/node3.pid); sleep 1
gen node2 2; sleep 2
start node3 19746 $S; sleep 4
gen seed1 2; sleep 2
kill -TERM $(cat $D/node4.pid); sleep 1.5
gen node3 1; sleep 2
for n in seed1 node2 node3; do kill -TERM $(cat $D/$n.pid); done; sleep 2
wc -l $D/*.log
