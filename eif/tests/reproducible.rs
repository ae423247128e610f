//! The image build is deterministic, and its PCRs are what the EIF format says they are.
//!
//! The PCRs are recomputed here from the EIF file alone, following the format (AWS
//! `aws-nitro-enclaves-image-format` `src/defs/mod.rs`: a 548-byte big-endian header with 32
//! section offsets and sizes and a CRC-32 of everything but itself; 12-byte section headers)
//! and the PCR definitions (AWS Nitro Enclaves User Guide, "Where to get an enclave's
//! measurements"): PCRn = SHA-384(0^48 ‖ SHA-384(measured bytes)). Nothing below calls the
//! crate's or AWS's hashing or parsing code.

mod common;

use std::collections::BTreeMap;
use std::fs;

use leadgate_eif::image::{build, files, Manifest, STAND_IN_KERNEL};
use sha2::{Digest, Sha384};

const KERNEL: u16 = 1;
const CMDLINE: u16 = 2;
const RAMDISK: u16 = 3;
const SIGNATURE: u16 = 4;
const METADATA: u16 = 5;
const HEADER_LEN: usize = 548;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// CRC-32/ISO-HDLC (the zlib CRC), bit by bit.
fn crc32(chunks: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for chunk in chunks {
        for &byte in *chunk {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

/// The sections of an EIF, in header order: (type, data).
fn sections(eif: &[u8]) -> Vec<(u16, &[u8])> {
    assert_eq!(&eif[..4], b".eif", "magic");
    assert_eq!(be16(eif, 4), 4, "EIF version");
    assert_eq!(be16(eif, 6), 0, "flags: x86_64");
    let n = usize::from(be16(eif, 26));
    let crc = u32::from_be_bytes(eif[HEADER_LEN - 4..HEADER_LEN].try_into().unwrap());
    assert_eq!(
        crc32(&[&eif[..HEADER_LEN - 4], &eif[HEADER_LEN..]]),
        crc,
        "header CRC-32"
    );
    let mut out = Vec::new();
    let mut end = HEADER_LEN;
    for i in 0..n {
        let offset = be64(eif, 28 + 8 * i) as usize;
        let size = be64(eif, 28 + 256 + 8 * i) as usize;
        assert_eq!(offset, end, "sections are contiguous");
        let kind = be16(eif, offset);
        assert_eq!(be64(eif, offset + 4), size as u64, "section header size");
        let data = &eif[offset + 12..offset + 12 + size];
        out.push((kind, data));
        end = offset + 12 + size;
    }
    assert_eq!(end, eif.len(), "nothing after the last section");
    out
}

fn pcr(parts: &[&[u8]]) -> String {
    let mut inner = Sha384::new();
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha384::new();
    outer.update([0u8; 48]);
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

#[test]
fn pcrs_match_an_independent_computation_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = common::stand_in_inputs(dir.path());
    let built = build(&inputs, &dir.path().join("out"), BTreeMap::new()).unwrap();
    let eif = fs::read(dir.path().join("out").join(files::EIF)).unwrap();
    let secs = sections(&eif);
    let kinds: Vec<u16> = secs.iter().map(|s| s.0).collect();
    assert_eq!(
        kinds,
        [KERNEL, CMDLINE, METADATA, RAMDISK, RAMDISK],
        "nitro-cli's section order, unsigned"
    );
    assert!(!kinds.contains(&SIGNATURE));

    let (kernel, cmdline, metadata, boot, customer) =
        (secs[0].1, secs[1].1, secs[2].1, secs[3].1, secs[4].1);
    assert_eq!(kernel, STAND_IN_KERNEL);
    assert_eq!(cmdline, fs::read(inputs.blobs.join("cmdline")).unwrap());
    assert_eq!(
        boot,
        fs::read(dir.path().join("out").join(files::BOOTSTRAP)).unwrap()
    );
    assert_eq!(
        customer,
        fs::read(dir.path().join("out").join(files::CUSTOMER)).unwrap()
    );

    let pcrs = &built.manifest.pcrs;
    assert_eq!(pcrs.pcr0, pcr(&[kernel, cmdline, boot, customer]), "PCR0");
    assert_eq!(pcrs.pcr1, pcr(&[kernel, cmdline, boot]), "PCR1");
    assert_eq!(pcrs.pcr2, pcr(&[customer]), "PCR2");

    // pcr.json is nitro-cli's `build-enclave` output; the manifest repeats the PCRs.
    let pcr_json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("out").join(files::PCR)).unwrap())
            .unwrap();
    assert_eq!(pcr_json["Measurements"]["PCR0"], pcrs.pcr0.as_str());
    assert_eq!(pcr_json["Measurements"]["PCR2"], pcrs.pcr2.as_str());
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(dir.path().join("out").join(files::MANIFEST)).unwrap())
            .unwrap();
    assert_eq!(&manifest, &built.manifest);
    assert_eq!(manifest.eif.sha384, hex::encode(Sha384::digest(&eif)));
    assert_eq!(manifest.binary.bytes, 100_001);
    assert!(manifest.stand_in_kernel);

    // The metadata section names the commit and is in no PCR.
    let meta: serde_json::Value = serde_json::from_slice(metadata).unwrap();
    assert_eq!(meta["ImageVersion"], inputs.provenance.commit.as_str());
    assert_eq!(meta["BuildMetadata"]["BuildTime"], "2026-11-30T17:59:59Z");
    assert_eq!(meta["CustomMetadata"]["cargo_lock_sha256"], "00".repeat(32));
}

#[test]
fn same_inputs_same_bytes_wherever_built() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ia = common::stand_in_inputs(a.path());
    let ib = common::stand_in_inputs(b.path());
    let ba = build(&ia, &a.path().join("out"), BTreeMap::new()).unwrap();
    let bb = build(&ib, &b.path().join("deeper").join("out"), BTreeMap::new()).unwrap();
    assert_eq!(ba.files.len(), bb.files.len());
    for (fa, fb) in ba.files.iter().zip(&bb.files) {
        assert_eq!(fa.file_name(), fb.file_name());
        assert!(
            fs::read(fa).unwrap() == fs::read(fb).unwrap(),
            "{} differs",
            fa.display()
        );
    }
    // The output directory holds exactly the listed files (the stand-in kernel is removed).
    let names: Vec<_> = fs::read_dir(a.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), ba.files.len(), "{names:?}");
}

#[test]
fn what_each_pcr_covers() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::stand_in_inputs(dir.path());
    let pcrs = |inputs: &leadgate_eif::image::Inputs, name: &str| {
        build(inputs, &dir.path().join(name), BTreeMap::new())
            .unwrap()
            .manifest
            .pcrs
    };
    let p = pcrs(&base, "base");

    // Another KMS key: a different customer ramdisk (env), so PCR0 and PCR2 change.
    let mut other_key = base.clone();
    other_key.kms_key_arn = other_key.kms_key_arn.replace("1234abcd", "99999999");
    let q = pcrs(&other_key, "key");
    assert_ne!(q.pcr0, p.pcr0);
    assert_eq!(q.pcr1, p.pcr1);
    assert_ne!(q.pcr2, p.pcr2);

    // Another binary: the same.
    let bin = dir.path().join("other-binary");
    fs::write(&bin, vec![0x5b; 100_001]).unwrap();
    let mut other_bin = base.clone();
    other_bin.binary = bin;
    let r = pcrs(&other_bin, "bin");
    assert_ne!(r.pcr0, p.pcr0);
    assert_eq!(r.pcr1, p.pcr1);
    assert_ne!(r.pcr2, p.pcr2);

    // Another nsm.ko: the bootstrap ramdisk, so PCR0 and PCR1, not PCR2.
    let blobs = dir.path().join("blobs2");
    fs::create_dir_all(&blobs).unwrap();
    for f in ["init", "cmdline"] {
        fs::copy(base.blobs.join(f), blobs.join(f)).unwrap();
    }
    fs::write(blobs.join("nsm.ko"), b"another nsm.ko").unwrap();
    let mut other_nsm = base.clone();
    other_nsm.blobs = blobs;
    let s = pcrs(&other_nsm, "nsm");
    assert_ne!(s.pcr0, p.pcr0);
    assert_ne!(s.pcr1, p.pcr1);
    assert_eq!(s.pcr2, p.pcr2);

    // Provenance is recorded, not measured: another commit gives another EIF but the same PCRs.
    let mut other_commit = base.clone();
    other_commit.provenance.commit = "f".repeat(40);
    let t = build(&other_commit, &dir.path().join("commit"), BTreeMap::new())
        .unwrap()
        .manifest;
    assert_eq!(t.pcrs, p);
    assert_ne!(t.eif.sha384, pcrs_eif(&dir.path().join("base")));
}

fn pcrs_eif(out: &std::path::Path) -> String {
    hex::encode(Sha384::digest(fs::read(out.join(files::EIF)).unwrap()))
}

#[test]
fn refuses_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::stand_in_inputs(dir.path());
    let mut bad_arn = base.clone();
    bad_arn.kms_key_arn =
        "arn:aws:kms:eu-west-1:111122223333:key/x\nLEADGATE_SEALING=dev".to_owned();
    assert!(build(&bad_arn, &dir.path().join("a"), BTreeMap::new()).is_err());
    let mut no_kernel = base.clone();
    no_kernel.stand_in_kernel = false;
    let err = build(&no_kernel, &dir.path().join("b"), BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("bzImage"), "{err}");
    fs::write(base.blobs.join("cmdline"), b"console=ttyS0\0").unwrap();
    assert!(build(&base, &dir.path().join("c"), BTreeMap::new()).is_err());
}
