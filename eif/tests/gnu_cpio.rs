//! Our newc archives read back with GNU cpio (Debian's `cpio`, installed by
//! scripts/system-deps): the same entries in the same order, and extracted, the same modes
//! and contents. The test fails, never skips, if `cpio` is missing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use leadgate_eif::{cpio::Archive, layout};

fn gnu_cpio(archive: &[u8], args: &[&str], dir: &Path) -> String {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU cpio (Debian package `cpio`; scripts/system-deps installs it)");
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Lists with `cpio -t`, extracts with `cpio -i`, and checks both against `expected`:
/// (path, mode, contents or None for a directory).
fn check(archive: &[u8], expected: &[(&str, u32, Option<&[u8]>)]) {
    let dir = tempfile::tempdir().unwrap();
    let listed = gnu_cpio(archive, &["-t", "--quiet"], dir.path());
    let want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), want);

    // `-v` lists owner, group and mtime: root, root and the epoch for every entry.
    let verbose = gnu_cpio(
        archive,
        &["-t", "-v", "--quiet", "--numeric-uid-gid"],
        dir.path(),
    );
    for line in verbose.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((f[2], f[3]), ("0", "0"), "uid/gid in {line:?}");
        assert!(line.contains("1970"), "mtime 0 in {line:?}");
    }

    let root = dir.path().join("x");
    fs::create_dir(&root).unwrap();
    gnu_cpio(
        archive,
        &[
            "-i",
            "--quiet",
            "--make-directories",
            "--no-absolute-filenames",
        ],
        &root,
    );
    for (path, mode, contents) in expected {
        let p = root.join(path);
        let meta = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{path} mode");
        match contents {
            None => assert!(meta.is_dir(), "{path} is a directory"),
            Some(c) => assert_eq!(fs::read(&p).unwrap(), *c, "{path} contents"),
        }
    }
}

#[test]
fn edge_cases_read_back() {
    let long = format!("d/{}", "n".repeat(200));
    let mut a = Archive::new();
    a.dir("d", 0o750)
        .unwrap()
        .file("d/empty", 0o600, vec![])
        .unwrap()
        .file("d/one", 0o644, vec![1])
        .unwrap()
        .file(&long, 0o755, vec![7; 4099])
        .unwrap()
        .file("a", 0o444, b"abc".to_vec())
        .unwrap();
    check(
        &a.to_bytes().unwrap(),
        &[
            ("a", 0o444, Some(b"abc")),
            ("d", 0o750, None),
            ("d/empty", 0o600, Some(b"")),
            (&long, 0o755, Some(&[7; 4099])),
            ("d/one", 0o644, Some(&[1])),
        ],
    );
}

#[test]
fn the_image_ramdisks_read_back() {
    let env = layout::environment(
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd",
        &layout::FloorSources::default(),
        None,
    )
    .unwrap();
    let env_file: String = env.iter().map(|l| format!("{l}\n")).collect();
    let init = b"init bytes".to_vec();
    let nsm = b"nsm bytes".to_vec();
    check(
        &layout::bootstrap_ramdisk(init.clone(), nsm.clone()).unwrap(),
        &[
            ("dev", 0o755, None),
            ("init", 0o755, Some(&init)),
            ("nsm.ko", 0o755, Some(&nsm)),
        ],
    );
    let binary = vec![0xee; 12_345];
    check(
        &layout::customer_ramdisk(binary.clone(), &env).unwrap(),
        &[
            ("cmd", 0o644, Some(b"/leadgate-enclave\n")),
            ("env", 0o644, Some(env_file.as_bytes())),
            ("rootfs", 0o755, None),
            ("rootfs/dev", 0o755, None),
            ("rootfs/leadgate-enclave", 0o755, Some(&binary)),
            ("rootfs/proc", 0o755, None),
            ("rootfs/run", 0o755, None),
            ("rootfs/sys", 0o755, None),
            ("rootfs/tmp", 0o755, None),
            ("rootfs/var", 0o755, None),
            ("rootfs/var/lib", 0o755, None),
            ("rootfs/var/lib/leadgate", 0o700, None),
        ],
    );
}
