//! Builds the leadgate enclave image file (EIF) for AWS Nitro Enclaves as a deterministic
//! program: the same enclave binary, AWS boot blobs and settings give the same bytes and the
//! same PCRs on any Linux machine, with no Docker, registry or nitro-cli.
//!
//! - [`cpio`]: deterministic newc archives (the ramdisk format).
//! - [`layout`]: what goes into the bootstrap and customer ramdisks, in nitro-cli's layout.
//! - [`image`]: the EIF (with AWS's builder), `pcr.json` and the build manifest.
//!
//! `scripts/build-eif` builds the enclave binary reproducibly and runs the `leadgate-eif`
//! binary; `scripts/reproduce` checks that two clean clones give identical bytes.

pub mod cpio;
pub mod image;
pub mod layout;
