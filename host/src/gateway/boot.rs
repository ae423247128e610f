//! Connecting to the enclave and bringing it up: boot from the stored tip (secrets, the
//! restore of its state from the newest sealed state and the leaves after it), or reconnect
//! to a running enclave and catch up on the
//! tail it journaled; the link task that keeps this going.

use leadgate_verifier::ErrorCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use leadgate_protocol::boot::{self, BootError};
use leadgate_protocol::{Request, Response, Status, Tip, MAX_RESTORE_ENTRIES};
use leadgate_verifier::keys::EnclaveKeys;
use serde_bytes::ByteBuf;

use super::{expect_ok, EnclaveInfo, Gateway, LinkError};
use crate::link::EnclaveConn;
use crate::storage::StoreError;

/// A stored log that cannot be booted from: a fault of the store, never of the enclave.
fn boot_error(e: BootError) -> LinkError {
    LinkError::Store(StoreError::Inconsistent(e.to_string()))
}

/// The oldest index a `journal.gap` message says the journal holds ("journal holds
/// entries F..E; asked from X"), for the operator's message.
fn journal_first(message: &str) -> Option<u64> {
    let held = message.strip_prefix("journal holds entries ")?;
    held.split("..").next()?.parse().ok()
}

/// How often an idle link is checked with a `Status` call.
const HEARTBEAT: Duration = Duration::from_millis(250);

impl Gateway {
    /// Keeps the link up: connects, boots or catches up whenever it is down, retrying with
    /// backoff (200 ms, then 400 ms, then every 500 ms). Runs forever.
    pub async fn maintain(self: std::sync::Arc<Self>) {
        let mut last_beat = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut guard = self.link().await;
            if guard.conn.is_none() {
                self.up.store(false, Ordering::Release);
                // Boot reads the tip from the store: everything sent must be in it.
                self.flush(&guard).await;
                match leadgate_protocol::transport::connect(&self.addr).await {
                    Ok(stream) => {
                        let mut conn = EnclaveConn::new(stream);
                        match self.boot(&mut conn).await {
                            Ok(info) => {
                                tracing::info!(origin = %info.keys.origin, "enclave link up");
                                *self.info.write().await = Some(info);
                                guard.conn = Some(conn);
                                guard.confirmed = 0;
                                guard.epoch += 1;
                                self.confirm_durable(&mut guard, true).await;
                                *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
                                self.up.store(true, Ordering::Release);
                                backoff = Duration::from_millis(200);
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "enclave boot or catch-up failed");
                                self.degraded(format!("enclave boot or catch-up failed: {e}"));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "enclave not reachable");
                        self.degraded(format!("enclave not reachable: {e}"));
                    }
                }
            }
            let down = guard.conn.is_none();
            drop(guard);
            tokio::time::sleep(if down {
                backoff
            } else {
                Duration::from_millis(200)
            })
            .await;
            if down {
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            // Heartbeat: a dead enclave is noticed within a quarter second even when idle, so
            // `/healthz` tells the truth and the restart's boot begins promptly (measured by
            // `scripts/restart-bench`); it also keeps the enclave's session alive and confirms
            // what is stored.
            if last_beat.elapsed() >= HEARTBEAT {
                last_beat = tokio::time::Instant::now();
                if self.connected().await {
                    if let Err(LinkError::Unavailable) = self.call(&Request::Status).await {
                        tracing::warn!("enclave link lost");
                        self.up.store(false, Ordering::Release);
                        self.degraded("enclave link lost; reconnecting");
                        continue;
                    }
                }
            }
        }
    }

    async fn tip(&self) -> Result<Option<Tip>, LinkError> {
        let Some(receipt) = self.store.last_receipt().await? else {
            return Ok(None);
        };
        let checkpoint = self.store.latest_checkpoint().await?;
        let tip = self
            .store
            .with_nodes(|st| boot::tip(receipt.clone(), st, checkpoint.clone()))
            .await?
            .map_err(boot_error)?;
        Ok(Some(tip))
    }

    /// The start-up sequence (see `leadgate_enclave::protocol`). An enclave that is already
    /// running (host restarted, link dropped) is caught up ([`Gateway::reconcile`]), or reset
    /// and booted again from the stored tip.
    async fn boot(&self, conn: &mut EnclaveConn) -> Result<EnclaveInfo, LinkError> {
        self.boot_once(conn, true).await
    }

    /// [`Gateway::boot`]; `reconcile` is false after a reset, when the enclave must boot.
    async fn boot_once(
        &self,
        conn: &mut EnclaveConn,
        reconcile: bool,
    ) -> Result<EnclaveInfo, LinkError> {
        if let Some(bucket) = self.repair_from.get() {
            let pinned = match self.info().await {
                Some(info) => info.keys.note_verifier().ok(),
                None => None,
            };
            let repaired = crate::tiles::repair::repair(&self.store, bucket, pinned.as_ref())
                .await
                .map_err(|e| repair_failed("repairing the store from the bucket", e))?;
            if repaired.to > repaired.from {
                tracing::warn!(
                    from = repaired.from,
                    to = repaired.to,
                    "the store was behind the bucket; repaired"
                );
            }
            crate::tiles::scrub::repair_tail(&self.store, bucket, pinned.as_ref())
                .await
                .map_err(|e| repair_failed("mending the stored tail from the bucket", e))?;
        }
        self.stored_to(self.store.size().await?);
        let sealed = self.store.sealed_secrets().await?;
        let tip = self.tip().await?;
        let aws_credentials = match self.aws_credentials.get() {
            Some(source) => Some(source.resolve().await?),
            None => None,
        };
        let resp = conn
            .call(&Request::Boot {
                sealed_secrets: sealed.clone().map(ByteBuf::from),
                tip,
                aws_credentials,
            })
            .await?;
        let keys = match resp {
            Response::Booted {
                sealed_secrets,
                keys,
                settling,
                ..
            } => {
                if sealed.as_deref() != Some(sealed_secrets.as_slice()) {
                    self.store.put_sealed_secrets(&sealed_secrets).await?;
                }
                self.restore(conn).await?;
                // The active rule sets, which the enclave logs only as commitments.
                let sets = self.store.active_rule_sets().await?;
                for chunk in sets.chunks(leadgate_protocol::MAX_RULE_SETS_PER_LOAD) {
                    expect_ok(
                        conn.call(&Request::LoadRules {
                            sets: chunk.to_vec(),
                        })
                        .await?,
                    )?;
                }
                if settling {
                    self.load_bids(conn).await?;
                }
                match conn.call(&Request::Start).await? {
                    Response::Started { appended } => {
                        self.store
                            .store_appends(&[&appended], &[], &[], crate::clock::now_ms())
                            .await?;
                        self.stored_to(appended.index + 1);
                    }
                    Response::Error(e) => return Err(LinkError::Enclave(e)),
                    other => return Err(LinkError::Protocol(format!("{other:?}"))),
                }
                keys
            }
            Response::Error(e) if e.code == ErrorCode::BootAlreadyBooted && reconcile => {
                match self.reconcile(conn).await? {
                    Some(keys) => keys,
                    None => {
                        // Another log, not started, or the tail is gone: boot afresh from our
                        // tip (a new epoch), as after an enclave restart.
                        expect_ok(conn.call(&Request::Reset).await?)?;
                        return Box::pin(self.boot_once(conn, false)).await;
                    }
                }
            }
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let keys = EnclaveKeys::from_attested(Some(&keys), None)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        Ok(EnclaveInfo { keys })
    }

    /// Gives a settling enclave the stored bids of every open auction (`LoadBids`), packed as
    /// a close packs them, so it counts them against deposits again.
    async fn load_bids(&self, conn: &mut EnclaveConn) -> Result<(), LinkError> {
        let ids = self.store.open_auctions_with_bids().await?;
        let mut loaded = 0;
        for ids in ids.chunks(leadgate_protocol::MAX_CLOSES_PER_TICK) {
            let inputs = self.store.close_inputs(ids).await?;
            for chunk in leadgate_protocol::pack_close_inputs(inputs) {
                loaded += chunk.len();
                expect_ok(conn.call(&Request::LoadBids { auctions: chunk }).await?)?;
            }
        }
        if loaded > 0 {
            tracing::info!(
                auctions = loaded,
                "open auctions' bids given back to the enclave"
            );
        }
        Ok(())
    }

    /// A running enclave met on (re)connect: returns its keys once the store holds exactly its
    /// log (after catching up on a tail the store lacks), or `None` when it may be reset: it
    /// has not finished start-up, is behind the store, or has another root at the store's
    /// size (the enclave itself refuses a reset that would drop unconfirmed entries, and a
    /// boot behind or beside what it signed). A store behind the enclave whose missing entries
    /// the enclave no longer holds is [`LinkError::Behind`]: never reset over (that would
    /// fork the log), retried until the entries are back.
    async fn reconcile(&self, conn: &mut EnclaveConn) -> Result<Option<ByteBuf>, LinkError> {
        let status = match conn.call(&Request::Status).await? {
            Response::Status(status) => status,
            Response::Error(e) if e.code == ErrorCode::EnclaveNotReady => {
                tracing::warn!("the running enclave never finished start-up; resetting it");
                return Ok(None);
            }
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let size = self.store.size().await?;
        let ours = self.store.sealed_secrets().await?.is_some();
        if !ours && status.size > 0 {
            return Err(LinkError::Behind(format!(
                "the store is empty but the running enclave holds a log of {} entries: \
                 restore the store (the host repairs it from the bucket by itself when --bucket is set); the log is never forked around it",
                status.size
            )));
        }
        if status.size < size {
            tracing::warn!(
                enclave = status.size,
                store = size,
                "the running enclave is behind the store; resetting it"
            );
            return Ok(None);
        }
        if status.size > size {
            self.degraded(format!(
                "catching up: enclave has {} entries, store has {size}",
                status.size
            ));
            if let Some(held_from) = self.catch_up(conn, &status, size).await? {
                return Err(LinkError::Behind(format!(
                    "the store has {size} entries and the running enclave {}: entries \
                     {size}..{held_from} are in neither the store nor the enclave's journal \
                     (which holds {held_from}..{}); restore them (the host repairs from the \
                     bucket by itself when --bucket is set); the log is never forked around them",
                    status.size, status.size
                )));
            }
        } else if status.root.as_slice() != self.store.frontier(size).await?.root() {
            tracing::warn!(
                size,
                "the running enclave's root differs from the store's; resetting it"
            );
            return Ok(None);
        }
        Ok(Some(status.keys))
    }

    /// Fetches entries `size ..` from the enclave's journal, checks them (each receipt signed
    /// by the log key, for the next index, over the leaf's hash and the root the stored tree
    /// grows to; the last root equal to the enclave's) and stores them, chunk by chunk.
    /// `Some(first held index)` if the enclave no longer holds entry `size` (`journal.gap`).
    async fn catch_up(
        &self,
        conn: &mut EnclaveConn,
        status: &Status,
        size: u64,
    ) -> Result<Option<u64>, LinkError> {
        let keys = EnclaveKeys::from_attested(Some(&status.keys), None)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        let mut frontier = self.store.frontier(size).await?;
        let bad = |m: String| LinkError::Protocol(format!("journal: {m}"));
        while frontier.size() < status.size {
            let from = frontier.size();
            let entries = match conn.call(&Request::Journal { from }).await? {
                Response::Journal { entries } if !entries.is_empty() => entries,
                Response::Journal { .. } => {
                    return Err(bad("ended before the enclave's size".into()))
                }
                Response::Error(e) if e.code == ErrorCode::JournalGap => {
                    tracing::warn!(from, error = %e.message, "the enclave no longer holds the tail");
                    return Ok(Some(journal_first(&e.message).unwrap_or(status.size)));
                }
                Response::Error(e) => return Err(LinkError::Enclave(e)),
                other => return Err(LinkError::Protocol(format!("{other:?}"))),
            };
            let batch = crate::tiles::repair::check_entries(
                &mut frontier,
                entries,
                &keys.log_key,
                &keys.origin,
            )
            .map_err(bad)?;
            self.store
                .store_journal(&batch, crate::clock::now_ms())
                .await?;
            self.stored_to(frontier.size());
            tracing::info!(
                from,
                to = frontier.size(),
                "caught up from the enclave's journal"
            );
        }
        if frontier.root().as_slice() != status.root.as_slice() {
            return Err(bad("caught-up root differs from the enclave's".into()));
        }
        Ok(None)
    }

    /// Restores the enclave's state: loads the newest sealed state the store holds (if the
    /// enclave refuses it, none), then replays the leaves from its size (or from leaf 0) to
    /// the tip. The enclave checks the result against the tip (see `leadgate_enclave::restore`).
    async fn restore(&self, conn: &mut EnclaveConn) -> Result<(), LinkError> {
        let size = self.store.size().await?;
        if size == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut from = 0;
        if let Some(parts) = self.store.latest_state(size).await? {
            let state_size = parts.first().map_or(0, |p| p.size);
            let mut loaded = true;
            for part in parts {
                match conn.call(&Request::LoadState { part }).await? {
                    Response::Ok => {}
                    Response::Error(e) if e.code == ErrorCode::BootStateInvalid => {
                        tracing::warn!(
                            size = state_size,
                            error = %e.message,
                            "the enclave refused the stored state; restoring from leaf 0"
                        );
                        loaded = false;
                        break;
                    }
                    Response::Error(e) => return Err(LinkError::Enclave(e)),
                    other => return Err(LinkError::Protocol(format!("{other:?}"))),
                }
            }
            if loaded {
                from = state_size;
            }
        }
        let mut restore = boot::Restore::new(from);
        while restore.at() < size {
            let leaves = self
                .store
                .leaves(restore.at(), MAX_RESTORE_ENTRIES as u64)
                .await?;
            if leaves.is_empty() {
                break;
            }
            let leaves = leaves.into_iter().map(ByteBuf::from).collect();
            expect_ok(conn.call(&restore.next_request(leaves)).await?)?;
        }
        tracing::info!(
            state = from,
            replayed = size - from,
            ms = started.elapsed().as_millis() as u64,
            "enclave state restored"
        );
        Ok(())
    }
}

/// Names a failed repair for what it is: a database failure stays a storage failure (it heals
/// with the database, and is not damage); an unreadable bucket, or damage the bucket cannot
/// mend, leaves the store behind what the enclave may have signed.
fn repair_failed(doing: &str, e: crate::tiles::repair::RepairError) -> LinkError {
    use crate::tiles::repair::RepairError;
    match e {
        RepairError::Store(e) => LinkError::Store(e),
        RepairError::Bucket(e) => LinkError::Behind(format!("{doing}: the bucket: {e}")),
        RepairError::Invalid(_) | RepairError::Fork(_) => {
            LinkError::Behind(format!("{doing}: the store is damaged past mending: {e}"))
        }
    }
}
