#!/bin/sh
# Swap timing on the real binaries (BENCHMARKS.md "Live swap"): a bridge on
# the fake component (attestation none, a local coalition), then 6 swaps to
# rebuilt fakes (a custom section appended: a new digest, so each load is a
# compile-cache miss); prints the CLI's last line and wall time per swap and
# the bridge's swap log lines, whose timestamps split load, check, measure.
# Needs `cargo test --release --workspace --locked --no-run` first.
set -e
W=$(cd "$(dirname "$0")/.." && pwd)
BIN=$W/target/release/compute-bridge
FAKE=$W/target/components/wasm32-wasip2/component/cb_fake.wasm
D=$W/target/tmp/bench-swap; rm -rf $D; mkdir -p $D
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > $D/bridge.toml <<T
[bridge]
state_dir = "state"
swap_rollback_polls = 1
[dashboard]
port = $PORT
[[backends]]
name = "fake"
component = "$FAKE"
[backends.config]
regions = ["local"]
T
COMPUTE_BRIDGE_LOG=info $BIN run --config $D/bridge.toml > $D/bridge.log 2>&1 &
PID=$!
for i in $(seq 1 120); do grep -q "taking grants" $D/bridge.log && break; sleep 0.5; done
for i in 1 2 3 4 5 6; do
  python3 - "$FAKE" "$D/v$i.wasm" "v$i" <<'P'
import sys
b=open(sys.argv[1],'rb').read(); name=b"compute-bridge-test-rebuild"; tag=sys.argv[3].encode()
body=bytes([len(name)])+name+tag
open(sys.argv[2],'wb').write(b+bytes([0,len(body)])+body)
P
  /usr/bin/time -f "cli wall %e s" $BIN components swap fake $D/v$i.wasm --config $D/bridge.toml 2>&1 | grep -v "^\s*$" | tail -2
done
kill $PID; wait $PID 2>/dev/null || true
grep "swap: component" $D/bridge.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200
