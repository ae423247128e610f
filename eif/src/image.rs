//! The enclave image file (EIF): both ramdisks from [`crate::layout`], assembled with AWS's
//! builder (`aws-nitro-enclaves-image-format`, the code nitro-cli itself uses) into the same
//! sections nitro-cli writes (kernel, cmdline, metadata, bootstrap ramdisk, customer ramdisk;
//! x86_64, unsigned), and the record of what went in.
//!
//! PCRs (AWS Nitro Enclaves User Guide, "Where to get an enclave's measurements"), each
//! `SHA-384(0^48 ‖ SHA-384(data))`, 48 bytes: PCR0 over kernel ‖ cmdline ‖ every ramdisk,
//! PCR1 over kernel ‖ cmdline ‖ the bootstrap ramdisk, PCR2 over the customer ramdisk. The
//! metadata section is in no PCR.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

use crate::layout::{self, LayoutError};

/// Stand-in for `bzImage` where AWS's kernel is not at hand (tests, `scripts/reproduce` on a
/// machine without nitro-cli). An EIF built with it does not boot, and its PCR0 and PCR1 are
/// not those of any real image; its PCR2 (our code and settings) is the real one.
pub const STAND_IN_KERNEL: &[u8] =
    b"leadgate stand-in kernel: not a bzImage. PCR0/PCR1 of an EIF holding it are not a real image's.\n";

/// File names written into the output directory.
pub mod files {
    /// The enclave image.
    pub const EIF: &str = "leadgate-enclave.eif";
    /// PCR0/1/2 in nitro-cli's `build-enclave` output format.
    pub const PCR: &str = "pcr.json";
    /// [`super::Manifest`].
    pub const MANIFEST: &str = "manifest.json";
    /// The bootstrap ramdisk (newc cpio).
    pub const BOOTSTRAP: &str = "bootstrap-initrd.img";
    /// The customer ramdisk (newc cpio).
    pub const CUSTOMER: &str = "customer-initrd.img";
}

/// Why a build failed. All are faults of the inputs or the file system; nothing is retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An input could not be read or an output written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel command line blob is not UTF-8 or holds a NUL byte.
    #[error("the cmdline blob is not UTF-8 text without NUL bytes")]
    BadCmdline,
    /// The image settings or a ramdisk were refused.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// AWS's builder failed (it panics on I/O errors; the message is its own).
    #[error("EIF builder: {0}")]
    Builder(String),
}

/// Where the build's inputs come from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The statically linked `leadgate-enclave` binary.
    pub binary: PathBuf,
    /// A directory holding AWS's `init`, `nsm.ko` and `cmdline` (and, unless `kernel` is
    /// given, `bzImage`; `bzImage.config`, if present, names the kernel version).
    pub blobs: PathBuf,
    /// The kernel; `None`: `blobs/bzImage`. Ignored with `stand_in_kernel`.
    pub kernel: Option<PathBuf>,
    /// Use [`STAND_IN_KERNEL`] instead of a kernel file.
    pub stand_in_kernel: bool,
    /// The KMS key the enclave unseals with ([`layout::environment`]).
    pub kms_key_arn: String,
    /// Where a restarted enclave reads its floor ([`layout::environment`]).
    pub floor: layout::FloorSources,
    /// The escrow a settling enclave signs for and reads ([`layout::environment`]).
    pub escrow: Option<layout::EscrowSettings>,
    /// Where the inputs were built from; recorded, never measured.
    pub provenance: Provenance,
}

/// The source and toolchain an image was built from. Goes into the EIF's metadata section and
/// the manifest, not into any PCR.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Provenance {
    /// The git commit, 40 hex digits.
    pub commit: String,
    /// The commit's time, Unix seconds (`git log -1 --format=%ct`).
    pub commit_time: u64,
    /// `rustc -V` of the toolchain that built the binary.
    pub toolchain: String,
    /// The Rust target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
    /// SHA-256 of `Cargo.lock`, hex.
    pub cargo_lock_sha256: String,
}

/// A file that went into the image: size in bytes and SHA-384, hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Digest384 {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-384 of the contents, 96 hex digits.
    pub sha384: String,
}

impl Digest384 {
    /// The size and SHA-384 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self {
            bytes: data.len() as u64,
            sha384: hex::encode(Sha384::digest(data)),
        }
    }
}

/// PCR0, PCR1 and PCR2 of an image, 96 hex digits each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pcrs {
    #[serde(rename = "PCR0")]
    pub pcr0: String,
    #[serde(rename = "PCR1")]
    pub pcr1: String,
    #[serde(rename = "PCR2")]
    pub pcr2: String,
}

/// `manifest.json`: everything an auditor needs to rebuild the image and to see what differs
/// if their PCRs do not match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// `leadgate-eif-manifest/v1`.
    pub format: String,
    pub provenance: Provenance,
    /// The build machine's C compiler and libc, and anything else the caller recorded
    /// (`--build-env KEY=VALUE`): they are linked into the static binary.
    pub build_env: BTreeMap<String, String>,
    /// The enclave binary.
    pub binary: Digest384,
    /// `bzImage` (or the stand-in), `cmdline`, `init`, `nsm.ko`.
    pub blobs: BTreeMap<String, Digest384>,
    /// True if the kernel is [`STAND_IN_KERNEL`]: then PCR0 and PCR1 are not a real image's.
    pub stand_in_kernel: bool,
    /// The enclave's command and environment (customer ramdisk `cmd` and `env`).
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// `bootstrap` and `customer`.
    pub ramdisks: BTreeMap<String, Digest384>,
    /// The EIF file.
    pub eif: Digest384,
    pub pcrs: Pcrs,
}

/// The result of [`build`]: the manifest (also written as `manifest.json`).
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Manifest,
    /// The output directory's files, in the order written: [`files`].
    pub files: Vec<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|source| BuildError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    fs::write(path, data).map_err(|source| BuildError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Builds the image into `out` (created if missing): [`files::BOOTSTRAP`],
/// [`files::CUSTOMER`], [`files::EIF`], [`files::PCR`] and [`files::MANIFEST`]. The same
/// inputs give the same bytes in every file, whatever the machine, directory, user or time.
///
/// Errors: [`BuildError`].
pub fn build(
    inputs: &Inputs,
    out: &Path,
    build_env: BTreeMap<String, String>,
) -> Result<Built, BuildError> {
    fs::create_dir_all(out).map_err(|source| BuildError::Io {
        path: out.to_owned(),
        source,
    })?;
    let binary = read(&inputs.binary)?;
    let init = read(&inputs.blobs.join("init"))?;
    let nsm_ko = read(&inputs.blobs.join("nsm.ko"))?;
    let cmdline_blob = read(&inputs.blobs.join("cmdline"))?;
    let cmdline = String::from_utf8(cmdline_blob.clone()).map_err(|_| BuildError::BadCmdline)?;
    if cmdline.contains('\0') {
        return Err(BuildError::BadCmdline);
    }
    let kernel_path = if inputs.stand_in_kernel {
        let p = out.join("stand-in-bzImage");
        write(&p, STAND_IN_KERNEL)?;
        p
    } else {
        inputs
            .kernel
            .clone()
            .unwrap_or_else(|| inputs.blobs.join("bzImage"))
    };
    let kernel = read(&kernel_path)?;
    let kernel_version = if inputs.stand_in_kernel {
        "stand-in".to_owned()
    } else {
        fs::read_to_string(inputs.blobs.join("bzImage.config"))
            .ok()
            .and_then(|c| kernel_version(&c))
            .unwrap_or_else(|| "unknown".to_owned())
    };

    let env = layout::environment(&inputs.kms_key_arn, &inputs.floor, inputs.escrow.as_ref())?;
    let bootstrap = layout::bootstrap_ramdisk(init.clone(), nsm_ko.clone())?;
    let customer = layout::customer_ramdisk(binary.clone(), &env)?;
    let bootstrap_path = out.join(files::BOOTSTRAP);
    let customer_path = out.join(files::CUSTOMER);
    write(&bootstrap_path, &bootstrap)?;
    write(&customer_path, &customer)?;

    let identity = EifIdentityInfo {
        img_name: "leadgate-enclave".to_owned(),
        img_version: inputs.provenance.commit.clone(),
        build_info: EifBuildInfo {
            build_time: rfc3339(inputs.provenance.commit_time),
            build_tool: env!("CARGO_PKG_NAME").to_owned(),
            build_tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            img_os: "linux".to_owned(),
            img_kernel: kernel_version,
        },
        docker_info: serde_json::Value::Null,
        custom_info: serde_json::to_value(&inputs.provenance)
            .map_err(|e| BuildError::Builder(e.to_string()))?,
    };
    let eif_path = out.join(files::EIF);
    let measurements = {
        let mut file = fs::File::create(&eif_path).map_err(|source| BuildError::Io {
            path: eif_path.clone(),
            source,
        })?;
        let (k, b, c) = (
            kernel_path.clone(),
            bootstrap_path.clone(),
            customer_path.clone(),
        );
        // AWS's builder `expect`s on every I/O error; a panic here is a failed write.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut builder = EifBuilder::new(&k, cmdline, None, Sha384::new(), 0, identity);
            builder.add_ramdisk(&b);
            builder.add_ramdisk(&c);
            builder.write_to(&mut file)
        }))
        .map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            BuildError::Builder(msg)
        })?
    };
    let pcr = |k: &str| {
        measurements
            .get(k)
            .cloned()
            .ok_or_else(|| BuildError::Builder(format!("no {k}")))
    };
    let pcrs = Pcrs {
        pcr0: pcr("PCR0")?,
        pcr1: pcr("PCR1")?,
        pcr2: pcr("PCR2")?,
    };
    let eif = read(&eif_path)?;

    let pcr_json = serde_json::json!({ "Measurements": measurements });
    let pcr_path = out.join(files::PCR);
    write(
        &pcr_path,
        format!(
            "{}\n",
            serde_json::to_string_pretty(&pcr_json).unwrap_or_default()
        )
        .as_bytes(),
    )?;

    let kernel_name = if inputs.stand_in_kernel {
        "bzImage (stand-in)"
    } else {
        "bzImage"
    };
    let manifest = Manifest {
        format: "leadgate-eif-manifest/v1".to_owned(),
        provenance: inputs.provenance.clone(),
        build_env,
        binary: Digest384::of(&binary),
        blobs: BTreeMap::from([
            (kernel_name.to_owned(), Digest384::of(&kernel)),
            ("cmdline".to_owned(), Digest384::of(&cmdline_blob)),
            ("init".to_owned(), Digest384::of(&init)),
            ("nsm.ko".to_owned(), Digest384::of(&nsm_ko)),
        ]),
        stand_in_kernel: inputs.stand_in_kernel,
        cmd: vec![layout::BINARY_PATH.to_owned()],
        env,
        ramdisks: BTreeMap::from([
            ("bootstrap".to_owned(), Digest384::of(&bootstrap)),
            ("customer".to_owned(), Digest384::of(&customer)),
        ]),
        eif: Digest384::of(&eif),
        pcrs,
    };
    let manifest_path = out.join(files::MANIFEST);
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| BuildError::Builder(e.to_string()))?;
    write(&manifest_path, format!("{text}\n").as_bytes())?;
    if inputs.stand_in_kernel {
        fs::remove_file(&kernel_path).map_err(|source| BuildError::Io {
            path: kernel_path,
            source,
        })?;
    }
    Ok(Built {
        manifest,
        files: vec![
            bootstrap_path,
            customer_path,
            eif_path,
            pcr_path,
            manifest_path,
        ],
    })
}

/// SHA-256 of a file, hex (for `Cargo.lock`).
///
/// Errors: [`BuildError::Io`].
pub fn sha256_file(path: &Path) -> Result<String, BuildError> {
    Ok(hex::encode(Sha256::digest(read(path)?)))
}

/// `4.14.355` from a kernel `.config` header (`# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration`).
fn kernel_version(config: &str) -> Option<String> {
    config.lines().take(5).find_map(|l| {
        let rest = l.strip_prefix("# Linux/")?;
        let version = rest.split_whitespace().nth(1)?;
        Some(version.to_owned())
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian, days-from-civil inverse,
/// H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_061_599), "2026-11-30T17:59:59Z");
    }

    #[test]
    fn kernel_config_header() {
        let c = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration\n#\n";
        assert_eq!(
            kernel_version(c).as_deref(),
            Some("4.14.256-209.484.amzn2.x86_64")
        );
        assert_eq!(kernel_version("CONFIG_X=y\n"), None);
    }
}
