//! Private files and folders, written atomically (stub: being implemented).

use std::path::Path;

/// Writes `contents` to `path` atomically with `mode` (temp file in the same folder, fsync,
/// rename, fsync of the folder). Missing parent folders are created with mode 0700.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let _ = (path, contents, mode);
    Err(std::io::Error::other("not implemented yet"))
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let _ = dir;
    Err(std::io::Error::other("not implemented yet"))
}
