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
/// The host's vsock-proxy to the host of the floor checkpoint's URL (the bucket): port 8001.
pub const FLOOR_CHECKPOINT_PROXY: &str = "vsock://3:8001";
/// The host's vsock-proxy to the host of the floor anchor's JSON-RPC URL: port 8002.
pub const FLOOR_ANCHOR_PROXY: &str = "vsock://3:8002";

/// The host's vsock-proxy to the host of the escrow's JSON-RPC URL: port 8003.
pub const ESCROW_PROXY: &str = "vsock://3:8003";

/// The `LeadEscrow` a settling enclave signs for and reads (`leadgate_enclave::chain`): in the
/// image, so that buyers and sellers who check PCR0 know which escrow, fee and RPC provider it
/// uses, and the host cannot change them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscrowSettings {
    /// The escrow contract, `0x` and 40 hex digits.
    pub escrow: String,
    /// Its EIP-155 chain id.
    pub chain_id: u64,
    /// Its fee, basis points (0 to 10,000).
    pub fee_bps: u16,
    /// Its fee recipient (`0x` and 40 hex digits); none when the fee is 0.
    pub fee_recipient: Option<String>,
    /// The JSON-RPC URL (`https://`) the enclave reads it from, through [`ESCROW_PROXY`].
    pub rpc: String,
    /// Blocks below the newest that reads are made at.
    pub confirmations: u64,
}

/// Where a restarted enclave reads its floor (the newest tree the log may have signed, see
/// `leadgate_enclave::floor`): baked into the image, so that the host cannot change them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloorSources {
    /// The bucket's `checkpoint` URL (`https://`), reached through [`FLOOR_CHECKPOINT_PROXY`].
    pub checkpoint: Option<String>,
    /// A JSON-RPC URL (`https://`) and the CheckpointAnchor contract (`0x` and 40 hex digits),
    /// reached through [`FLOOR_ANCHOR_PROXY`].
    pub anchor: Option<(String, String)>,
}

/// Why the image settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Not `arn:aws[-partition]:kms:REGION:ACCOUNT:key/ID` (or `alias/NAME`) in printable
    /// ASCII without spaces.
    #[error("--kms-key-arn {0:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")]
    BadKmsKeyArn(String),
    /// A floor source that is not an `https://` URL (the enclave speaks TLS to its host through
    /// the vsock proxy), or an anchor contract that is not `0x` and 40 hex digits.
    #[error("floor source {0:?}: expected an https:// URL without spaces (a contract: 0x and 40 hex digits)")]
    BadFloorSource(String),
    /// Escrow settings with an RPC URL that is not `https://`, an address that is not `0x` and
    /// 40 hex digits, or a fee over 10,000 bps.
    #[error("escrow setting {0:?}: expected an https:// RPC URL, 0x and 40 hex digits, a fee of at most 10,000 bps")]
    BadEscrow(String),
    /// A ramdisk could not be assembled.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// The enclave's environment, one `KEY=VALUE` per item, in the order written to `env`. These
/// are the settings a production enclave must not take from its untrusted host: they are in
/// the customer ramdisk, so PCR0 and PCR2 name the KMS key the enclave unseals with and the
/// places it reads its floor from (`LEADGATE_FLOOR_*`, only those given), and the escrow it
/// settles on (`LEADGATE_ESCROW*`, `LEADGATE_FEE_*`, if given).
///
/// Errors: [`LayoutError::BadKmsKeyArn`], [`LayoutError::BadFloorSource`],
/// [`LayoutError::BadEscrow`].
pub fn environment(
    kms_key_arn: &str,
    floor: &FloorSources,
    escrow: Option<&EscrowSettings>,
) -> Result<Vec<String>, LayoutError> {
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
    let is_https = |url: &str| {
        url.strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic()))
    };
    let is_address = |a: &str| {
        a.strip_prefix("0x")
            .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let https = |url: &str| {
        is_https(url)
            .then_some(())
            .ok_or_else(|| LayoutError::BadFloorSource(url.to_owned()))
    };
    let mut env = vec![
        "LEADGATE_ATTESTATION=nsm".to_owned(),
        "LEADGATE_SEALING=kms".to_owned(),
        format!("LEADGATE_KMS_KEY_ARN={kms_key_arn}"),
        format!("LEADGATE_KMS_PROXY={KMS_PROXY}"),
        format!("LEADGATE_ENCLAVE_LISTEN={LISTEN}"),
        format!("LEADGATE_ENCLAVE_STATE={STATE_DIR}"),
    ];
    if let Some(url) = &floor.checkpoint {
        https(url)?;
        env.push(format!("LEADGATE_FLOOR_CHECKPOINT={url}"));
        env.push(format!(
            "LEADGATE_FLOOR_CHECKPOINT_VIA={FLOOR_CHECKPOINT_PROXY}"
        ));
    }
    if let Some((rpc, contract)) = &floor.anchor {
        https(rpc)?;
        if !is_address(contract) {
            return Err(LayoutError::BadFloorSource(contract.clone()));
        }
        env.push(format!("LEADGATE_FLOOR_ANCHOR_RPC={rpc}"));
        env.push(format!("LEADGATE_FLOOR_ANCHOR_CONTRACT={contract}"));
        env.push(format!("LEADGATE_FLOOR_ANCHOR_VIA={FLOOR_ANCHOR_PROXY}"));
    }
    if let Some(e) = escrow {
        let bad = |what: &str| LayoutError::BadEscrow(what.to_owned());
        if !is_https(&e.rpc) {
            return Err(bad(&e.rpc));
        }
        if !is_address(&e.escrow) {
            return Err(bad(&e.escrow));
        }
        if e.fee_bps > 10_000 {
            return Err(bad(&e.fee_bps.to_string()));
        }
        env.push(format!("LEADGATE_ESCROW={}", e.escrow.to_ascii_lowercase()));
        env.push(format!("LEADGATE_ESCROW_CHAIN_ID={}", e.chain_id));
        env.push(format!("LEADGATE_FEE_BPS={}", e.fee_bps));
        if let Some(r) = &e.fee_recipient {
            if !is_address(r) {
                return Err(bad(r));
            }
            env.push(format!("LEADGATE_FEE_RECIPIENT={}", r.to_ascii_lowercase()));
        }
        env.push(format!("LEADGATE_ESCROW_RPC={}", e.rpc));
        env.push(format!("LEADGATE_ESCROW_RPC_VIA={ESCROW_PROXY}"));
        env.push(format!("LEADGATE_ESCROW_CONFIRMATIONS={}", e.confirmations));
    }
    Ok(env)
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
        let none = FloorSources::default();
        let env = environment(ok, &none, None).unwrap();
        assert!(env.contains(&format!("LEADGATE_KMS_KEY_ARN={ok}")));
        assert!(!env.iter().any(|e| e.starts_with("LEADGATE_FLOOR")));
        assert!(environment(
            "arn:aws-cn:kms:cn-north-1:111122223333:alias/leadgate",
            &none,
            None
        )
        .is_ok());
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
            assert!(environment(bad, &none, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn floor_sources_are_in_the_environment_and_checked() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let contract = format!("0x{}", "ab".repeat(20));
        let floor = FloorSources {
            checkpoint: Some("https://log.example.com/leadgate/checkpoint".into()),
            anchor: Some(("https://rpc.example.com/v1".into(), contract.clone())),
        };
        let env = environment(arn, &floor, None).unwrap();
        for line in [
            "LEADGATE_FLOOR_CHECKPOINT=https://log.example.com/leadgate/checkpoint".to_owned(),
            format!("LEADGATE_FLOOR_CHECKPOINT_VIA={FLOOR_CHECKPOINT_PROXY}"),
            "LEADGATE_FLOOR_ANCHOR_RPC=https://rpc.example.com/v1".to_owned(),
            format!("LEADGATE_FLOOR_ANCHOR_CONTRACT={contract}"),
            format!("LEADGATE_FLOOR_ANCHOR_VIA={FLOOR_ANCHOR_PROXY}"),
        ] {
            assert!(env.contains(&line), "{line} missing from {env:?}");
        }
        for bad in [
            FloorSources {
                checkpoint: Some("http://log.example.com/checkpoint".into()),
                anchor: None,
            },
            FloorSources {
                checkpoint: Some("https://log.example.com/x\nLEADGATE_SEALING=dev".into()),
                anchor: None,
            },
            FloorSources {
                checkpoint: None,
                anchor: Some(("https://rpc.example.com".into(), "0x1234".into())),
            },
            FloorSources {
                checkpoint: None,
                anchor: Some(("ws://rpc.example.com".into(), contract.clone())),
            },
        ] {
            assert!(
                matches!(
                    environment(arn, &bad, None),
                    Err(LayoutError::BadFloorSource(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_escrow_is_in_the_environment_and_checked() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let escrow = EscrowSettings {
            escrow: format!("0x{}", "E5".repeat(20)),
            chain_id: 8453,
            fee_bps: 250,
            fee_recipient: Some(format!("0x{}", "fe".repeat(20))),
            rpc: "https://rpc.example.com/v1".into(),
            confirmations: 12,
        };
        let env = environment(arn, &FloorSources::default(), Some(&escrow)).unwrap();
        for line in [
            format!("LEADGATE_ESCROW=0x{}", "e5".repeat(20)),
            "LEADGATE_ESCROW_CHAIN_ID=8453".to_owned(),
            "LEADGATE_FEE_BPS=250".to_owned(),
            format!("LEADGATE_FEE_RECIPIENT=0x{}", "fe".repeat(20)),
            "LEADGATE_ESCROW_RPC=https://rpc.example.com/v1".to_owned(),
            format!("LEADGATE_ESCROW_RPC_VIA={ESCROW_PROXY}"),
            "LEADGATE_ESCROW_CONFIRMATIONS=12".to_owned(),
        ] {
            assert!(env.contains(&line), "{line} missing from {env:?}");
        }
        for bad in [
            EscrowSettings {
                rpc: "http://rpc.example.com".into(),
                ..escrow.clone()
            },
            EscrowSettings {
                rpc: "https://rpc.example.com/\nLEADGATE_SEALING=dev".into(),
                ..escrow.clone()
            },
            EscrowSettings {
                escrow: "0x1234".into(),
                ..escrow.clone()
            },
            EscrowSettings {
                fee_recipient: Some("fee".into()),
                ..escrow.clone()
            },
            EscrowSettings {
                fee_bps: 10_001,
                ..escrow.clone()
            },
        ] {
            assert!(
                matches!(
                    environment(arn, &FloorSources::default(), Some(&bad)),
                    Err(LayoutError::BadEscrow(_))
                ),
                "{bad:?}"
            );
        }
    }
}
