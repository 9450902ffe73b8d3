//! Files and directories only the service's own user may read: everything under the
//! data directory (database, blobs, keys, staged uploads, the audit anchors) is created
//! 0700 for directories and 0600 for files, whatever the process's umask.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` and its missing parents, each new one readable by the owner only.
/// Directories that already exist keep their permissions.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Options that create a file readable and writable by the owner only.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Opens `path` for appending, creating it (owner only) if needed.
pub fn open_append(path: &Path) -> io::Result<File> {
    options().append(true).create(true).open(path)
}

/// Whether anyone but the owner may read, write or enter `path`.
pub fn is_open_to_others(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_directories_and_files_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        open_append(&file).unwrap();
        assert!(!is_open_to_others(&root.path().join("a")).unwrap());
        assert!(!is_open_to_others(&dir).unwrap());
        assert!(!is_open_to_others(&file).unwrap());
    }
}
