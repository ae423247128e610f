//! Settlements: the EIP-712 statement the enclave signs when an auction sells, which
//! `contracts/src/LeadEscrow.sol` pays exactly once (`docs/settlement.md`).
//!
//! The signed struct is
//! `Settlement(bytes16 auctionId,address buyer,address seller,uint256 price,uint16 feeBps,address feeRecipient)`
//! (EIP-712 <https://eips.ethereum.org/EIPS/eip-712>) under the domain
//! `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)` with
//! name [`DOMAIN_NAME`], version [`DOMAIN_VERSION`], the chain id and the escrow's address. The
//! signing key is the enclave's anchor key (secp256k1), the one `CheckpointAnchor.enclaveKey()`
//! names; signatures have the form of [`crate::anchor`]'s: 65 bytes `r ‖ s ‖ v`, low `s`, or
//! their 64-byte EIP-2098 compact form.

use k256::ecdsa::SigningKey;

use crate::anchor::{
    domain_separator, keccak256, recover_signer, sign_digest, typed_digest, word_address, word_u64,
    Address, AnchorError,
};

/// EIP-712 domain name of `LeadEscrow`.
pub const DOMAIN_NAME: &str = "leadgate LeadEscrow";
/// EIP-712 domain version of `LeadEscrow`.
pub const DOMAIN_VERSION: &str = "1";
/// The EIP-712 type of a settlement, exactly as `LeadEscrow.SETTLEMENT_TYPEHASH` hashes it.
pub const SETTLEMENT_TYPE: &str = "Settlement(bytes16 auctionId,address buyer,address seller,uint256 price,uint16 feeBps,address feeRecipient)";
/// Basis points in a whole: a fee of `fee_bps` takes `price × fee_bps / 10,000`, rounded down.
pub const BPS: u16 = 10_000;

/// One `LeadEscrow` deployment: the EIP-712 domain's chain id and verifying contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowDomain {
    /// EIP-155 chain id (31337 for a local anvil).
    pub chain_id: u64,
    /// The escrow contract's address.
    pub escrow: Address,
}

/// The platform fee a `LeadEscrow` deployment takes, fixed at its deployment and part of what
/// the enclave signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeeTerms {
    /// Basis points of the price, 0 to 10,000.
    pub fee_bps: u16,
    /// Who is credited the fee: the zero address exactly when `fee_bps` is 0.
    pub fee_recipient: Address,
}

impl FeeTerms {
    /// Whether the contract's constructor takes these terms: `fee_bps` ≤ 10,000, and the
    /// recipient is the zero address exactly when the fee is 0 (`LeadEscrow.BadFee`).
    pub fn is_valid(&self) -> bool {
        self.fee_bps <= BPS && (self.fee_bps == 0) == (self.fee_recipient == [0u8; 20])
    }

    /// The fee on `price` (token units), rounded down, as the contract computes it.
    pub fn fee_on(&self, price: u64) -> u64 {
        // price < 2^64 and fee_bps ≤ 10^4: the product fits u128.
        (u128::from(price) * u128::from(self.fee_bps) / u128::from(BPS)) as u64
    }
}

/// What one settlement pays: the auction, who pays, who is paid, the price in token units (the
/// token's smallest unit; USDC 10^-6) and the fee terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// The auction (lead) id, 16 bytes.
    pub auction_id: [u8; 16],
    /// The winner's deposit address: whose escrow balance pays.
    pub buyer: Address,
    /// The seller's payout address: who is credited `price − fee`.
    pub seller: Address,
    /// The price, token units (at most 2^53 − 1 in the log).
    pub price: u64,
    /// The fee terms of the escrow.
    pub fee: FeeTerms,
}

impl EscrowDomain {
    /// The EIP-712 domain separator, 32 bytes (`LeadEscrow.domainSeparator()`).
    pub fn separator(&self) -> [u8; 32] {
        domain_separator(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, &self.escrow)
    }

    /// The EIP-712 digest of `s`, 32 bytes (`LeadEscrow.settlementDigest`). A `bytes16` is
    /// left-aligned in its 32-byte word, as `abi.encode` puts it.
    pub fn digest(&self, s: &Settlement) -> [u8; 32] {
        let mut enc = Vec::with_capacity(7 * 32);
        enc.extend_from_slice(&keccak256(SETTLEMENT_TYPE.as_bytes()));
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&s.auction_id);
        enc.extend_from_slice(&id);
        enc.extend_from_slice(&word_address(&s.buyer));
        enc.extend_from_slice(&word_address(&s.seller));
        enc.extend_from_slice(&word_u64(s.price));
        enc.extend_from_slice(&word_u64(u64::from(s.fee.fee_bps)));
        enc.extend_from_slice(&word_address(&s.fee.fee_recipient));
        typed_digest(&self.separator(), &keccak256(&enc))
    }

    /// Signs `s` with the anchor key: 65 bytes `r ‖ s ‖ v` (RFC 6979, low `s`).
    ///
    /// # Errors
    /// [`AnchorError::BadSignature`] if signing fails (it does not for a valid key).
    pub fn sign(&self, key: &SigningKey, s: &Settlement) -> Result<[u8; 65], AnchorError> {
        sign_digest(key, &self.digest(s))
    }

    /// The address that signed `s` (65-byte or 64-byte compact signature), with the
    /// contract's checks. Compare it with the anchor key in force.
    ///
    /// # Errors
    /// [`AnchorError::BadSignature`] (code `anchor.bad_signature`).
    pub fn signer(&self, s: &Settlement, signature: &[u8]) -> Result<Address, AnchorError> {
        recover_signer(&self.digest(s), signature)
    }
}

/// Parses an address as the protocol writes it: `0x` and 40 lowercase hex digits; `None`
/// for anything else (another case, no prefix, another length).
pub fn parse_lower_address(s: &str) -> Option<Address> {
    let h = s.strip_prefix("0x")?;
    if h.len() != 40 || !crate::bid::is_lower_hex(h) {
        return None;
    }
    let mut a = [0u8; 20];
    hex::decode_to_slice(h, &mut a).ok()?;
    Some(a)
}

/// An Ethereum address as the protocol writes it in JSON: `0x` and 40 lowercase hex digits
/// (42 characters). Anything else does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EthAddress(pub Address);

impl EthAddress {
    /// Whether this is the zero address (which no payment may name).
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 20]
    }
}

impl std::fmt::Display for EthAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl std::str::FromStr for EthAddress {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_lower_address(s)
            .map(EthAddress)
            .ok_or("an address is 0x and 40 lowercase hex digits")
    }
}

impl serde::Serialize for EthAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EthAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The settlement an `auction.closed` carries when the gateway settles on chain: the escrow,
/// who pays and who is paid, the fee terms and the enclave's signature. With the event's
/// `auction_id` and `price` it is everything `LeadEscrow.settle` takes, so anyone can submit
/// it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSettlement {
    /// EIP-155 chain id of the escrow.
    pub chain_id: u64,
    /// The `LeadEscrow` contract.
    pub escrow: EthAddress,
    /// The winner's deposit address, from its sealed bid.
    pub buyer: EthAddress,
    /// The seller's payout address, from its signed submission (`lead.accepted`'s
    /// `auction.payout`).
    pub seller: EthAddress,
    /// The escrow's fee, basis points.
    pub fee_bps: u16,
    /// The escrow's fee recipient (the zero address when the fee is 0).
    pub fee_recipient: EthAddress,
    /// The anchor key's signature over the EIP-712 digest: 65 bytes `r ‖ s ‖ v`, hex (130
    /// chars).
    pub signature: String,
}

impl SignedSettlement {
    /// The domain and the settlement this record signs for auction `auction_id` (16 bytes)
    /// at `price` (token units), both from the `auction.closed` that carries it.
    pub fn statement(&self, auction_id: [u8; 16], price: u64) -> (EscrowDomain, Settlement) {
        (
            EscrowDomain {
                chain_id: self.chain_id,
                escrow: self.escrow.0,
            },
            Settlement {
                auction_id,
                buyer: self.buyer.0,
                seller: self.seller.0,
                price,
                fee: FeeTerms {
                    fee_bps: self.fee_bps,
                    fee_recipient: self.fee_recipient.0,
                },
            },
        )
    }

    /// The 65 signature bytes.
    ///
    /// # Errors
    /// [`AnchorError::BadSignature`] unless `signature` is 130 lowercase hex digits.
    pub fn signature_bytes(&self) -> Result<[u8; 65], AnchorError> {
        let mut out = [0u8; 65];
        if !crate::bid::is_lower_hex(&self.signature) {
            return Err(AnchorError::BadSignature("not lowercase hex"));
        }
        hex::decode_to_slice(&self.signature, &mut out)
            .map_err(|_| AnchorError::BadSignature("not 65 bytes of hex"))?;
        Ok(out)
    }

    /// The address that signed this settlement for `auction_id` at `price`: an auditor
    /// compares it with the anchor key of the epoch that logged it, the escrow with the
    /// anchor key in force.
    ///
    /// # Errors
    /// [`AnchorError::BadSignature`].
    pub fn signer(&self, auction_id: [u8; 16], price: u64) -> Result<Address, AnchorError> {
        let (domain, s) = self.statement(auction_id, price);
        domain.signer(&s, &self.signature_bytes()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchor::address_of;

    fn sample() -> (EscrowDomain, Settlement) {
        (
            EscrowDomain {
                chain_id: 31337,
                escrow: [0xe5; 20],
            },
            Settlement {
                auction_id: [0x11; 16],
                buyer: [0xb0; 20],
                seller: [0x5e; 20],
                price: 12_500_000,
                fee: FeeTerms {
                    fee_bps: 250,
                    fee_recipient: [0xfe; 20],
                },
            },
        )
    }

    #[test]
    fn sign_then_recover_names_the_key_and_any_change_does_not() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let (d, s) = sample();
        let sig = d.sign(&key, &s).unwrap();
        assert_eq!(d.signer(&s, &sig).unwrap(), address_of(key.verifying_key()));
        let compact = crate::anchor::compact_signature(&sig).unwrap();
        assert_eq!(
            d.signer(&s, &compact).unwrap(),
            address_of(key.verifying_key())
        );
        let changes: [fn(&mut EscrowDomain, &mut Settlement); 8] = [
            |d, _| d.chain_id = 1,
            |d, _| d.escrow[0] ^= 1,
            |_, s| s.auction_id[15] ^= 1,
            |_, s| s.buyer[0] ^= 1,
            |_, s| s.seller[19] ^= 1,
            |_, s| s.price += 1,
            |_, s| s.fee.fee_bps = 0,
            |_, s| s.fee.fee_recipient[0] ^= 1,
        ];
        for (i, change) in changes.iter().enumerate() {
            let (mut d2, mut s2) = (d, s);
            change(&mut d2, &mut s2);
            assert_ne!(d2.digest(&s2), d.digest(&s), "change {i}");
            assert_ne!(
                d2.signer(&s2, &sig).ok(),
                Some(address_of(key.verifying_key())),
                "change {i}"
            );
        }
    }

    #[test]
    fn fee_terms_follow_the_constructor_and_round_down() {
        assert!(FeeTerms::default().is_valid());
        let f = FeeTerms {
            fee_bps: 250,
            fee_recipient: [1; 20],
        };
        assert!(f.is_valid());
        assert_eq!(f.fee_on(12_500_000), 312_500);
        assert_eq!(f.fee_on(39), 0);
        assert_eq!(f.fee_on(41), 1);
        assert!(!FeeTerms {
            fee_bps: 250,
            fee_recipient: [0; 20]
        }
        .is_valid());
        assert!(!FeeTerms {
            fee_bps: 0,
            fee_recipient: [1; 20]
        }
        .is_valid());
        assert!(!FeeTerms {
            fee_bps: 10_001,
            fee_recipient: [1; 20]
        }
        .is_valid());
        let all = FeeTerms {
            fee_bps: 10_000,
            fee_recipient: [1; 20],
        };
        assert_eq!(all.fee_on(u64::MAX), u64::MAX);
    }

    #[test]
    fn addresses_are_lowercase_0x_hex() {
        assert_eq!(
            parse_lower_address("0x00000000000000000000000000000000000000ff"),
            Some({
                let mut a = [0u8; 20];
                a[19] = 0xff;
                a
            })
        );
        for bad in [
            "00000000000000000000000000000000000000ff",
            "0x00000000000000000000000000000000000000FF",
            "0x0000000000000000000000000000000000000ff",
            "0x00000000000000000000000000000000000000ff0",
            "0x00000000000000000000000000000000000000fg",
        ] {
            assert_eq!(parse_lower_address(bad), None, "{bad}");
        }
    }
}
