//! `leadgate verify settlement`: a sale's payment, from the log to the chain.
//!
//! From the gateway's attested keys and a checkpoint they sign, checks that the auction's
//! `lead.accepted` and `auction.closed` are in the log; that the close carries a settlement
//! for its auction and logged price, paying the payout address of the seller's signed
//! submission; that the anchor key of the `log.epoch` in force at the close signed it
//! (EIP-712, `docs/settlement.md`); and then, on the chain, that the escrow is the one signed
//! for (chain id, fee terms), that it records the auction as paid, and that its `Settled`
//! event moved exactly the signed amounts: the price from the winner's deposit, the price less
//! the fee to the seller, the fee to the recipient.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{sol, SolEvent as _};
use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::anchor::address_of_sec1;
use leadgate_verifier::api::{AuctionDetail, EpochList};
use leadgate_verifier::event::Event;
use leadgate_verifier::settlement::{EthAddress, FeeTerms};

use crate::chain::Rpc;
use crate::http::{agent, attest_gateway, get_typed, TrustArgs};

use super::checkpoints::{checkpoint_covering, included_entry};

sol! {
    function settled(bytes16 auctionId) external view returns (bool);
    function feeBps() external view returns (uint16);
    function feeRecipient() external view returns (address);
    event Settled(bytes16 indexed auctionId, address indexed buyer, address indexed seller, uint256 price, uint256 fee);
}

/// Options of `verify settlement`.
pub struct SettlementArgs<'a> {
    /// Auction (lead) id, 32 hex digits.
    pub id: &'a str,
    /// Gateway base URL: attested keys, the auction index, the log.
    pub gateway: &'a str,
    /// `--pcr0`, `--allow-debug`, `--root`.
    pub trust: &'a TrustArgs,
    /// JSON-RPC URL of the escrow's chain.
    pub rpc: &'a str,
}

/// `verify settlement`: prints what was checked; fails with the first check that does not
/// hold (a sale logged and signed but not yet paid fails with "not paid", and says how to pay
/// it).
///
/// # Errors
/// Each failed check, as above; RPC and gateway failures.
pub fn settlement(a: &SettlementArgs<'_>) -> anyhow::Result<()> {
    let http = agent();
    let (gateway, id) = (a.gateway, a.id);
    let mut id16 = [0u8; 16];
    hex::decode_to_slice(id, &mut id16).map_err(|_| anyhow!("an auction id is 32 hex digits"))?;
    let keys = attest_gateway(&http, gateway, a.trust)?.1;

    // The log: the sale and its settlement, in a checkpoint the log key signed.
    let detail: AuctionDetail = get_typed(&http, &format!("{gateway}/v1/auctions/{id}"))?;
    let close_index = detail
        .auction
        .close_index
        .ok_or_else(|| anyhow!("auction {id} has not closed yet"))?;
    let cp = checkpoint_covering(&http, gateway, &keys, close_index + 1)?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    let (Event::LeadAccepted(accepted), _) =
        included_entry(&http, gateway, detail.auction.open_index, size, &root)?
    else {
        bail!("entry {} is not a lead.accepted", detail.auction.open_index);
    };
    let (Event::AuctionClosed(close), _) =
        included_entry(&http, gateway, close_index, size, &root)?
    else {
        bail!("auction {id} did not sell (entry {close_index} is not an auction.closed)");
    };
    if accepted.lead_id != id || close.auction_id != id {
        bail!(
            "the gateway's entries {} and {close_index} are not auction {id}'s",
            detail.auction.open_index
        );
    }
    let s = close
        .settlement
        .ok_or_else(|| anyhow!("the close (entry {close_index}) carries no settlement: the gateway did not settle this sale on chain"))?;
    let price = close.price.units();
    let payout = accepted
        .auction
        .payout
        .ok_or_else(|| anyhow!("the lead.accepted names no payout address"))?;
    if s.seller != payout {
        bail!(
            "the settlement pays {}, not the seller's payout address {payout}",
            s.seller
        );
    }

    // The signer: the anchor key of the epoch in force at the close.
    let epochs: EpochList = get_typed(&http, &format!("{gateway}/v1/epochs"))?;
    let epoch_index = epochs
        .epochs
        .iter()
        .copied()
        .filter(|&i| i < close_index)
        .max()
        .ok_or_else(|| anyhow!("no log.epoch before entry {close_index}"))?;
    let (Event::LogEpoch(epoch), _) = included_entry(&http, gateway, epoch_index, size, &root)?
    else {
        bail!("entry {epoch_index} is not a log.epoch");
    };
    let epoch_keys = crate::audit::epoch_keys(&epoch)?;
    let anchor_key = address_of_sec1(&epoch_keys.anchor_key)
        .ok_or_else(|| anyhow!("bad anchor key in epoch {}", epoch.epoch))?;
    let signer = s
        .signer(id16, price)
        .map_err(|e| anyhow!("settlement signature: {e}"))?;
    if signer != anchor_key {
        bail!(
            "the settlement is signed by {}, not by epoch {}'s anchor key {}",
            EthAddress(signer),
            epoch.epoch,
            EthAddress(anchor_key)
        );
    }
    let fee = FeeTerms {
        fee_bps: s.fee_bps,
        fee_recipient: s.fee_recipient.0,
    }
    .fee_on(price);
    println!(
        "auction {id}: sold for {price} at entry {close_index} (checkpoint of {size}); the settlement pays {} from {} on escrow {} (chain {}), signed by epoch {}'s anchor key {}",
        s.seller, s.buyer, s.escrow, s.chain_id, epoch.epoch, EthAddress(anchor_key)
    );

    // The chain: the escrow signed for, paid once, for exactly these amounts.
    let mut rpc = Rpc::new(&http, a.rpc);
    rpc.pin()?;
    let chain_id = rpc.chain_id().context("eth_chainId")?;
    if chain_id != s.chain_id {
        bail!(
            "the RPC serves chain {chain_id}; the settlement is for chain {}",
            s.chain_id
        );
    }
    let escrow = Address::from(s.escrow.0);
    let terms = (
        rpc.eth_call(&escrow, &feeBpsCall {})?,
        rpc.eth_call(&escrow, &feeRecipientCall {})?,
    );
    if terms != (s.fee_bps, Address::from(s.fee_recipient.0)) {
        bail!(
            "escrow {} charges {} bps to {}, not the signed {} bps to {}",
            s.escrow,
            terms.0,
            terms.1,
            s.fee_bps,
            s.fee_recipient
        );
    }
    let mut topic = [0u8; 32];
    topic[..16].copy_from_slice(&id16);
    let paid = rpc.eth_call(
        &escrow,
        &settledCall {
            auctionId: id16.into(),
        },
    )?;
    let logs = rpc.logs(
        &escrow,
        &[Some(Settled::SIGNATURE_HASH), Some(B256::from(topic))],
    )?;
    if !paid || logs.is_empty() {
        bail!(
            "not paid on chain yet: anyone may submit it (LeadEscrow.settle with the close's auction id, buyer, seller, price and signature; `GET {gateway}/v1/settlements/{id}` shows the host's attempts)"
        );
    }
    if logs.len() != 1 {
        bail!(
            "escrow {} emitted {} Settled events for auction {id}",
            s.escrow,
            logs.len()
        );
    }
    let log = &logs[0];
    let e = Settled::decode_raw_log(log.topics.clone(), &log.data)
        .map_err(|e| anyhow!("Settled: {e}"))?;
    let expected = (
        Address::from(s.buyer.0),
        Address::from(s.seller.0),
        U256::from(price),
        U256::from(fee),
    );
    if (e.buyer, e.seller, e.price, e.fee) != expected {
        bail!(
            "the escrow's Settled event (buyer {}, seller {}, price {}, fee {}) is not the logged settlement",
            e.buyer, e.seller, e.price, e.fee
        );
    }
    println!(
        "auction {id}: paid on chain {chain_id} at block {} by transaction {}: {} credited {}, fee {} to {}",
        log.block_number,
        log.tx_hash,
        s.seller,
        price - fee,
        fee,
        s.fee_recipient
    );
    Ok(())
}
