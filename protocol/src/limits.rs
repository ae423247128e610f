//! Sizes both sides enforce: frames, batches, chunks.

/// Largest frame body, bytes: a submit batch of 256 leads of 16 KiB is 5.6 MiB in base64.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;
/// Most leads in one `Submit`.
pub const MAX_BATCH: usize = 256;
/// Most leaves in one `Replay` (a leaf is at most 8 KiB and leaves average under 1 KiB, so
/// 2,048 of them stay far below [`MAX_FRAME_LEN`]).
pub const MAX_RESTORE_ENTRIES: usize = 2_048;
/// Plaintext bytes in one sealed state part: with CBOR framing, far below [`MAX_FRAME_LEN`].
pub const STATE_PART_BYTES: usize = 4 * 1024 * 1024;
/// Most `bid.sealed` entries one auction takes: its close input (a leaf and a sealed bid,
/// under 1 KiB each) then fits one frame.
pub const MAX_BIDS_PER_AUCTION: u32 = 4_096;
/// Most bytes of close inputs (leaves and sealed bids as weighed by
/// [`crate::CloseInput::weight`]) the host packs into one `Close`, past its first auction.
pub const MAX_CLOSE_BYTES: usize = 4 * 1024 * 1024;
/// Most bids in one `Bid`.
pub const MAX_BIDS: usize = 256;
/// Most entries in one `Journal` answer.
pub const MAX_JOURNAL_ENTRIES: usize = 1_024;
/// Most bytes (by [`crate::JournalEntry::weight`]) in one `Journal` answer, past its first entry:
/// base64 and CBOR keep the frame under [`MAX_FRAME_LEN`].
pub const MAX_JOURNAL_BYTES: usize = 4 * 1024 * 1024;
/// Most auction ids one `Tick` answers, and most auctions one `Close` takes; a full `Due`
/// tells the host to tick again at once. A close event is under 1 KiB, so 1,024 of them stay
/// well inside one frame.
pub const MAX_CLOSES_PER_TICK: usize = 1_024;
/// Most sealed rule sets in one `LoadRules`.
pub const MAX_RULE_SETS_PER_LOAD: usize = 256;
/// Most bids the enclave makes under buyers' rule sets in one `Submit` answer (a sealed bid
/// and its append are under 2 KiB, so they stay far below [`MAX_FRAME_LEN`]); the leads past
/// the one that would exceed it are refused with `enclave.batch_full`, to be sent again.
pub const MAX_RULED_BIDS_PER_SUBMIT: usize = 2_048;
