//! Rebuilds when a SQLite migration is added or changed: `embed_migrations!` alone does
//! not notice a new migration directory, and a stale build would embed the old list.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}
