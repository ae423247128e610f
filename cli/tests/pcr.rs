//! `leadgate pcr` on an EIF built here from small synthetic sections, against an independent
//! computation: PCRn = SHA-384(48 zero bytes ‖ SHA-384(the sections it covers)), with the EIF
//! layout (header, then section header + data, CRC-32/ISO-HDLC over everything but the CRC
//! field) written from AWS's format description, not with AWS's crate.

use sha2::{Digest, Sha384};
use std::process::Command;

const KERNEL: u16 = 1;
const CMDLINE: u16 = 2;
const RAMDISK: u16 = 3;
const SIGNATURE: u16 = 4;
const METADATA: u16 = 5;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An EIF v4: 548-byte header (magic, version, flags, memory, cpus, reserved, section count,
/// 32 offsets, 32 sizes, unused, CRC32), then each section as (type u16, flags u16, size u64)
/// and its bytes, all big-endian.
fn eif(sections: &[(u16, &[u8])]) -> Vec<u8> {
    let header_len = 548usize;
    let mut offsets = [0u64; 32];
    let mut sizes = [0u64; 32];
    let mut at = header_len as u64;
    for (i, (_, data)) in sections.iter().enumerate() {
        offsets[i] = at;
        sizes[i] = data.len() as u64;
        at += 12 + data.len() as u64;
    }
    let mut h = Vec::new();
    h.extend_from_slice(b".eif");
    h.extend_from_slice(&4u16.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&(512u64 << 20).to_be_bytes());
    h.extend_from_slice(&2u64.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&(sections.len() as u16).to_be_bytes());
    offsets
        .iter()
        .for_each(|o| h.extend_from_slice(&o.to_be_bytes()));
    sizes
        .iter()
        .for_each(|s| h.extend_from_slice(&s.to_be_bytes()));
    h.extend_from_slice(&0u32.to_be_bytes());
    let mut body = Vec::new();
    for (kind, data) in sections {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&(data.len() as u64).to_be_bytes());
        body.extend_from_slice(data);
    }
    let mut crc_input = h.clone();
    crc_input.extend_from_slice(&body);
    h.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    assert_eq!(h.len(), header_len);
    h.extend_from_slice(&body);
    h
}

fn pcr(parts: &[&[u8]]) -> String {
    let mut inner = Sha384::new();
    parts.iter().for_each(|p| inner.update(p));
    let mut outer = Sha384::new();
    outer.update([0u8; 48]);
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

fn leadgate_pcr(file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .arg("pcr")
        .arg(file)
        .arg("--json")
        .output()
        .unwrap()
}

#[test]
fn pcrs_of_a_synthetic_eif_match_an_independent_sha384() {
    let kernel = b"synthetic kernel image \x00\x01\x02".repeat(100);
    let cmdline = b"reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on".to_vec();
    let bootstrap = b"first ramdisk: init and nsm driver".repeat(50);
    let app = b"second ramdisk: the leadgate-enclave rootfs".repeat(300);
    // The metadata section nitro-cli writes (EIF v4); it is not measured.
    let metadata = br#"{"ImageName":"leadgate-enclave","ImageVersion":"test","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00Z","BuildTool":"test","BuildToolVersion":"0","OperatingSystem":"Linux","KernelVersion":"6"},"DockerInfo":{},"CustomMetadata":{}}"#.to_vec();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synthetic.eif");
    let image = eif(&[
        (KERNEL, &kernel),
        (CMDLINE, &cmdline),
        (RAMDISK, &bootstrap),
        (RAMDISK, &app),
        (METADATA, &metadata),
    ]);
    std::fs::write(&file, &image).unwrap();
    let out = leadgate_pcr(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["PCR0"], pcr(&[&kernel, &cmdline, &bootstrap, &app]));
    assert_eq!(got["PCR1"], pcr(&[&kernel, &cmdline, &bootstrap]));
    assert_eq!(got["PCR2"], pcr(&[&app]));
    assert!(got.get("PCR8").is_none(), "an unsigned image has no PCR8");

    // Another application ramdisk: PCR0 and PCR2 change, PCR1 does not.
    let other = eif(&[
        (KERNEL, &kernel),
        (CMDLINE, &cmdline),
        (RAMDISK, &bootstrap),
        (RAMDISK, b"another application"),
    ]);
    std::fs::write(&file, &other).unwrap();
    let got: serde_json::Value = serde_json::from_slice(&leadgate_pcr(&file).stdout).unwrap();
    assert_eq!(got["PCR1"], pcr(&[&kernel, &cmdline, &bootstrap]));
    assert_ne!(got["PCR0"], pcr(&[&kernel, &cmdline, &bootstrap, &app]));
    assert_eq!(got["PCR2"], pcr(&[b"another application"]));
}

#[test]
fn corrupted_truncated_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.eif");
    let good = eif(&[(KERNEL, b"kernel"), (CMDLINE, b"cmd"), (RAMDISK, b"rd")]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("CRC32", {
            let mut b = good.clone();
            let last = b.len() - 1;
            b[last] ^= 1;
            b
        }),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("not an EIF", b"\x7fELF not an enclave image".to_vec()),
        ("header", good[..100].to_vec()),
        ("claims", {
            // A section header claiming far more bytes than the file holds.
            let mut b = good.clone();
            b[548 + 4..548 + 12].copy_from_slice(&u64::MAX.to_be_bytes());
            b
        }),
        // A signature section holding an empty CBOR array: AWS's reader indexed its first
        // element and panicked (found by `scripts/fuzz`, tests/__fuzz__/eif_files/crashes).
        (
            "signature",
            eif(&[
                (KERNEL, b"kernel"),
                (CMDLINE, b"cmd"),
                (RAMDISK, b"rd"),
                (SIGNATURE, &[0x80]),
            ]),
        ),
        ("section type", {
            let mut b = good.clone();
            b[548..550].copy_from_slice(&99u16.to_be_bytes());
            b
        }),
    ];
    for (what, bytes) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let out = leadgate_pcr(&file);
        assert!(!out.status.success(), "{what}: accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(out.stdout.is_empty(), "{what}");
    }
}
