# Recipes for the common tasks. Each calls the same cargo command the README gives,
# so a machine without `just` loses nothing.

# Run the server in embedded mode (SQLite file under ./data, no external services).
run:
    cargo run --release -p server --bin chat-server

# Apply database migrations for the configured database, then exit.
migrate:
    cargo run -p server --bin chat-server -- migrate

# The whole test suite (needs PostgreSQL and Redis on 127.0.0.1; see README).
test:
    cargo test --workspace

# Formatting and lints, as CI expects them.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# A short run of every load-generator scenario against a fresh release server (embedded
# mode; set CHAT_DATABASE__URL and CHAT_REDIS__URL for scale-out). See docs/benchmarks.md.
bench:
    crates/loadgen/scripts/bench.sh
