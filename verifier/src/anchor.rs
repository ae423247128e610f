//! On-chain anchors: the EIP-712 statement the enclave signs for each checkpoint, and its
//! recovery, exactly as `contracts/src/CheckpointAnchor.sol` checks it.
//!
//! The signed struct is `Checkpoint(string origin,uint64 size,bytes32 root)` (EIP-712
//! <https://eips.ethereum.org/EIPS/eip-712>) under the domain
//! `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)` with
//! name [`DOMAIN_NAME`] and version [`DOMAIN_VERSION`]. The chain id and the contract address
//! bind a signature to one deployment, so it cannot be replayed on another chain or contract.
//! Signatures are 65 bytes `r ‖ s ‖ v` with `v` ∈ {27, 28} and low `s` (EIP-2), the form
//! `ecrecover` takes. The contract also takes the same signature in its 64-byte compact form
//! `r ‖ vs` (EIP-2098 <https://eips.ethereum.org/EIPS/eip-2098>), which the host submits because
//! it is 32 calldata bytes shorter; [`compact_signature`] converts.

use crate::ErrorCode;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest as _, Keccak256};

use crate::merkle::Hash;

/// EIP-712 domain name of `CheckpointAnchor`.
pub const DOMAIN_NAME: &str = "leadgate CheckpointAnchor";
/// EIP-712 domain version of `CheckpointAnchor`.
pub const DOMAIN_VERSION: &str = "1";

/// A 20-byte Ethereum address.
pub type Address = [u8; 20];

/// Errors for anchor signatures. Code: `anchor.bad_signature`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// Not 64 or 65 bytes, `v` not 27/28, high `s`, or no key recovers.
    #[error("anchor signature is malformed or does not recover: {0}")]
    BadSignature(&'static str),
}

impl AnchorError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::AnchorBadSignature
    }
}

/// One `CheckpointAnchor` deployment: the EIP-712 domain's chain id and verifying contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorDomain {
    /// EIP-155 chain id (31337 for a local anvil).
    pub chain_id: u64,
    /// The contract's address.
    pub contract: Address,
}

/// keccak256 (the original Keccak padding, as the EVM computes it), 32 bytes.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// `abi.encode` of a `uint256` holding `v`: 32 bytes big-endian.
pub(crate) fn word_u64(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

/// `abi.encode` of an address: 12 zero bytes and the 20 address bytes.
pub(crate) fn word_address(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a);
    w
}

/// The EIP-712 separator of the domain
/// `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`,
/// 32 bytes.
pub(crate) fn domain_separator(
    name: &str,
    version: &str,
    chain_id: u64,
    contract: &Address,
) -> [u8; 32] {
    let mut enc = Vec::with_capacity(5 * 32);
    enc.extend_from_slice(&keccak256(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
    ));
    enc.extend_from_slice(&keccak256(name.as_bytes()));
    enc.extend_from_slice(&keccak256(version.as_bytes()));
    enc.extend_from_slice(&word_u64(chain_id));
    enc.extend_from_slice(&word_address(contract));
    keccak256(&enc)
}

/// The EIP-712 digest signed for a struct: keccak256(0x19 0x01 ‖ separator ‖ struct hash).
pub(crate) fn typed_digest(separator: &[u8; 32], struct_hash: &[u8; 32]) -> [u8; 32] {
    let mut msg = Vec::with_capacity(66);
    msg.extend_from_slice(b"\x19\x01");
    msg.extend_from_slice(separator);
    msg.extend_from_slice(struct_hash);
    keccak256(&msg)
}

impl AnchorDomain {
    /// The EIP-712 domain separator, 32 bytes (`CheckpointAnchor.domainSeparator()`).
    pub fn separator(&self) -> [u8; 32] {
        domain_separator(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, &self.contract)
    }

    /// The EIP-712 digest signed for checkpoint (`size`, `root`) of the log `origin`, 32 bytes
    /// (`CheckpointAnchor.checkpointDigest(size, root)`).
    pub fn checkpoint_digest(&self, origin: &str, size: u64, root: &Hash) -> [u8; 32] {
        let mut enc = Vec::with_capacity(4 * 32);
        enc.extend_from_slice(&keccak256(
            b"Checkpoint(string origin,uint64 size,bytes32 root)",
        ));
        enc.extend_from_slice(&keccak256(origin.as_bytes()));
        enc.extend_from_slice(&word_u64(size));
        enc.extend_from_slice(root);
        typed_digest(&self.separator(), &keccak256(&enc))
    }
}

/// The Ethereum address of a secp256k1 public key: the last 20 bytes of the keccak256 of its
/// 64-byte uncompressed encoding (without the 0x04 prefix).
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&hash[12..]);
    a
}

/// The address of a 33-byte SEC1-compressed anchor key (as bound in the attestation); `None`
/// if the bytes are not a secp256k1 point.
pub fn address_of_sec1(sec1: &[u8]) -> Option<Address> {
    VerifyingKey::from_sec1_bytes(sec1)
        .ok()
        .map(|k| address_of(&k))
}

/// Signs a 32-byte digest: 65 bytes `r ‖ s ‖ v`, `v` = 27 + recovery id, low `s` (RFC 6979
/// deterministic nonce).
///
/// # Errors
/// [`AnchorError::BadSignature`] if signing fails (it does not for a valid key).
pub fn sign_digest(key: &SigningKey, digest: &[u8; 32]) -> Result<[u8; 65], AnchorError> {
    let (sig, recid) = key
        .sign_prehash_recoverable(digest)
        .map_err(|_| AnchorError::BadSignature("signing failed"))?;
    // k256 normalizes s to the low half and adjusts the recovery id to match.
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recid.to_byte();
    Ok(out)
}

/// The EIP-2098 compact form of a 65-byte `r ‖ s ‖ v` signature: 64 bytes `r ‖ vs`, where
/// `vs` = (`v` − 27) << 255 | `s`. The contract accepts either form for the same signature.
///
/// # Errors
/// [`AnchorError::BadSignature`] if `v` is not 27 or 28, or the top bit of `s` is set: it
/// would collide with the parity bit (a low `s`, as [`sign_digest`] makes, never has it).
pub fn compact_signature(signature: &[u8; 65]) -> Result<[u8; 64], AnchorError> {
    let parity = match signature[64] {
        27 => 0u8,
        28 => 1,
        _ => return Err(AnchorError::BadSignature("v is not 27 or 28")),
    };
    if signature[32] & 0x80 != 0 {
        return Err(AnchorError::BadSignature("high s"));
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(&signature[..64]);
    out[32] |= parity << 7;
    Ok(out)
}

/// Recovers the signer's address from a signature over `digest` with the contract's checks:
/// 65 bytes `r ‖ s ‖ v` or 64 bytes EIP-2098 `r ‖ vs`, `v` ∈ {27, 28}, low `s`.
///
/// # Errors
/// [`AnchorError::BadSignature`].
pub fn recover_signer(digest: &[u8; 32], signature: &[u8]) -> Result<Address, AnchorError> {
    let mut rs = [0u8; 64];
    let v = match signature.len() {
        65 => {
            rs.copy_from_slice(&signature[..64]);
            signature[64]
        }
        64 => {
            rs.copy_from_slice(signature);
            let parity = rs[32] >> 7;
            rs[32] &= 0x7f;
            27 + parity
        }
        _ => return Err(AnchorError::BadSignature("not 64 or 65 bytes")),
    };
    if v != 27 && v != 28 {
        return Err(AnchorError::BadSignature("v is not 27 or 28"));
    }
    let s =
        Signature::from_slice(&rs).map_err(|_| AnchorError::BadSignature("r or s out of range"))?;
    if s.normalize_s().is_some() {
        return Err(AnchorError::BadSignature("high s"));
    }
    let recid = RecoveryId::from_byte(v - 27).ok_or(AnchorError::BadSignature("bad v"))?;
    let key = VerifyingKey::recover_from_prehash(digest, &s, recid)
        .map_err(|_| AnchorError::BadSignature("no key recovers"))?;
    Ok(address_of(&key))
}

/// `0x`-prefixed lowercase hex of an address, 42 chars.
pub fn address_hex(a: &Address) -> String {
    format!("0x{}", hex::encode(a))
}

/// Parses a `0x`-prefixed (or bare) 40-hex-digit address, any case.
pub fn parse_address(s: &str) -> Option<Address> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    let mut a = [0u8; 20];
    hex::decode_to_slice(h, &mut a).ok()?;
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    #[test]
    fn keccak_known_vector() {
        // keccak256("") from the Keccak team's test vectors, as the EVM returns it.
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn address_of_known_key() {
        // Private key 1: the generator point's address (widely published).
        let mut one = [0u8; 32];
        one[31] = 1;
        let k = SigningKey::from_slice(&one).unwrap();
        assert_eq!(
            address_hex(&address_of(k.verifying_key())),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn digest_binds_every_field() {
        let d = AnchorDomain {
            chain_id: 31337,
            contract: [0x11; 20],
        };
        let base = d.checkpoint_digest("leadgate.dev/log", 10, &[7; 32]);
        for other in [
            AnchorDomain { chain_id: 1, ..d }.checkpoint_digest("leadgate.dev/log", 10, &[7; 32]),
            AnchorDomain {
                contract: [0x12; 20],
                ..d
            }
            .checkpoint_digest("leadgate.dev/log", 10, &[7; 32]),
            d.checkpoint_digest("other/log", 10, &[7; 32]),
            d.checkpoint_digest("leadgate.dev/log", 11, &[7; 32]),
            d.checkpoint_digest("leadgate.dev/log", 10, &[8; 32]),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn sign_recover_round_trip_and_malleability() {
        let k = key(9);
        let d = [0x42; 32];
        let sig = sign_digest(&k, &d).unwrap();
        assert_eq!(
            recover_signer(&d, &sig).unwrap(),
            address_of(k.verifying_key())
        );
        // Another digest recovers someone else (or nothing).
        assert_ne!(
            recover_signer(&[0x43; 32], &sig).ok(),
            Some(address_of(k.verifying_key()))
        );
        // The high-s twin of a valid signature is refused, as the contract refuses it.
        let s = Signature::from_slice(&sig[..64]).unwrap();
        let (r, s_) = s.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s_).to_bytes()).unwrap();
        let mut twin = [0u8; 65];
        twin[..64].copy_from_slice(&high.to_bytes());
        twin[64] = if sig[64] == 27 { 28 } else { 27 };
        assert_eq!(
            recover_signer(&d, &twin),
            Err(AnchorError::BadSignature("high s"))
        );
        let mut bad_v = sig;
        bad_v[64] = 1;
        assert!(recover_signer(&d, &bad_v).is_err());
        assert_eq!(
            compact_signature(&bad_v),
            Err(AnchorError::BadSignature("v is not 27 or 28"))
        );
        assert_eq!(
            compact_signature(&twin),
            Err(AnchorError::BadSignature("high s"))
        );
        assert!(recover_signer(&d, &sig[..63]).is_err());
        assert!(recover_signer(&d, &[sig.as_slice(), &[0]].concat()).is_err());
    }

    #[test]
    fn compact_signatures_recover_as_the_full_form() {
        // Keys and digests until both parities have been seen.
        let mut parities = [false; 2];
        for seed in 1..=40u8 {
            let k = key(seed);
            let d = [seed; 32];
            let sig = sign_digest(&k, &d).unwrap();
            let c = compact_signature(&sig).unwrap();
            let parity = usize::from(sig[64] - 27);
            parities[parity] = true;
            // r unchanged, s unchanged below the top bit, parity in the top bit (EIP-2098).
            assert_eq!(c[..32], sig[..32]);
            assert_eq!(c[32] >> 7, sig[64] - 27);
            assert_eq!(c[32] & 0x7f, sig[32]);
            assert_eq!(c[33..], sig[33..64]);
            assert_eq!(
                recover_signer(&d, &c).unwrap(),
                address_of(k.verifying_key())
            );
            // The other parity is another signature: it recovers someone else or no one.
            let mut flipped = c;
            flipped[32] ^= 0x80;
            assert_ne!(
                recover_signer(&d, &flipped).ok(),
                Some(address_of(k.verifying_key()))
            );
        }
        assert_eq!(parities, [true, true], "both recovery ids seen");
    }

    #[test]
    fn compact_signature_known_vectors() {
        // EIP-2098's test cases: private key 0x1234…1234 signs two EIP-191 personal messages
        // (RFC 6979 nonces, so the signatures are reproducible), one with each parity.
        let k =
            SigningKey::from_slice(&hex::decode("1234567890".repeat(6) + "1234").unwrap()).unwrap();
        for (message, r, s, v, vs) in [
            (
                "Hello World",
                "68a020a209d3d56c46f38cc50a33f704f4a9a10a59377f8dd762ac66910e9b90",
                "7e865ad05c4035ab5792787d4a0297a43617ae897930a6fe4d822b8faea52064",
                27,
                "7e865ad05c4035ab5792787d4a0297a43617ae897930a6fe4d822b8faea52064",
            ),
            (
                "It's a small(er) world",
                "9328da16089fcba9bececa81663203989f2df5fe1faa6291a45381c81bd17f76",
                "139c6d6b623b42da56557e5e734a43dc83345ddfadec52cbe24d0cc64f550793",
                28,
                "939c6d6b623b42da56557e5e734a43dc83345ddfadec52cbe24d0cc64f550793",
            ),
        ] {
            let digest = keccak256(
                format!("\x19Ethereum Signed Message:\n{}{message}", message.len()).as_bytes(),
            );
            let sig = sign_digest(&k, &digest).unwrap();
            assert_eq!(hex::encode(&sig[..32]), r, "{message}");
            assert_eq!(hex::encode(&sig[32..64]), s, "{message}");
            assert_eq!(sig[64], v, "{message}");
            let c = compact_signature(&sig).unwrap();
            assert_eq!(hex::encode(c), format!("{r}{vs}"), "{message}");
            let signer = address_of(k.verifying_key());
            assert_eq!(recover_signer(&digest, &c).unwrap(), signer);
            assert_eq!(recover_signer(&digest, &sig).unwrap(), signer);
        }
    }

    #[test]
    fn addresses_parse_and_print() {
        let a = [0xab; 20];
        assert_eq!(parse_address(&address_hex(&a)), Some(a));
        assert_eq!(
            parse_address("0xABABABABABABABABABABABABABABABABABABABAB"),
            Some(a)
        );
        assert_eq!(parse_address("0x1234"), None);
    }
}
