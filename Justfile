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

# Benchmarks (numbers go in BENCHMARKS.md).
bench *ARGS:
    cargo bench --workspace {{ARGS}}

# Format and lint the way CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --release -- -D warnings
