//! Inputs for building an image in tests. AWS's kernel is not in the repository (nor on CI
//! machines), and neither are `init` and `nsm.ko`: these tests build with stand-ins for all
//! four blobs, which changes what PCR0 and PCR1 are but not how they are computed.

use std::path::Path;

use leadgate_eif::image::{Inputs, Provenance};

pub const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Writes stand-in blobs and a stand-in enclave binary into `dir` and returns inputs for them.
pub fn stand_in_inputs(dir: &Path) -> Inputs {
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join("init"), b"\x7fELF stand-in init".repeat(1000)).unwrap();
    std::fs::write(blobs.join("nsm.ko"), b"\x7fELF stand-in nsm.ko").unwrap();
    // AWS's cmdline blob, as nitro-cli ships it (with its trailing newline).
    std::fs::write(
        blobs.join("cmdline"),
        "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on\n",
    )
    .unwrap();
    let binary = dir.join("leadgate-enclave");
    // 3 bytes short of a multiple of 4, so the cpio data padding is exercised.
    std::fs::write(&binary, vec![0x5a; 100_001]).unwrap();
    Inputs {
        binary,
        blobs,
        kernel: None,
        stand_in_kernel: true,
        kms_key_arn: ARN.to_owned(),
        floor: Default::default(),
        escrow: None,
        provenance: Provenance {
            commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            commit_time: 1_796_061_599,
            toolchain: "rustc 1.95.0 (59807616e 2026-04-14)".to_owned(),
            target: "x86_64-unknown-linux-gnu".to_owned(),
            cargo_lock_sha256: "00".repeat(32),
        },
    }
}
