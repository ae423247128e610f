//! Deterministic cpio archives in the "newc" format (`070701`), the format the Linux kernel
//! unpacks as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst) and
//! the one nitro-cli's ramdisks use (linuxkit `kernel+initrd-nogz`: uncompressed newc).
//!
//! Every header field comes from the archive's contents, never from the machine that writes
//! it: entries are sorted by path (bytewise, so a directory precedes what it holds), uid and
//! gid are 0, every mtime is [`MTIME`], inode numbers count from 1 in path order, and device
//! numbers are 0. Hard links, symlinks and device nodes are not supported; the enclave image
//! needs none (`/dev` is a devtmpfs that init mounts).

use std::collections::BTreeMap;

/// The modification time of every entry: 0 (1970-01-01T00:00:00Z), so that an archive's
/// bytes depend only on the paths, modes and contents it holds.
pub const MTIME: u32 = 0;

/// Size of a newc header: the 6-byte magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 110;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// Why an entry or an archive was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpioError {
    /// The path is empty, absolute, has an empty, `.` or `..` component, or holds NUL.
    #[error("cpio path {0:?} is not a plain relative path")]
    BadPath(String),
    /// Permission bits beyond `0o7777`.
    #[error("cpio mode {mode:o} for {path:?} has bits beyond 0o7777")]
    BadMode { path: String, mode: u32 },
    /// The path was added twice.
    #[error("cpio path {0:?} added twice")]
    Duplicate(String),
    /// An entry's parent directory is not in the archive (the kernel could not create it).
    #[error("cpio entry {path:?} has no directory entry for its parent {parent:?}")]
    MissingParent { path: String, parent: String },
    /// A file is 4 GiB or larger: newc sizes are 32-bit.
    #[error("cpio file {0:?} is too large for newc (4 GiB or more)")]
    TooLarge(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

/// A set of directories and regular files, written as one newc archive by [`Archive::to_bytes`].
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, (Node, u32)>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory with permission bits `mode` (e.g. `0o755`).
    ///
    /// Errors: [`CpioError::BadPath`], [`CpioError::BadMode`], [`CpioError::Duplicate`].
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, CpioError> {
        self.insert(path, mode, Node::Dir)
    }

    /// Adds a regular file with permission bits `mode` and contents `data` (under 4 GiB).
    ///
    /// Errors: as [`Archive::dir`], and [`CpioError::TooLarge`].
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<&mut Self, CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge(path.to_owned()));
        }
        self.insert(path, mode, Node::File(data))
    }

    fn insert(&mut self, path: &str, mode: u32, node: Node) -> Result<&mut Self, CpioError> {
        let plain = !path.is_empty()
            && !path.contains('\0')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !plain {
            return Err(CpioError::BadPath(path.to_owned()));
        }
        if mode & !0o7777 != 0 {
            return Err(CpioError::BadMode {
                path: path.to_owned(),
                mode,
            });
        }
        if self.entries.contains_key(path) {
            return Err(CpioError::Duplicate(path.to_owned()));
        }
        self.entries.insert(path.to_owned(), (node, mode));
        Ok(self)
    }

    /// The paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The archive: one newc header (and data) per entry in path order, then the
    /// `TRAILER!!!` entry. Names and data are padded with NULs to 4-byte boundaries; the
    /// archive is not padded further (the kernel needs no 512-byte blocking).
    ///
    /// Errors: [`CpioError::MissingParent`] if an entry's parent directory was not added.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CpioError> {
        for path in self.entries.keys() {
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !matches!(self.entries.get(parent), Some((Node::Dir, _))) {
                    return Err(CpioError::MissingParent {
                        path: path.clone(),
                        parent: parent.to_owned(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        for (ino, (path, (node, mode))) in (1u32..).zip(&self.entries) {
            let (kind, nlink, data): (u32, u32, &[u8]) = match node {
                Node::Dir => (S_IFDIR, 2, &[]),
                Node::File(data) => (S_IFREG, 1, data),
            };
            write_entry(&mut out, ino, kind | mode, nlink, path, data);
        }
        write_entry(&mut out, 0, 0, 1, "TRAILER!!!", &[]);
        Ok(out)
    }
}

fn write_entry(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, name: &str, data: &[u8]) {
    let namesize = name.len() + 1;
    // Sizes are checked when entries are added; names are paths of a few bytes.
    let filesize = data.len() as u32;
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        MTIME,
        filesize,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        namesize as u32,
        0, // check (only the "070702" format uses it)
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out, HEADER_LEN + namesize);
    out.extend_from_slice(data);
    pad4(out, data.len());
}

fn pad4(out: &mut Vec<u8>, len: usize) {
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes_of_one_file() {
        let mut a = Archive::new();
        a.file("a", 0o644, b"hi".to_vec()).unwrap();
        let bytes = a.to_bytes().unwrap();
        let expected = [
            "070701", "00000001", // ino
            "000081a4", // S_IFREG | 0644
            "00000000", "00000000", "00000001", "00000000", "00000002", // filesize
            "00000000", "00000000", "00000000", "00000000", "00000002", // "a\0"
            "00000000",
        ]
        .concat();
        let mut want = expected.into_bytes();
        want.extend_from_slice(b"a\0"); // 110 + 2 = 112, already aligned
        want.extend_from_slice(b"hi\0\0");
        // The trailer: ino 0, mode 0, nlink 1, namesize 11, then 110 + 11 = 121 padded to 124.
        let trailer = [
            "070701", "00000000", "00000000", "00000000", "00000000", "00000001",
        ]
        .concat()
            + &"00000000".repeat(6)
            + "0000000b"
            + "00000000";
        want.extend_from_slice(trailer.as_bytes());
        want.extend_from_slice(b"TRAILER!!!\0\0\0\0");
        assert_eq!(bytes, want);
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let mut a = Archive::new();
        a.dir("x", 0o755)
            .unwrap()
            .file("x/b", 0o600, vec![1])
            .unwrap()
            .file("x/a", 0o600, vec![2])
            .unwrap();
        let mut b = Archive::new();
        b.file("x/a", 0o600, vec![2])
            .unwrap()
            .file("x/b", 0o600, vec![1])
            .unwrap()
            .dir("x", 0o755)
            .unwrap();
        assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
        assert_eq!(a.paths().collect::<Vec<_>>(), ["x", "x/a", "x/b"]);
    }

    #[test]
    fn refuses_bad_entries() {
        let mut a = Archive::new();
        for p in ["", "/abs", "a//b", "a/./b", "../x", "a/", "nul\0"] {
            assert_eq!(
                a.dir(p, 0o755).unwrap_err(),
                CpioError::BadPath(p.into()),
                "{p:?}"
            );
        }
        assert!(matches!(
            a.dir("d", 0o4_0755),
            Err(CpioError::BadMode { .. })
        ));
        a.dir("d", 0o755).unwrap();
        assert_eq!(
            a.file("d", 0o644, vec![]).unwrap_err(),
            CpioError::Duplicate("d".into())
        );
        a.file("e/f", 0o644, vec![]).unwrap();
        assert_eq!(
            a.to_bytes().unwrap_err(),
            CpioError::MissingParent {
                path: "e/f".into(),
                parent: "e".into()
            }
        );
        let mut b = Archive::new();
        b.file("f", 0o644, vec![])
            .unwrap()
            .file("f/g", 0o644, vec![])
            .unwrap();
        assert!(
            matches!(b.to_bytes(), Err(CpioError::MissingParent { .. })),
            "a file is no parent"
        );
    }
}
