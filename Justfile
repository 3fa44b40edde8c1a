# compute-bridge recipes. `just --list` shows them.

# Build the bridge and every backend component.
build:
    cargo build --release

# Run the bridge on the embedded default (config/local.toml).
run *ARGS:
    cargo run --release -- run {{ARGS}}

# Install the test peers if missing, then run every test.
test *ARGS:
    scripts/test.sh {{ARGS}}

# Benchmarks (numbers go in BENCHMARKS.md); `just bench --bench scale` runs one.
bench *ARGS:
    cargo bench --workspace {{ARGS}}

# The scale benchmark alone (lifecycles/s, grant-to-access, 10,000 watched).
bench-scale:
    cargo bench -p compute-bridge --bench scale

# Format and lint the way CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --release -- -D warnings
