//! Files in the enclave's state directory that hold secrets in dev mode (the dev sealing key,
//! the dev CA's private key): created once, readable by their owner only.

use std::path::Path;

/// Creates `path` with mode 0600 (it must not exist yet), writes `bytes` and syncs them to
/// disk.
///
/// # Errors
/// The I/O error; `AlreadyExists` if the file exists.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
