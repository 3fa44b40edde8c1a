#!/usr/bin/env bash
# Start-up of the embedded default, as BENCHMARKS.md reports it: for a fresh
# state dir and then two restarts on it, the milliseconds from exec to the
# bridge's `ready`, `joined the coalition` and `provider card published`
# lines; then the README's two terminals started together, with the agent's
# own figures (joined, card found, access opened after start).
#
# Uses the release binaries as built (cargo build --release first). The
# bare-metal default makes a Unix account per grant: run as root.
# Usage: scripts/bench-start.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bridge="$root/target/release/compute-bridge"
agent="$root/target/release/coalition-agent"
work="$(mktemp -d)"
trap 'pkill -TERM -f "$bridge run --dashboard-port 0" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# Milliseconds from $1 (ns since the epoch) to each named line of log $2.
since() {
  python3 - "$1" "$2" <<'EOF'
import sys, datetime
t0 = int(sys.argv[1]) / 1e9
want = {"ready": "ready; stop with", "joined": "joined the coalition",
        "card published": "provider card published"}
seen = {}
for line in open(sys.argv[2], errors="replace"):
    for name, text in want.items():
        if name not in seen and text in line:
            ts = line.split()[0].rstrip("Z")
            t = datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.timezone.utc).timestamp()
            seen[name] = round((t - t0) * 1000)
print("  ".join(f"{n} {seen.get(n, '-')} ms" for n in want))
EOF
}

for run in fresh restart restart; do
  t0=$(date +%s%N)
  COMPUTE_BRIDGE_LOG=info "$bridge" run --dashboard-port 0 >"bridge.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    grep -q "provider card published" bridge.log && break
    sleep 0.1
  done
  kill -TERM "$pid"; wait "$pid" || true
  printf '%-8s ' "$run"; since "$t0" bridge.log
done

echo "two terminals started together (3 runs):"
for _ in 1 2 3; do
  rm -rf .compute-bridge
  COMPUTE_BRIDGE_LOG=info "$bridge" run --dashboard-port 0 >bridge.log 2>&1 &
  pid=$!
  COALITION_AGENT_LOG=compute_bridge=debug "$agent" request --cpu 100 --ram 64 --duration 3s \
    >agent.out 2>agent.log || echo "agent failed: $(tail -3 agent.log)"
  kill -TERM "$pid"; wait "$pid" || true
  python3 - <<'EOF'
import re
log = open("agent.log", errors="replace").read() + open("agent.out", errors="replace").read()
joined = re.search(r"joined the coalition ms=(\d+)", log)
card = re.search(r"found the provider's card ms=(\d+)", log)
access = re.search(r"access opened with the reply key (\d+) ms after the grant was sent \((\d+) ms after start\)", log)
print(f"  agent: joined {joined and joined[1]} ms, card found {card and card[1]} ms, "
      f"grant -> access {access and access[1]} ms, start -> access {access and access[2]} ms")
EOF
done
