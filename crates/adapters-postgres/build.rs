//! Rebuilds when a PostgreSQL migration changes (`embed_migrations!` alone does not notice),
//! and hands the code a fingerprint of the migrations so `testing` can name its migrated
//! template database after the schema it holds.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::{fs, io};

const MIGRATIONS: &str = "../../migrations/postgres";

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed={MIGRATIONS}");
    let mut files = Vec::new();
    collect(Path::new(MIGRATIONS), &mut files)?;
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        file.strip_prefix(MIGRATIONS)
            .unwrap_or(file)
            .hash(&mut hasher);
        fs::read(file)?.hash(&mut hasher);
    }
    println!(
        "cargo:rustc-env=CHAT_POSTGRES_MIGRATIONS_HASH={:016x}",
        hasher.finish()
    );
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
