//! The embedded mode's JWT secret: generated on first start, kept in the data directory,
//! reused afterwards so tokens survive a restart.

use crate::config::Secret;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// File name of the generated secret inside `data.dir`.
pub const SECRET_FILE: &str = "jwt_secret";

/// Random bytes in a generated secret (stored hex-encoded, so twice as many characters).
const GENERATED_BYTES: usize = 32;

/// The secret stored in `data_dir`, made (32 random bytes, hex, file mode 0600) if absent.
pub fn load_or_create(data_dir: &Path) -> io::Result<Secret> {
    fs::create_dir_all(data_dir)?;
    let path = data_dir.join(SECRET_FILE);
    let secret = hex::encode(rand::random::<[u8; GENERATED_BYTES]>());
    let mut options = OpenOptions::new();
    // `create_new`: when two processes start at once, exactly one writes and both read it.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(Secret::new(secret))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e),
    }
}

fn read(path: &Path) -> io::Result<Secret> {
    let stored = fs::read_to_string(path)?;
    let stored = stored.trim();
    if stored.is_empty() {
        // A crash between create and write leaves an empty file; refusing it is safer
        // than silently signing with nothing.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is empty; delete it to generate a new secret",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(stored))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let first = load_or_create(&data).unwrap();
        let second = load_or_create(&data).unwrap();
        assert_eq!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 2 * GENERATED_BYTES);
    }

    #[test]
    fn two_data_directories_get_different_secrets() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_ne!(
            load_or_create(a.path()).unwrap().expose(),
            load_or_create(b.path()).unwrap().expose()
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_secret_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_empty_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SECRET_FILE), "").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
