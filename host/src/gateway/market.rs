//! Bids, auction closes and releases: the enclave exchanges of the market, each stored
//! before it is answered.

use leadgate_verifier::ErrorCode;

use leadgate_protocol::{
    BidOutcome, CloseInput, CloseOutcome, Request, Response, WireAppended, WireError,
    MAX_CLOSES_PER_TICK,
};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use serde_bytes::ByteBuf;

use std::sync::Arc;

use leadgate_protocol::MAX_BIDS;
use tokio::sync::{mpsc, oneshot};

use super::intake::{answer, drain_batch};
use super::{stored_answer, Gateway, LinkError};
use crate::error::ApiError;
use crate::storage::{StoreError, StoredBid};

impl Gateway {
    /// Sends sealed bids (with their JSON as received) to the enclave and stores every
    /// `bid.sealed` with its sealed bid before anyone is answered.
    ///
    /// # Errors
    /// [`LinkError`]s; a storage failure also drops the link.
    pub async fn place_bids(
        &self,
        bids: &[(SealedBid, String)],
    ) -> Result<Vec<BidOutcome>, LinkError> {
        // A retry of a stored bid (the same sealed bytes) gets its original answer.
        let commitments: Vec<Option<String>> = bids
            .iter()
            .map(|(b, _)| b.decode().ok().map(|d| hex::encode(d.commitment)))
            .collect();
        let originals = self.bid_originals(bids, &commitments).await?;
        let fresh: Vec<&(SealedBid, String)> = bids
            .iter()
            .zip(&originals)
            .filter(|(_, o)| o.is_none())
            .map(|(b, _)| b)
            .collect();
        let mut fresh_results = if fresh.is_empty() {
            Vec::new()
        } else {
            self.place_fresh_bids(&fresh).await?
        }
        .into_iter();
        let mut results: Vec<BidOutcome> = originals
            .into_iter()
            .map(|o| o.or_else(|| fresh_results.next()))
            .collect::<Option<_>>()
            .ok_or_else(|| LinkError::Protocol("bid answers do not match the bids".into()))?;
        // The enclave knows open auctions only: tell a bid on a closed one apart from a bid on
        // an auction that never was, from the auction table.
        for (i, r) in results.iter_mut().enumerate() {
            if let BidOutcome::Refused(e) = r {
                if e.code == ErrorCode::AuctionUnknown {
                    if let Some((status, _, _)) =
                        self.store.sale_entries(&bids[i].0.auction_id).await?
                    {
                        if status != "open" {
                            *e = WireError::new(ErrorCode::AuctionClosed, "the auction has closed");
                        }
                    }
                }
            }
        }
        // A retry that raced its original to the enclave is refused there as a replay; the
        // original is stored by now (batches are stored in order), so answer with it.
        let replayed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(
                |(_, r)| matches!(r, BidOutcome::Refused(e) if e.code == ErrorCode::BidReplayed),
            )
            .map(|(i, _)| i)
            .collect();
        if !replayed.is_empty() {
            let again: Vec<(SealedBid, String)> =
                replayed.iter().map(|&i| bids[i].clone()).collect();
            let again_c: Vec<Option<String>> =
                replayed.iter().map(|&i| commitments[i].clone()).collect();
            for (&i, o) in replayed
                .iter()
                .zip(self.bid_originals(&again, &again_c).await?)
            {
                if let Some(o) = o {
                    results[i] = o;
                }
            }
        }
        Ok(results)
    }

    /// The stored answer of each bid whose exact sealed bytes were stored, else `None`.
    async fn bid_originals(
        &self,
        bids: &[(SealedBid, String)],
        commitments: &[Option<String>],
    ) -> Result<Vec<Option<BidOutcome>>, LinkError> {
        let keys: Vec<&str> = commitments.iter().flatten().map(String::as_str).collect();
        let stored = self.store.bid_answers(&keys).await?;
        Ok(bids
            .iter()
            .zip(commitments)
            .map(|((bid, _), c)| {
                let c = c.as_deref()?;
                let (json, index, receipt) = stored.get(c)?;
                let original: SealedBid = serde_json::from_str(json).ok()?;
                let commitment = ByteBuf::from(hex::decode(c).ok()?);
                (original == *bid).then(|| BidOutcome::Logged {
                    auction_id: bid.auction_id.clone(),
                    commitment,
                    appended: stored_answer(*index, receipt.clone()),
                })
            })
            .collect())
    }

    async fn place_fresh_bids(
        &self,
        bids: &[&(SealedBid, String)],
    ) -> Result<Vec<BidOutcome>, LinkError> {
        let req = Request::Bid {
            bids: bids.iter().map(|(b, _)| b.clone()).collect(),
        };
        let (mut link, resp) = self.exchange_appending(&req).await?;
        let results = match resp {
            Response::Bids { results } if results.len() == bids.len() => results,
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut appends = Vec::new();
        let mut stored = Vec::new();
        let hexes: Vec<String> = results
            .iter()
            .map(|r| match r {
                BidOutcome::Logged { commitment, .. } => hex::encode(commitment),
                BidOutcome::Refused(_) => String::new(),
            })
            .collect();
        for ((r, (bid, json)), commitment) in results.iter().zip(bids.iter().copied()).zip(&hexes) {
            if let BidOutcome::Logged { appended, .. } = r {
                appends.push(appended);
                stored.push(StoredBid {
                    index: appended.index,
                    auction_id: &bid.auction_id,
                    buyer: &bid.buyer,
                    commitment,
                    sealed_json: json,
                });
            }
        }
        if let Err(e) = self.store.store_bids(&appends, &stored).await {
            link.conn = None;
            return Err(e.into());
        }
        if let Some(last) = appends.last() {
            self.stored_to(last.index + 1);
        }
        Ok(results)
    }

    /// Asks the enclave which auctions are due by its clock, hands it each one's stored
    /// entries to close it, and stores the closes. Returns how many closed.
    ///
    /// # Errors
    /// [`LinkError`]s; a storage failure also drops the link.
    pub async fn tick(&self) -> Result<usize, LinkError> {
        let mut total = 0;
        loop {
            // Through the flush barrier: every bid of a due auction was appended before its
            // close time, so before this tick, and is stored once every sent batch is.
            let (link, resp) = self.exchange_appending(&Request::Tick).await?;
            drop(link);
            let due = match resp {
                Response::Due { auctions } => auctions,
                Response::Error(e) => return Err(LinkError::Enclave(e)),
                other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
            };
            if due.is_empty() {
                break;
            }
            let inputs = self.store.close_inputs(&due).await?;
            let mut closed = 0;
            for chunk in leadgate_protocol::pack_close_inputs(inputs) {
                closed += self.close(chunk).await?;
            }
            total += closed;
            if due.len() < MAX_CLOSES_PER_TICK || closed == 0 {
                break;
            }
        }
        if total > 0 {
            tracing::info!(closed = total, "auctions closed");
        }
        Ok(total)
    }

    /// One `Close` exchange; stores the closes. Returns how many closed.
    async fn close(&self, auctions: Vec<CloseInput>) -> Result<usize, LinkError> {
        let n = auctions.len();
        let (mut link, resp) = self
            .exchange_appending(&Request::Close { auctions })
            .await?;
        let results = match resp {
            Response::Closed { results } if results.len() == n => results,
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut appends = Vec::new();
        for r in &results {
            match r {
                CloseOutcome::Logged(a) => appends.push(a),
                CloseOutcome::Refused(e) => {
                    tracing::error!(code = %e.code, error = %e.message, "the enclave refused a close");
                }
            }
        }
        if let Err(e) = self.store.store_closes(&appends).await {
            link.conn = None;
            return Err(e.into());
        }
        if let Some(last) = appends.last() {
            self.stored_to(last.index + 1);
            if let Some(s) = self.settler.get() {
                s.wake();
            }
        }
        Ok(appends.len())
    }

    /// Forwards a buyer's release request with the stored sealed lead and the sale proven
    /// from the stored log (its `lead.accepted` and `auction.closed` with inclusion proofs in
    /// the tree of the last stored receipt); stores the `lead.released` append and the
    /// envelope before answering. The gateway answers `lead.unknown`, `auction.unknown` (a
    /// rejected lead), `release.not_closed` and `release.not_sold` itself from its tables (it
    /// could always refuse service).
    ///
    /// # Errors
    /// The gateway's or the enclave's refusal (`lead.unknown`, `auction.unknown`,
    /// `release.*`), [`LinkError`]s.
    pub async fn release(
        &self,
        request: ReleaseRequest,
    ) -> Result<(ReleasedLead, WireAppended), LinkError> {
        let refuse = |code, m: &str| Err(LinkError::Enclave(WireError::new(code, m)));
        let Some(sealed) = self.store.sealed_lead(&request.lead_id).await? else {
            // Never logged: `lead.unknown`. Logged but rejected at intake: it never had an
            // auction, as `GET /v1/auctions/{id}` says too.
            return match self.store.lead(&request.lead_id).await? {
                None => refuse(ErrorCode::LeadUnknown, "no lead with this id"),
                Some(_) => refuse(
                    ErrorCode::AuctionUnknown,
                    "the lead was rejected at intake; it has no auction",
                ),
            };
        };
        let sale = match self.store.sale_entries(&request.lead_id).await? {
            Some((status, _, _)) if status == "open" => {
                return refuse(
                    ErrorCode::ReleaseNotClosed,
                    "the auction has not closed yet",
                )
            }
            Some((status, open_idx, Some(close_idx))) if status == "sold" => (open_idx, close_idx),
            _ => return refuse(ErrorCode::ReleaseNotSold, "the lead was not sold"),
        };
        let lead = serde_json::from_str(&sealed)
            .map_err(|e| LinkError::Store(StoreError::Inconsistent(e.to_string())))?;
        let (lead_id, buyer) = (request.lead_id.clone(), request.buyer.clone());
        // Against the newest stored receipt: of the enclave's current epoch, since every boot
        // stores its `log.epoch` before the link is up. After a restart in between, the
        // enclave refuses it (`release.proof_invalid`) and the buyer asks again.
        let proof = self.sale_proof(sale.0, sale.1).await?;
        let (mut link, resp) = self
            .exchange_appending(&Request::Release {
                request,
                lead,
                proof,
            })
            .await?;
        let (released, appended) = match resp {
            Response::Released { released, appended } => (released, appended),
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let json =
            serde_json::to_string(&released).map_err(|e| LinkError::Protocol(e.to_string()))?;
        if let Err(e) = self
            .store
            .store_release(&appended, &lead_id, &buyer, &json)
            .await
        {
            link.conn = None;
            return Err(e.into());
        }
        self.stored_to(appended.index + 1);
        Ok((released, appended))
    }

    /// The [`leadgate_protocol::SaleProof`] of the sale whose `lead.accepted` is leaf
    /// `open_idx` and `auction.closed` leaf `close_idx`, in the tree of the last stored receipt.
    async fn sale_proof(
        &self,
        open_idx: u64,
        close_idx: u64,
    ) -> Result<leadgate_protocol::SaleProof, LinkError> {
        let inconsistent = |m: String| LinkError::Store(StoreError::Inconsistent(m));
        let receipt = self
            .store
            .last_receipt()
            .await?
            .ok_or_else(|| inconsistent("no receipt".into()))?;
        let leaf = |i: u64| async move {
            self.store
                .leaf(i)
                .await?
                .ok_or_else(|| LinkError::Store(StoreError::Inconsistent(format!("no leaf {i}"))))
        };
        let (accepted, closed) = (leaf(open_idx).await?, leaf(close_idx).await?);
        self.store
            .with_nodes(|st| {
                leadgate_protocol::boot::sale_proof(
                    receipt.clone(),
                    st,
                    (open_idx, accepted.clone()),
                    (close_idx, closed.clone()),
                )
            })
            .await?
            .map_err(|e| inconsistent(e.to_string()))
    }
}

/// A sealed bid (and its JSON as stored) with its reply channel.
pub type QueuedBid = (
    SealedBid,
    String,
    oneshot::Sender<Result<BidOutcome, ApiError>>,
);

/// Batches queued bids: one enclave exchange and one transaction per batch of up to
/// [`MAX_BIDS`].
pub async fn run_bids(
    gateway: Arc<Gateway>,
    mut rx: mpsc::Receiver<QueuedBid>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let (bids, replies): (Vec<_>, Vec<_>) = drain_batch(&mut rx, first, MAX_BIDS)
            .into_iter()
            .map(|(b, j, r)| ((b, j), r))
            .unzip();
        metrics.bid_batch.observe(bids.len() as f64);
        answer(replies, gateway.place_bids(&bids).await);
    }
}
