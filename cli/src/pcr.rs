//! `leadgate pcr EIF_FILE`: the PCRs an AWS Nitro Enclave image (EIF) will measure, computed
//! with AWS's own `aws-nitro-enclaves-image-format` (the code `nitro-cli build-enclave` and
//! `describe-eif` use). PCR0 hashes the whole image (kernel, command line, every ramdisk),
//! PCR1 the kernel, command line and first ramdisk (AWS's bootstrap), PCR2 the remaining
//! ramdisks (the application), PCR8 the signing certificate of a signed EIF; each is
//! SHA-384(48 zero bytes ‖ SHA-384(sections)) ("Where to get an enclave's measurements",
//! AWS Nitro Enclaves User Guide).
//!
//! An auditor rebuilds the image from a commit (docs/nitro.md, "Reproducing PCR0") and compares this
//! PCR0 with the one the gateway's attestation reports.

use std::io::Read as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use aws_nitro_enclaves_image_format::defs::{
    EifHeader, EifSectionHeader, EifSectionType, EIF_MAGIC,
};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use serde_json::json;

/// Walks the header and section headers of `path` before the AWS reader sees it: the magic
/// must be `.eif`, every section type known, every section inside the file and a signature
/// section a non-empty CBOR array, so a truncated or hostile file is refused instead of making
/// the reader allocate what a header claims or index a signature that is not there.
fn check_layout(path: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut header = vec![0u8; EifHeader::size()];
    f.read_exact(&mut header)
        .map_err(|_| anyhow!("not an EIF: shorter than its {}-byte header", header.len()))?;
    if header[..4] != EIF_MAGIC {
        bail!("not an EIF: bad magic");
    }
    let mut at = EifHeader::size() as u64;
    let mut section = vec![0u8; EifSectionHeader::size()];
    while at < len {
        f.read_exact(&mut section)
            .map_err(|_| anyhow!("EIF truncated in a section header at byte {at}"))?;
        let s = EifSectionHeader::from_be_bytes(&section)
            .map_err(|e| anyhow!("EIF section header at byte {at}: {e}"))?;
        at += EifSectionHeader::size() as u64;
        if s.section_size > len - at {
            bail!(
                "EIF section at byte {at} claims {} bytes; the file has {} left",
                s.section_size,
                len - at
            );
        }
        at += s.section_size;
        if matches!(s.section_type, EifSectionType::EifSectionSignature) {
            // AWS's reader indexes the first signature without checking there is one (an
            // empty CBOR array made it panic; found by the fuzz harness).
            let mut sig = Vec::new();
            (&mut f).take(s.section_size).read_to_end(&mut sig)?;
            match ciborium::from_reader::<Vec<ciborium::Value>, _>(sig.as_slice()) {
                Ok(v) if !v.is_empty() => {}
                _ => bail!("EIF signature section at byte {at} holds no signature"),
            }
        } else {
            std::io::copy(&mut (&mut f).take(s.section_size), &mut std::io::sink())?;
        }
    }
    Ok(())
}

/// The PCRs of the EIF at `path`: `PCR0`, `PCR1`, `PCR2` and, for a signed image, `PCR8`, each
/// 96 lowercase hex characters (SHA-384).
///
/// # Errors
/// A file that is not a well-formed EIF (bad magic, unknown section type, a section running
/// past the end of the file), or whose CRC32 does not match its header.
pub fn measurements(path: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    check_layout(path)?;
    let mut reader = EifReader::from_eif(path.to_string_lossy().into_owned())
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if !reader.check_crc() {
        bail!(
            "{}: CRC32 does not match the header (corrupted image)",
            path.display()
        );
    }
    let m = reader
        .get_measurements()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(["PCR0", "PCR1", "PCR2", "PCR8"]
        .into_iter()
        .filter_map(|n| m.get(n).map(|v| (n, v.clone())))
        .collect())
}

/// `leadgate pcr`: prints PCR0, PCR1, PCR2 (and PCR8 when signed) as hex, or as JSON.
///
/// # Errors
/// As [`measurements`].
#[allow(dead_code)] // the fuzz harness includes this file for `measurements` alone
pub fn pcr(path: &Path, as_json: bool) -> anyhow::Result<()> {
    let pcrs = measurements(path)?;
    if as_json {
        let out: serde_json::Map<_, _> = pcrs
            .into_iter()
            .map(|(n, v)| (n.to_owned(), json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(out));
    } else {
        for (n, v) in pcrs {
            println!("{n} {v}");
        }
    }
    Ok(())
}
