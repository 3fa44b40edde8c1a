#!/usr/bin/env python3
"""Where a cold build's time goes, by the dependency that brings it in.

Reads the unit times of a `cargo build --release --timings` report and
cargo's resolve graph (normal and build edges, x86_64 Linux), and charges
each crate to a group when every path from `compute-bridge` to it passes
through that group's crates (to the first such group named, so no crate
is counted twice). Our own crates are a row of their own; "the rest" is
what several dependencies share or what comes in through one not named.
It also prints what duplicate versions
cost (every copy but the dearest of each crate name). BENCHMARKS.md
"Building" quotes its output.

    cargo build --release --locked --timings
    scripts/build-cost.py target/cargo-timings/cargo-timing.html \\
        wasmtime+wasmtime-wasi+wasmtime-wasi-http+wasmtime-wasi-config+wasmtime-wasi-io \\
        mosaik+iroh-relay russh+ssh-key aws-lc-rs redb tdx-quote+configfs-tsm

A group is crate names joined by `+`.
"""

import collections
import json
import re
import subprocess
import sys


def fail(msg):
    sys.exit(f"build-cost: {msg}")


def main():
    if len(sys.argv) < 2:
        fail("usage: build-cost.py <cargo-timing.html> [group ...] (see the file's docstring)")
    try:
        html = open(sys.argv[1]).read()
    except OSError as e:
        fail(f"reading {sys.argv[1]}: {e}; run `cargo build --release --timings` first")
    found = re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S)
    if not found:
        fail(f"{sys.argv[1]} has no UNIT_DATA: is it a cargo --timings report?")
    units = json.loads(found.group(1))
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked",
         "--filter-platform", "x86_64-unknown-linux-gnu"]))
    package = {p["id"]: p for p in meta["packages"]}
    edges = {}
    for node in meta["resolve"]["nodes"]:
        edges[node["id"]] = [
            d["pkg"] for d in node["deps"]
            if any(k["kind"] in (None, "build") for k in d["dep_kinds"])
        ]
    root = next(i for i in edges if package[i]["name"] == "compute-bridge")

    def reach(cut=frozenset()):
        seen, stack = set(), [root]
        while stack:
            x = stack.pop()
            if x in seen or x in cut:
                continue
            seen.add(x)
            stack.extend(edges[x])
        return seen

    cost = collections.Counter()
    for u in units:
        cost[(u["name"], u["version"])] += u["duration"]
    total = sum(cost.values())

    def secs(ids):
        return sum(cost[(package[i]["name"], package[i]["version"])] for i in ids)

    everything = reach()
    by_name = collections.defaultdict(list)
    for i in everything:
        by_name[package[i]["name"]].append(i)
    ours = {i for i in everything if package[i]["source"] is None}
    print(f"{len(units)} units, {total:.0f} s of unit time, {len(everything)} crates")
    print("| only through | crates | unit time | share |")
    print("|---|---|---|---|")
    owned = set(ours)
    for group in sys.argv[2:]:
        ids = [i for name in group.split("+") for i in by_name.get(name, [])]
        if not ids:
            fail(f"{group}: no such crate in the run command's graph")
        alone = (everything - reach(frozenset(ids))) - owned
        owned |= alone
        print(f"| {group} | {len(alone)} | {secs(alone):.0f} s | {100 * secs(alone) / total:.1f} % |")
    print(f"| our own crates | {len(ours)} | {secs(ours):.0f} s | {100 * secs(ours) / total:.1f} % |")
    rest = everything - owned
    print(f"| the rest | {len(rest)} | {secs(rest):.0f} s | {100 * secs(rest) / total:.1f} % |")

    versions = collections.defaultdict(collections.Counter)
    for u in units:
        versions[u["name"]][u["version"]] += u["duration"]
    dups = {n: v for n, v in versions.items() if len(v) > 1}
    extra = sum(sum(v.values()) - max(v.values()) for v in dups.values())
    print(f"duplicates: {len(dups)} crate names in two or more versions; "
          f"the cheaper copies cost {extra:.0f} s ({100 * extra / total:.1f} %)")


if __name__ == "__main__":
    main()
