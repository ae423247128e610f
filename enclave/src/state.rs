//! The enclave's sealed state: what a restart needs besides the log, so that it replays only
//! the leaves since the last seal instead of the whole history.
//!
//! The state at log size `n` is a function of the log's first `n` leaves: the frontier, the
//! open auctions' records ([`crate::auctions`]), the rule book's commitments and budgets
//! ([`crate::autobid`]; the opened rules are not in it, the host gives them back at boot), a
//! settling enclave's unpaid wins ([`crate::deposits`]: the sales of the last settlement
//! window less those a chain read showed paid) and the duplicate-email filter
//! ([`crate::dedup`]). The version is in the AAD, so a state an older enclave wrote (`v1`
//! before auto-bid rules, `v2` before unpaid wins) does not open (`boot.state_invalid`) and
//! the host restores from leaf 0 instead.
//! The submission and bid replay filters are not in it (they start empty at every boot, as
//! they always did), nor are open bids' amounts (secret; the host gives the sealed bids back,
//! `LoadBids`). Plaintext layout, integers big-endian:
//!
//! ```text
//! "leadgate.state.v3\n"   18 bytes
//! size u64, peak count u8, peaks 32 bytes each
//! open count u64, then per open auction: key 16, chain 32, closes_at u64, bids u32 (60 bytes)
//! rule book count u64, then per buyer: buyer 32, active u8, commitment 32 (zeros when
//!   cancelled), issued_at u64, day u64, bids_today u32 (85 bytes)
//! unpaid count u64, then per win: account 20, auction 16, price u64, closed_at u64
//!   (52 bytes)
//! tag filter: bits_log2 u8, insertions u64, the filter's words (u64 little-endian)
//! ```
//!
//! Split into parts of [`leadgate_protocol::STATE_PART_BYTES`], made one at a time (only one
//! part's plaintext is in memory), each sealed with AES-256-GCM (random 96-bit nonce) under a key derived from the enclave's secrets
//! ([`crate::secrets::Secrets::state_key`]), with AAD
//! `"leadgate.state.v3\n" ‖ origin ‖ "\n" ‖ size u64 ‖ root ‖ index u32 ‖ count u32`. So a
//! part opens only in an enclave holding the same secrets, only at its place, and only with
//! the size and root it was sealed at. Nothing in the plaintext is secret (it is a function of
//! the public log and of public chain reads); the seal is for its authenticity, AES-GCM
//! because the enclave already seals with it.
//!
//! Why an old or withheld state is harmless: the host may hand back any state it stored (or
//! none), but the restore then replays every leaf from that state's size to the tip onto the
//! state's frontier, and `Start` requires the result to be exactly the tip the enclave booted
//! from. The state at `n` plus leaves `n..tip` is the state at the tip, whichever `n`; a
//! state of another branch (leaves later voided) ends at another root and is refused. An old
//! state's unpaid wins may include some paid since: they count until the first chain read of
//! their buyer drops them, which only delays a bid, never lets one through.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use leadgate_verifier::merkle::{Frontier, Hash};
use rand_core::{OsRng, RngCore};
use serde_bytes::ByteBuf;

use crate::auctions::{AuctionBook, OpenAuction};
use crate::autobid::{RuleBook, RuleRecord};
use crate::bloom::HashFilter;
use crate::dedup::EmailTags;
use crate::deposits::UnpaidWin;
use leadgate_protocol::{StatePart, STATE_PART_BYTES};

const MAGIC: &[u8] = b"leadgate.state.v3\n";
const RULE_RECORD_LEN: usize = 85;
const UNPAID_RECORD_LEN: usize = 52;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const RECORD_LEN: usize = 60;

/// Why a sealed state cannot be loaded. Code: `boot.state_invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealed state: {0}")]
pub struct StateError(pub String);

fn bad(m: impl Into<String>) -> StateError {
    StateError(m.into())
}

/// The state restored from sealed parts.
pub struct LoadedState {
    /// The frontier at the state's size.
    pub frontier: Frontier,
    /// The open auctions.
    pub book: AuctionBook,
    /// The duplicate-email filter.
    pub tags: EmailTags,
    /// The rule book's records (rules to be supplied).
    pub rules: Vec<RuleRecord>,
    /// The unpaid wins.
    pub unpaid: Vec<UnpaidWin>,
}

/// What a sealed state holds, borrowed from the running enclave at one log size.
pub struct Snapshot<'a> {
    /// The log's frontier.
    pub frontier: &'a Frontier,
    /// The open auctions.
    pub book: &'a AuctionBook,
    /// The rule book.
    pub rules: &'a RuleBook,
    /// The unpaid wins (empty on a gateway that does not settle).
    pub unpaid: &'a [UnpaidWin],
    /// The duplicate-email filter.
    pub tags: &'a EmailTags,
}

fn aad(origin: &str, size: u64, root: &Hash, index: u32, count: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(MAGIC.len() + origin.len() + 1 + 8 + 32 + 8);
    a.extend_from_slice(MAGIC);
    a.extend_from_slice(origin.as_bytes());
    a.push(b'\n');
    a.extend_from_slice(&size.to_be_bytes());
    a.extend_from_slice(root);
    a.extend_from_slice(&index.to_be_bytes());
    a.extend_from_slice(&count.to_be_bytes());
    a
}

/// Collects the bytes `start .. end` of a serialization written through it, and counts the
/// whole length: a part is made without the whole plaintext in memory.
struct RangeWriter {
    start: usize,
    end: usize,
    pos: usize,
    out: Vec<u8>,
}

impl RangeWriter {
    fn write(&mut self, bytes: &[u8]) {
        let (from, to) = (self.pos, self.pos + bytes.len());
        self.pos = to;
        if to <= self.start || from >= self.end {
            return;
        }
        let a = self.start.max(from) - from;
        let b = self.end.min(to) - from;
        self.out.extend_from_slice(&bytes[a..b]);
    }
}

/// Writes the plaintext of the state (see the module docs) through `w`.
fn serialize(w: &mut RangeWriter, state: &Snapshot<'_>) {
    let Snapshot {
        frontier,
        book,
        rules,
        unpaid,
        tags,
    } = state;
    w.write(MAGIC);
    w.write(&frontier.size().to_be_bytes());
    w.write(&[frontier.peaks().len() as u8]);
    for p in frontier.peaks() {
        w.write(p);
    }
    w.write(&(book.open_count() as u64).to_be_bytes());
    let records_end = w.pos + RECORD_LEN * book.open_count();
    if w.pos < w.end && records_end > w.start {
        for (key, a) in book.iter() {
            w.write(key);
            w.write(&a.chain);
            w.write(&a.closes_at.to_be_bytes());
            w.write(&a.bids.to_be_bytes());
        }
    } else {
        w.pos = records_end;
    }
    w.write(&(rules.len() as u64).to_be_bytes());
    let rules_end = w.pos + RULE_RECORD_LEN * rules.len();
    if w.pos < w.end && rules_end > w.start {
        for r in rules.records() {
            w.write(&r.buyer);
            w.write(&[u8::from(r.commitment.is_some())]);
            w.write(&r.commitment.unwrap_or([0; 32]));
            w.write(&r.issued_at.to_be_bytes());
            w.write(&r.day.to_be_bytes());
            w.write(&r.bids_today.to_be_bytes());
        }
    } else {
        w.pos = rules_end;
    }
    w.write(&(unpaid.len() as u64).to_be_bytes());
    let unpaid_end = w.pos + UNPAID_RECORD_LEN * unpaid.len();
    if w.pos < w.end && unpaid_end > w.start {
        for (account, auction, price, closed_at) in unpaid.iter() {
            w.write(account);
            w.write(auction);
            w.write(&price.to_be_bytes());
            w.write(&closed_at.to_be_bytes());
        }
    } else {
        w.pos = unpaid_end;
    }
    let filter = tags.filter();
    w.write(&[filter.bits_log2() as u8]);
    w.write(&filter.len().to_be_bytes());
    // Only the words that fall in the range are encoded.
    let words = filter.words();
    let first = w.start.saturating_sub(w.pos) / 8;
    w.pos += first * 8;
    for word in &words[first.min(words.len())..] {
        if w.pos >= w.end {
            break;
        }
        w.write(&word.to_le_bytes());
    }
}

/// The plaintext length of the state, bytes.
fn plaintext_len(state: &Snapshot<'_>) -> usize {
    MAGIC.len()
        + 8
        + 1
        + 32 * state.frontier.peaks().len()
        + 8
        + RECORD_LEN * state.book.open_count()
        + 8
        + RULE_RECORD_LEN * state.rules.len()
        + 8
        + UNPAID_RECORD_LEN * state.unpaid.len()
        + 1
        + 8
        + 8 * state.tags.filter().words().len()
}

/// How many parts the state has.
pub fn part_count(state: &Snapshot<'_>) -> u32 {
    plaintext_len(state).div_ceil(STATE_PART_BYTES) as u32
}

/// Seals part `index` of the state at `frontier` (see the module docs). Only that part's
/// plaintext is in memory at a time; the parts of one state must be made with no change to
/// the book or filter in between (the enclave makes them at one log size).
///
/// # Panics
/// If `index` is not below [`part_count`].
pub fn seal_part(key: &[u8; 32], origin: &str, state: &Snapshot<'_>, index: u32) -> StatePart {
    let count = part_count(state);
    assert!(index < count, "part {index} of {count}");
    let start = index as usize * STATE_PART_BYTES;
    let mut w = RangeWriter {
        start,
        end: start + STATE_PART_BYTES,
        pos: 0,
        out: Vec::with_capacity(NONCE_LEN + STATE_PART_BYTES + TAG_LEN),
    };
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    w.out.extend_from_slice(&nonce);
    serialize(&mut w, state);
    let mut blob = w.out;
    let (size, root) = (state.frontier.size(), state.frontier.root());
    let tag = Aes256Gcm::new(key.into())
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &aad(origin, size, &root, index, count),
            &mut blob[NONCE_LEN..],
        )
        .expect("a part is far below AES-GCM's message limit");
    blob.extend_from_slice(&tag);
    StatePart {
        size,
        root: ByteBuf::from(root.to_vec()),
        index,
        count,
        blob: ByteBuf::from(blob),
    }
}

/// Parts received so far, in order, opened.
pub struct StateLoad {
    size: u64,
    root: Hash,
    count: u32,
    plain: Vec<u8>,
    next: u32,
}

impl StateLoad {
    /// Opens `part` and adds it. The first part must have index 0; each next one the next
    /// index and the same size, root and count.
    ///
    /// # Errors
    /// [`StateError`] if the part is out of order or does not open.
    pub fn add(
        loading: Option<Self>,
        part: &StatePart,
        key: &[u8; 32],
        origin: &str,
    ) -> Result<Self, StateError> {
        let root: Hash = part
            .root
            .as_slice()
            .try_into()
            .map_err(|_| bad("root is not 32 bytes"))?;
        let mut load = match loading {
            None if part.index == 0 && part.count > 0 => Self {
                size: part.size,
                root,
                count: part.count,
                plain: Vec::new(),
                next: 0,
            },
            None => return Err(bad("the first part must be part 0")),
            Some(l) => l,
        };
        if part.index != load.next
            || part.size != load.size
            || root != load.root
            || part.count != load.count
        {
            return Err(bad("parts out of order or of different states"));
        }
        if part.blob.len() < NONCE_LEN + TAG_LEN || part.blob.len() > STATE_PART_BYTES + 64 {
            return Err(bad("a part has the wrong length"));
        }
        let (nonce, rest) = part.blob.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let start = load.plain.len();
        load.plain.extend_from_slice(ct);
        Aes256Gcm::new(key.into())
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &aad(origin, load.size, &load.root, part.index, load.count),
                &mut load.plain[start..],
                tag.into(),
            )
            .map_err(|_| bad(format!("part {} does not open", part.index)))?;
        load.next += 1;
        Ok(load)
    }

    /// Whether every part is in.
    pub fn complete(&self) -> bool {
        self.next == self.count
    }

    /// Parses the complete state. `tag_bits_log2` is the configured filter size: a state with
    /// another (the configuration changed) is refused, and the host restores from leaf 0.
    ///
    /// # Errors
    /// [`StateError`] if parts are missing or the plaintext does not parse.
    pub fn finish(self, tag_bits_log2: u32) -> Result<LoadedState, StateError> {
        if !self.complete() {
            return Err(bad("parts are missing"));
        }
        let mut r = Reader(&self.plain);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad("not a sealed state"));
        }
        let size = r.u64()?;
        let n = r.take(1)?[0] as usize;
        let peaks = (0..n).map(|_| r.hash()).collect::<Result<Vec<_>, _>>()?;
        let frontier = Frontier::from_parts(size, peaks).map_err(|e| bad(e.to_string()))?;
        if size != self.size || frontier.root() != self.root {
            return Err(bad("frontier is not the sealed size and root"));
        }
        let open = r.u64()?;
        if open > (r.0.len() / RECORD_LEN) as u64 {
            return Err(bad("open auction count beyond the data"));
        }
        let mut book = AuctionBook::default();
        book.reserve(open as usize);
        for _ in 0..open {
            let key: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
            let chain = r.hash()?;
            let closes_at = r.u64()?;
            let bids = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
            book.insert(
                key,
                OpenAuction {
                    chain,
                    closes_at,
                    bids,
                },
            );
        }
        let n = r.u64()?;
        if n > (r.0.len() / RULE_RECORD_LEN) as u64 {
            return Err(bad("rule book count beyond the data"));
        }
        let mut rules = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let buyer = r.hash()?;
            let active = r.take(1)?[0];
            let commitment = r.hash()?;
            let issued_at = r.u64()?;
            let day = r.u64()?;
            let bids_today = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
            rules.push(RuleRecord {
                buyer,
                commitment: match active {
                    0 => None,
                    1 => Some(commitment),
                    _ => return Err(bad("a rule record's active flag is not 0 or 1")),
                },
                issued_at,
                day,
                bids_today,
            });
        }
        let n = r.u64()?;
        if n > (r.0.len() / UNPAID_RECORD_LEN) as u64 {
            return Err(bad("unpaid win count beyond the data"));
        }
        let mut unpaid = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let account: [u8; 20] = r.take(20)?.try_into().expect("20 bytes");
            let auction: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
            unpaid.push((account, auction, r.u64()?, r.u64()?));
        }
        let bits_log2 = u32::from(r.take(1)?[0]);
        if bits_log2 != tag_bits_log2 {
            return Err(bad(format!(
                "email filter of 2^{bits_log2} bits, configured 2^{tag_bits_log2}"
            )));
        }
        let len = r.u64()?;
        let words = r.0;
        if words.len() != (1usize << bits_log2) / 8 {
            return Err(bad("email filter has the wrong length"));
        }
        let filter = HashFilter::from_words(
            bits_log2,
            words
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))),
            len,
        );
        Ok(LoadedState {
            frontier,
            book,
            tags: EmailTags::from_filter(filter),
            rules,
            unpaid,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn hash(&mut self) -> Result<Hash, StateError> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_verifier::merkle::leaf_hash;
    use sha2::Digest as _;

    /// Seals every part of the state at `frontier`.
    fn seal(
        key: &[u8; 32],
        origin: &str,
        frontier: &Frontier,
        book: &AuctionBook,
        unpaid: &[UnpaidWin],
        tags: &EmailTags,
    ) -> Vec<StatePart> {
        let mut rules = RuleBook::new(10, 1_000);
        rules.set([9; 32], [8; 32], 77, None);
        rules.record_bid(&[9; 32], &[8; 32], 5 * 86_400_000 + 1);
        rules.set([10; 32], [11; 32], 78, None);
        rules.cancel(&[10; 32], &[11; 32], 79).unwrap();
        let state = Snapshot {
            frontier,
            book,
            rules: &rules,
            unpaid,
            tags,
        };
        (0..part_count(&state))
            .map(|i| seal_part(key, origin, &state, i))
            .collect()
    }

    fn state() -> (Frontier, AuctionBook, EmailTags) {
        let mut f = Frontier::new();
        for i in 0u32..13 {
            f.append(leaf_hash(&i.to_be_bytes()));
        }
        let mut book = AuctionBook::default();
        for i in 0u8..50 {
            book.open([i; 16], leaf_hash(&[i]), u64::from(i) * 1000);
            book.record_bid(&[i; 16], &leaf_hash(b"bid"));
        }
        let mut tags = EmailTags::new(20);
        tags.record(&[7; 32]);
        (f, book, tags)
    }

    fn load(parts: &[StatePart], key: &[u8; 32], origin: &str) -> Result<LoadedState, StateError> {
        let mut l = None;
        for p in parts {
            l = Some(StateLoad::add(l, p, key, origin)?);
        }
        l.ok_or_else(|| bad("none"))?.finish(20)
    }

    #[test]
    fn round_trip_and_every_tamper_refused() {
        let (f, book, tags) = state();
        let key = [3u8; 32];
        let unpaid = [
            ([1; 20], [2; 16], 3_000_000, 1_700_000_000_000),
            ([4; 20], [5; 16], 6, 7),
        ];
        let parts = seal(&key, "o", &f, &book, &unpaid, &tags);
        assert_eq!(parts.len(), 1);
        let s = load(&parts, &key, "o").unwrap();
        assert_eq!(s.unpaid, unpaid);
        assert_eq!((s.frontier.size(), s.frontier.root()), (f.size(), f.root()));
        assert_eq!(s.book.open_count(), 50);
        assert_eq!(s.book.get(&[4; 16]), book.get(&[4; 16]));
        assert!(s.tags.seen(&[7; 32]) && !s.tags.seen(&[8; 32]));
        assert_eq!(
            s.rules,
            vec![
                RuleRecord {
                    buyer: [9; 32],
                    commitment: Some([8; 32]),
                    issued_at: 77,
                    day: 5,
                    bids_today: 1
                },
                RuleRecord {
                    buyer: [10; 32],
                    commitment: None,
                    issued_at: 79,
                    day: 0,
                    bids_today: 0
                },
            ]
        );

        assert!(load(&parts, &[4u8; 32], "o").is_err(), "another key");
        assert!(load(&parts, &key, "p").is_err(), "another origin");
        let mut p = parts.clone();
        p[0].size += 1;
        assert!(load(&p, &key, "o").is_err(), "another size");
        let mut p = parts.clone();
        p[0].blob[20] ^= 1;
        assert!(load(&p, &key, "o").is_err(), "flipped bit");
        let mut p = parts.clone();
        p[0].count = 2;
        assert!(load(&p, &key, "o").is_err(), "claims more parts");
        assert!(
            StateLoad::add(None, &parts[0], &key, "o")
                .unwrap()
                .finish(21)
                .is_err(),
            "another filter size"
        );
    }

    #[test]
    fn large_states_split_into_parts_in_order() {
        let (f, _, _) = state();
        let mut book = AuctionBook::default();
        for i in 0u32..100_000 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_be_bytes());
            book.open(k, leaf_hash(&i.to_be_bytes()), 5);
        }
        // A 4 MiB filter: records and filter words both straddle part boundaries.
        let mut tags = EmailTags::new(25);
        let tag = |i: u32| -> [u8; 32] { sha2::Sha256::digest(i.to_be_bytes()).into() };
        for i in 0..1_000 {
            tags.record(&tag(i));
        }
        // 20,000 unpaid wins (1 MB) straddle a part boundary too.
        let unpaid: Vec<UnpaidWin> = (0..20_000u64)
            .map(|i| ([(i % 251) as u8; 20], [(i % 13) as u8; 16], i, i * 7))
            .collect();
        let key = [5u8; 32];
        let parts = seal(&key, "o", &f, &book, &unpaid, &tags);
        assert_eq!(parts.len(), 3);
        let mut l = None;
        for p in &parts {
            l = Some(StateLoad::add(l, p, &key, "o").unwrap());
        }
        let s = l.unwrap().finish(25).unwrap();
        assert_eq!(s.book.open_count(), 100_000);
        assert_eq!(s.unpaid, unpaid);
        assert_eq!(
            s.book.get(&book.iter().next().unwrap().0.clone()),
            book.iter().next().map(|(_, a)| a)
        );
        assert!((0..1_000).all(|i| s.tags.seen(&tag(i))));
        assert_eq!(s.tags.filter().words(), tags.filter().words());
        let swapped = [parts[1].clone(), parts[0].clone(), parts[2].clone()];
        assert!(StateLoad::add(None, &swapped[0], &key, "o").is_err());
        let two = StateLoad::add(None, &parts[0], &key, "o").unwrap();
        assert!(
            StateLoad::add(Some(two), &parts[2], &key, "o").is_err(),
            "a part skipped"
        );
        let one = StateLoad::add(None, &parts[0], &key, "o").unwrap();
        assert!(one.finish(25).is_err(), "parts missing");
    }
}
