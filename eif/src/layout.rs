//! What goes into the enclave image's two ramdisks, in nitro-cli's layout (nitro-cli
//! `enclave_build/src/yaml_generator.rs`; `../shared/nitro-blobs/SOURCE.md` in the project's
//! workspace): the Nitro hypervisor hands the kernel both archives as one initramfs, AWS's
//! `init` loads `nsm.ko`, makes `/rootfs` the root and runs `cmd` with the environment in `env`.

use crate::cpio::{Archive, CpioError};

/// Where the enclave binary lives inside the image (`rootfs/` is its `/`).
pub const BINARY_PATH: &str = "/leadgate-enclave";
/// The enclave's state directory inside the image (sealed key material lives here).
pub const STATE_DIR: &str = "/var/lib/leadgate";

/// The vsock address the enclave listens on for its host: any CID (`u32::MAX`), port 7000.
pub const LISTEN: &str = "vsock://4294967295:7000";
/// The host's vsock-proxy to AWS KMS: the parent instance (CID 3), port 8000.
pub const KMS_PROXY: &str = "vsock://3:8000";

/// Why the image settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Not `arn:aws[-partition]:kms:REGION:ACCOUNT:key/ID` (or `alias/NAME`) in printable
    /// ASCII without spaces.
    #[error("--kms-key-arn {0:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")]
    BadKmsKeyArn(String),
    /// A ramdisk could not be assembled.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// The enclave's environment, one `KEY=VALUE` per item, in the order written to `env`. These
/// are the settings a production enclave must not take from its untrusted host: they are in
/// the customer ramdisk, so PCR0 and PCR2 name the KMS key the enclave unseals with.
///
/// Errors: [`LayoutError::BadKmsKeyArn`].
pub fn environment(kms_key_arn: &str) -> Result<Vec<String>, LayoutError> {
    let parts: Vec<&str> = kms_key_arn.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && (parts[5].starts_with("key/") || parts[5].starts_with("alias/"))
        && kms_key_arn.bytes().all(|b| b.is_ascii_graphic());
    if !well_formed {
        return Err(LayoutError::BadKmsKeyArn(kms_key_arn.to_owned()));
    }
    Ok(vec![
        "LEADGATE_ATTESTATION=nsm".to_owned(),
        "LEADGATE_SEALING=kms".to_owned(),
        format!("LEADGATE_KMS_KEY_ARN={kms_key_arn}"),
        format!("LEADGATE_KMS_PROXY={KMS_PROXY}"),
        format!("LEADGATE_ENCLAVE_LISTEN={LISTEN}"),
        format!("LEADGATE_ENCLAVE_STATE={STATE_DIR}"),
    ])
}

/// The bootstrap ramdisk (measured into PCR1 with the kernel and cmdline): `dev/` (0755),
/// `init` (0755) and `nsm.ko` (0755), AWS's blobs byte for byte.
///
/// Errors: [`LayoutError::Cpio`] (files of 4 GiB or more).
pub fn bootstrap_ramdisk(init: Vec<u8>, nsm_ko: Vec<u8>) -> Result<Vec<u8>, LayoutError> {
    let mut a = Archive::new();
    a.dir("dev", 0o755)?
        .file("init", 0o755, init)?
        .file("nsm.ko", 0o755, nsm_ko)?;
    Ok(a.to_bytes()?)
}

/// The customer ramdisk (PCR2): `rootfs/` with the enclave binary at [`BINARY_PATH`] (0755),
/// its state directory [`STATE_DIR`] (0700) and the mount points init expects
/// (`rootfs/{dev,proc,run,sys,tmp,var}`, 0755); `cmd` (0644, the command, one item per line)
/// and `env` (0644, [`environment`], one item per line).
///
/// Errors: [`LayoutError`].
pub fn customer_ramdisk(binary: Vec<u8>, env: &[String]) -> Result<Vec<u8>, LayoutError> {
    let mut a = Archive::new();
    a.dir("rootfs", 0o755)?;
    for d in ["dev", "proc", "run", "sys", "tmp", "var", "var/lib"] {
        a.dir(&format!("rootfs/{d}"), 0o755)?;
    }
    a.dir(&format!("rootfs{STATE_DIR}"), 0o700)?
        .file(&format!("rootfs{BINARY_PATH}"), 0o755, binary)?
        .file("cmd", 0o644, lines(&[BINARY_PATH.to_owned()]))?
        .file("env", 0o644, lines(env))?;
    Ok(a.to_bytes()?)
}

fn lines(items: &[String]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_key_arns() {
        let ok = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let env = environment(ok).unwrap();
        assert!(env.contains(&format!("LEADGATE_KMS_KEY_ARN={ok}")));
        assert!(environment("arn:aws-cn:kms:cn-north-1:111122223333:alias/leadgate").is_ok());
        for bad in [
            "",
            "key/1234",
            "arn:aws:s3:eu-west-1:111122223333:key/x",
            "arn:aws:kms:eu-west-1:1111:key/x",
            "arn:aws:kms::111122223333:key/x",
            "arn:aws:kms:eu-west-1:111122223333:user/x",
            "arn:aws:kms:eu-west-1:111122223333:key/x\nLEADGATE_SEALING=dev",
            "arn:aws:kms:eu-west-1:111122223333:key/x y",
        ] {
            assert!(environment(bad).is_err(), "{bad:?}");
        }
    }
}
