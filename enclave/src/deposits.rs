//! What each buyer has committed against its escrow deposit, so that the enclave accepts a
//! bid only if the deposit covers it together with the buyer's other commitments
//! (`docs/settlement.md` §6):
//!
//! ```text
//! available = balance − requested − Σ open bids − Σ unpaid wins
//! ```
//!
//! `balance` and `requested` are `LeadEscrow.accountOf(buyer)` as read from the chain
//! ([`crate::chain::EscrowChain::deposits`]), reused for at most `max_age_ms`; *open bids*
//! are the amounts of the buyer's bids this process logged in auctions still open; *unpaid
//! wins* are the prices of auctions the buyer won whose `settled(auctionId)` the last read did
//! not show (a paid one is in `balance` already, so each read drops the paid ones, reading
//! the balance and the flags at one block).
//!
//! Memory is bounded: at most `max_accounts` buyers (an account with nothing committed is
//! only a cached read, dropped first when the book is full; ~100 bytes each) and at most
//! `max_unpaid` unpaid wins in all (32 bytes each). Open bids cost nothing per bid: a sum and
//! a count per buyer. An unpaid win stops counting `unpaid_ttl_ms` after its close (the
//! settlement window): the escrow's withdrawal delay is chosen longer than an auction plus
//! that window, so past it the deposit check no longer protects that payment anyway.
//!
//! Across a restart nothing is forgotten (`docs/settlement.md` §6): the unpaid wins are in
//! the sealed state ([`crate::state`]) and the replay adds the sales logged after it; the
//! open bids are counted again from the bids the host must give back for every open auction
//! (`LoadBids`, checked against the log) before the enclave starts.

use std::collections::HashMap;

use crate::chain::DepositRead;

/// A buyer's deposit address, 20 bytes.
pub type Account = [u8; 20];
/// An auction id (the lead id), 16 bytes.
pub type AuctionId = [u8; 16];

/// Default most buyers tracked.
pub const DEFAULT_MAX_ACCOUNTS: usize = 65_536;
/// Default most unpaid wins tracked, all buyers together.
pub const DEFAULT_MAX_UNPAID: usize = 262_144;
/// Default longest a chain read is reused, ms.
pub const DEFAULT_MAX_AGE_MS: u64 = 2_000;

/// Why a bid is refused for its deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DepositRefusal {
    /// The deposit, less what is committed, does not cover the amount. `bid.over_deposit`.
    #[error("the deposit covers {available} token units after the pending withdrawal, open bids and unpaid wins; the bid is {amount}")]
    OverDeposit {
        /// The bid, token units.
        amount: u64,
        /// What the deposit still covers, token units.
        available: u128,
    },
    /// The book tracks the most buyers it holds, all with commitments. `enclave.deposit_book_full`.
    #[error("the enclave tracks {0} buyers with open bids or unpaid wins, its bound; retry later")]
    Full(usize),
}

#[derive(Debug, Clone, Copy)]
struct Read {
    balance: u128,
    requested: u128,
    at_ms: u64,
}

/// An unpaid win: auction, price (token units), close time (Unix ms).
type Unpaid = (AuctionId, u64, u64);

/// An unpaid win with its buyer, as the sealed state keeps it: account, auction, price
/// (token units), close time (Unix ms).
pub type UnpaidWin = (Account, AuctionId, u64, u64);

#[derive(Debug, Default)]
struct Entry {
    open: u128,
    open_bids: u64,
    unpaid: Vec<Unpaid>,
    read: Option<Read>,
}

impl Entry {
    fn idle(&self) -> bool {
        self.open_bids == 0 && self.unpaid.is_empty()
    }
}

/// The deposit book. See the module documentation.
#[derive(Debug)]
pub struct Deposits {
    accounts: HashMap<Account, Entry>,
    unpaid: usize,
    max_accounts: usize,
    max_unpaid: usize,
    max_age_ms: u64,
    unpaid_ttl_ms: u64,
}

impl Deposits {
    /// An empty book: at most `max_accounts` buyers and `max_unpaid` unpaid wins (each at
    /// least 1), reads reused for `max_age_ms`, unpaid wins counted for `unpaid_ttl_ms`
    /// after their close.
    pub fn new(
        max_accounts: usize,
        max_unpaid: usize,
        max_age_ms: u64,
        unpaid_ttl_ms: u64,
    ) -> Self {
        Self {
            accounts: HashMap::new(),
            unpaid: 0,
            max_accounts: max_accounts.max(1),
            max_unpaid: max_unpaid.max(1),
            max_age_ms,
            unpaid_ttl_ms,
        }
    }

    /// Unpaid wins tracked.
    pub fn unpaid(&self) -> usize {
        self.unpaid
    }

    /// Buyers tracked.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether no buyer is tracked.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The auctions to ask `settled` about if `account` needs a chain read at `now_ms` (none
    /// yet, or older than the maximum age); `None` if its read is fresh.
    pub fn stale(&self, account: &Account, now_ms: u64) -> Option<Vec<AuctionId>> {
        match self.accounts.get(account) {
            Some(e)
                if e.read
                    .is_some_and(|r| now_ms.saturating_sub(r.at_ms) < self.max_age_ms) =>
            {
                None
            }
            Some(e) => Some(e.unpaid.iter().map(|(id, _, _)| *id).collect()),
            None => Some(Vec::new()),
        }
    }

    /// Takes a chain read of `account` made at `now_ms` for the auctions `asked` (as
    /// [`Deposits::stale`] returned them): keeps balance and request, drops the wins it
    /// shows paid.
    ///
    /// # Errors
    /// [`DepositRefusal::Full`] when the account is new and every tracked one has commitments.
    pub fn apply(
        &mut self,
        account: Account,
        asked: &[AuctionId],
        read: &DepositRead,
        now_ms: u64,
    ) -> Result<(), DepositRefusal> {
        self.make_room(&account)?;
        let ttl = self.unpaid_ttl_ms;
        let e = self.accounts.entry(account).or_default();
        let before = e.unpaid.len();
        for (id, paid) in asked.iter().zip(&read.settled) {
            if *paid {
                e.unpaid.retain(|(u, _, _)| u != id);
            }
        }
        e.unpaid
            .retain(|(_, _, closed)| closed.saturating_add(ttl) > now_ms);
        self.unpaid -= before - e.unpaid.len();
        e.read = Some(Read {
            balance: read.balance,
            requested: read.requested,
            at_ms: now_ms,
        });
        Ok(())
    }

    fn make_room(&mut self, account: &Account) -> Result<(), DepositRefusal> {
        if self.accounts.contains_key(account) || self.accounts.len() < self.max_accounts {
            return Ok(());
        }
        self.accounts.retain(|_, e| !e.idle());
        if self.accounts.len() < self.max_accounts {
            Ok(())
        } else {
            Err(DepositRefusal::Full(self.max_accounts))
        }
    }

    /// What `account`'s deposit still covers, token units; `None` without a read.
    pub fn available(&self, account: &Account) -> Option<u128> {
        let e = self.accounts.get(account)?;
        let r = e.read?;
        let unpaid: u128 = e.unpaid.iter().map(|(_, p, _)| u128::from(*p)).sum();
        Some(
            r.balance
                .saturating_sub(r.requested)
                .saturating_sub(e.open)
                .saturating_sub(unpaid),
        )
    }

    /// Commits `amount` of `account`'s deposit to a bid about to be logged.
    ///
    /// # Errors
    /// [`DepositRefusal::OverDeposit`], also without a read: nothing is known to cover it.
    pub fn commit(&mut self, account: &Account, amount: u64) -> Result<(), DepositRefusal> {
        let available = self.available(account).unwrap_or(0);
        let e = self
            .accounts
            .get_mut(account)
            .filter(|_| u128::from(amount) <= available)
            .ok_or(DepositRefusal::OverDeposit { amount, available })?;
        e.open += u128::from(amount);
        e.open_bids += 1;
        Ok(())
    }

    /// Counts a bid logged before this process started (given back at boot, `LoadBids`)
    /// against `account`'s deposit, with no check: it was checked when it was logged.
    ///
    /// # Errors
    /// [`DepositRefusal::Full`] when the account is new and every tracked one has commitments.
    pub fn count_logged(&mut self, account: &Account, amount: u64) -> Result<(), DepositRefusal> {
        self.make_room(account)?;
        let e = self.accounts.entry(*account).or_default();
        e.open += u128::from(amount);
        e.open_bids += 1;
        Ok(())
    }

    /// The unpaid wins tracked: account, auction, price (token units), close time (Unix ms),
    /// in no particular order.
    pub fn unpaid_wins(&self) -> Vec<UnpaidWin> {
        self.accounts
            .iter()
            .flat_map(|(account, e)| {
                e.unpaid
                    .iter()
                    .map(move |(id, price, closed)| (*account, *id, *price, *closed))
            })
            .collect()
    }

    /// Frees a bid committed with [`Deposits::commit`]: its auction closed, or its append
    /// failed.
    pub fn uncommit(&mut self, account: &Account, amount: u64) {
        if let Some(e) = self.accounts.get_mut(account) {
            e.open = e.open.saturating_sub(u128::from(amount));
            e.open_bids = e.open_bids.saturating_sub(1);
        }
    }

    /// `account` won auction `id` for `price` token units at `now_ms`: counted until a read
    /// shows it paid, or for the settlement window. A win the full book cannot take (after
    /// dropping expired ones) is not counted, with a warning: the lead is still released only
    /// once paid.
    pub fn won(&mut self, account: Account, id: AuctionId, price: u64, now_ms: u64) {
        if self.unpaid >= self.max_unpaid {
            let ttl = self.unpaid_ttl_ms;
            for e in self.accounts.values_mut() {
                e.unpaid
                    .retain(|(_, _, closed)| closed.saturating_add(ttl) > now_ms);
            }
            self.unpaid = self.accounts.values().map(|e| e.unpaid.len()).sum();
        }
        if self.unpaid >= self.max_unpaid || self.make_room(&account).is_err() {
            tracing::warn!("deposit book full: an unpaid win is not counted");
            return;
        }
        self.accounts
            .entry(account)
            .or_default()
            .unpaid
            .push((id, price, now_ms));
        self.unpaid += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Account = [0xa; 20];
    const B: Account = [0xb; 20];

    fn read(balance: u128, requested: u128, settled: Vec<bool>) -> DepositRead {
        DepositRead {
            block: 1,
            balance,
            requested,
            settled,
        }
    }

    #[test]
    fn bids_count_against_the_deposit_until_their_auction_closes() {
        let mut d = Deposits::new(16, 8, 2_000, 60_000);
        // Nothing read: nothing covers a bid.
        assert_eq!(
            d.commit(&A, 1),
            Err(DepositRefusal::OverDeposit {
                amount: 1,
                available: 0
            })
        );
        assert_eq!(d.stale(&A, 0), Some(vec![]));
        d.apply(A, &[], &read(100, 30, vec![]), 0).unwrap();
        assert_eq!(d.stale(&A, 1_999), None);
        assert_eq!(d.stale(&A, 2_000), Some(vec![]));
        assert_eq!(d.available(&A), Some(70));
        d.commit(&A, 50).unwrap();
        assert_eq!(
            d.commit(&A, 21),
            Err(DepositRefusal::OverDeposit {
                amount: 21,
                available: 20
            })
        );
        d.commit(&A, 20).unwrap();
        assert_eq!(d.available(&A), Some(0));
        // The 50 closes and loses, the 20 wins at a price of 15.
        d.uncommit(&A, 50);
        d.uncommit(&A, 20);
        d.won(A, [1; 16], 15, 1_000);
        assert_eq!((d.available(&A), d.unpaid()), (Some(55), 1));
        // A read asks about the unpaid win; one at a block where it is paid drops it (the
        // balance read at the same block has the price taken out).
        assert_eq!(d.stale(&A, 5_000), Some(vec![[1; 16]]));
        d.apply(A, &[[1; 16]], &read(100, 30, vec![false]), 5_000)
            .unwrap();
        assert_eq!(d.available(&A), Some(55));
        d.apply(A, &[[1; 16]], &read(85, 30, vec![true]), 9_000)
            .unwrap();
        assert_eq!((d.available(&A), d.unpaid()), (Some(55), 0));
        assert_eq!(d.stale(&A, 20_000), Some(vec![]));
        // An unpaid win counts for the settlement window after its close, then no more.
        d.won(A, [2; 16], 40, 10_000);
        d.apply(A, &[[2; 16]], &read(85, 30, vec![false]), 69_999)
            .unwrap();
        assert_eq!(d.available(&A), Some(15));
        d.apply(A, &[[2; 16]], &read(85, 30, vec![false]), 70_000)
            .unwrap();
        assert_eq!((d.available(&A), d.unpaid()), (Some(55), 0));
    }

    #[test]
    fn the_book_is_bounded() {
        let mut d = Deposits::new(1, 2, 2_000, 60_000);
        d.apply(A, &[], &read(100, 0, vec![]), 0).unwrap();
        // A holds nothing: its cached read makes room for B.
        d.apply(B, &[], &read(100, 0, vec![]), 0).unwrap();
        assert_eq!(d.len(), 1);
        d.commit(&B, 1).unwrap();
        assert_eq!(
            d.apply(A, &[], &read(100, 0, vec![]), 0),
            Err(DepositRefusal::Full(1))
        );
        // A win past the book's room is not tracked.
        d.won(A, [2; 16], 5, 0);
        assert_eq!(d.len(), 1);
        // At most 2 unpaid wins in all; an expired one makes room.
        d.won(B, [3; 16], 5, 0);
        d.won(B, [4; 16], 5, 10);
        d.won(B, [5; 16], 5, 20);
        assert_eq!((d.unpaid(), d.available(&B)), (2, Some(89)));
        d.won(B, [6; 16], 5, 60_000);
        assert_eq!((d.unpaid(), d.available(&B)), (2, Some(89)));
        // Uncommitting an account never tracked changes nothing.
        d.uncommit(&A, 10);
        assert_eq!(d.available(&B), Some(89));
    }
}
