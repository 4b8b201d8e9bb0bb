//! The wallet file on disk: its exclusive lock and atomic, private writes.
//!
//! Owns the file-system side of the wallet file: the sibling `.lock` file that
//! commands changing the wallet hold, and writing a whole file so that a crash leaves
//! the old file or the new one, never a mix (a temporary file with mode 0600 in the
//! same directory, fsync, rename over the old file, fsync of the directory).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Error;

/// An exclusive lock on a wallet file, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Makes `path`'s directory (mode 0700) if it has one.
pub(super) fn make_dir(path: &Path) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|cause| Error::Io { path: dir.to_owned(), cause })?;
    }
    Ok(())
}

/// Takes the exclusive lock of the wallet at `path` (waits for another command to
/// finish). For a new wallet (`new`), makes the directory; otherwise the wallet must exist.
pub(super) fn lock(path: &Path, new: bool) -> Result<Lock, Error> {
    if new {
        make_dir(path)?;
    } else if path.symlink_metadata().is_err() {
        return Err(Error::NotFound(path.to_owned()));
    }
    let lock_path = sibling(path, ".lock");
    let io = |cause| Error::Io { path: lock_path.clone(), cause };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    Ok(Lock { _file: file })
}

/// `path` with `suffix` appended to its file name.
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a mix.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |cause| Error::Io { path: path.to_owned(), cause };
    let tmp = sibling(path, &format!(".tmp-{}", std::process::id()));
    // A temporary file left by a crashed run of this same pid is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let held = lock(&path, true).expect("locks");
        let other = File::open(sibling(&path, ".lock")).expect("opens");
        assert!(other.try_lock().is_err(), "held");
        drop(held);
        assert!(other.try_lock().is_ok(), "released");
        assert!(matches!(lock(&dir.path().join("none.json"), false), Err(Error::NotFound(_))));
    }
}
