//! Test vectors for `contracts/`: EIP-712 settlements signed by this crate, which the Solidity
//! tests pay through a real `LeadEscrow` (`forge test`, `LeadEscrowVectors`).
//!
//! The committed file `contracts/test/vectors/settlement.json` must equal what this test
//! builds; `UPDATE_VECTORS=1 cargo test -p leadgate-verifier --test settlement_vectors`
//! rewrites it.

use k256::ecdsa::SigningKey;
use leadgate_verifier::anchor::{address_hex, address_of, compact_signature, keccak256, Address};
use leadgate_verifier::settlement::{EscrowDomain, FeeTerms, Settlement};
use serde_json::{json, Value};

const CHAIN_ID: u64 = 31337;
/// The address forge deploys every test contract at (`DEFAULT_TEST_CONTRACT`).
const TEST_CONTRACT: &str = "7fa9385be102ac3eac297483dd6233d62b3e1496";

/// The address a contract created by `sender` with `nonce` (1..=127) gets: the last 20
/// bytes of keccak256(RLP([sender, nonce])) (Ethereum yellow paper, §7).
fn create_address(sender: &Address, nonce: u8) -> Address {
    assert!((1..=0x7f).contains(&nonce));
    let mut rlp = vec![0xd6, 0x94];
    rlp.extend_from_slice(sender);
    rlp.push(nonce);
    let h = keccak256(&rlp);
    h[12..].try_into().unwrap()
}

fn hx(h: &[u8]) -> String {
    format!("0x{}", hex::encode(h))
}

fn addr(byte: u8) -> Address {
    [byte; 20]
}

fn build() -> Value {
    let mut deployer = [0u8; 20];
    hex::decode_to_slice(TEST_CONTRACT, &mut deployer).unwrap();
    let key = SigningKey::from_slice(&[0x22; 32]).unwrap();
    // `LeadEscrowVectors.setUp` deploys the anchor (nonce 1), the token (2), then an escrow
    // with a 2.5% fee (3) and one without (4).
    let escrows = [
        (
            3u8,
            FeeTerms {
                fee_bps: 250,
                fee_recipient: addr(0xfe),
            },
        ),
        (4, FeeTerms::default()),
    ];
    let mut out = Vec::new();
    for (nonce, fee) in escrows {
        let domain = EscrowDomain {
            chain_id: CHAIN_ID,
            escrow: create_address(&deployer, nonce),
        };
        let mut settlements = Vec::new();
        for (i, (price, seller)) in [
            (1u64, 0x51u8),
            (39, 0x52),
            (12_500_000, 0x53),
            ((1 << 53) - 1, 0x54),
        ]
        .into_iter()
        .enumerate()
        {
            let mut auction_id = [0u8; 16];
            auction_id[0] = 0xa0 + i as u8;
            auction_id[15] = nonce;
            let s = Settlement {
                auction_id,
                buyer: addr(0xb0 + i as u8),
                seller: addr(seller),
                price,
                fee,
            };
            let signature = domain.sign(&key, &s).unwrap();
            settlements.push(json!({
                "auctionId": hx(&s.auction_id),
                "buyer": address_hex(&s.buyer),
                "seller": address_hex(&s.seller),
                "price": price,
                "fee": fee.fee_on(price),
                "digest": hx(&domain.digest(&s)),
                "signature": hx(&signature),
                "compactSignature": hx(&compact_signature(&signature).unwrap()),
            }));
        }
        out.push(json!({
            "escrow": address_hex(&domain.escrow),
            "feeBps": fee.fee_bps,
            "feeRecipient": address_hex(&fee.fee_recipient),
            "domainSeparator": hx(&domain.separator()),
            "settlements": settlements,
        }));
    }
    json!({
        "chainId": CHAIN_ID,
        "signerKey": hx(&key.to_bytes()),
        "signer": address_hex(&address_of(key.verifying_key())),
        "escrows": out,
    })
}

#[test]
fn create_address_known_vector() {
    // Forge's test contract deploys its first contract at this address in every forge project
    // (`DEFAULT_TEST_CONTRACT` with nonce 1).
    let mut deployer = [0u8; 20];
    hex::decode_to_slice(TEST_CONTRACT, &mut deployer).unwrap();
    assert_eq!(
        address_hex(&create_address(&deployer, 1)),
        "0x5615deb798bb3e4dfa0139dfa1b3d433cc23b72f"
    );
}

#[test]
fn committed_vectors_match_this_implementation() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/test/vectors/settlement.json"
    );
    let built = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(path, &built).unwrap();
    }
    let committed = std::fs::read_to_string(path)
        .expect("contracts/test/vectors/settlement.json (UPDATE_VECTORS=1 writes it)");
    assert!(
        committed == built,
        "contracts/test/vectors/settlement.json is stale: rerun with UPDATE_VECTORS=1"
    );
}
