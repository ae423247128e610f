-- leadgate host schema v6: submitting the settlements the enclave signs at close. One row per
-- logged `auction.closed` that carries a settlement (copied from the event, so everything here
-- is public); `state` moves pending -> sent -> settled, or to failed (the escrow will never
-- pay this signature: another escrow or chain than the host's, or a signer the anchor no
-- longer registers). A row is never sent twice while its transaction may still be mined.
CREATE TABLE settlements (
    auction_id   TEXT PRIMARY KEY,          -- the lead id (32 hex digits: the bytes16 id)
    close_idx    INTEGER NOT NULL REFERENCES leaves(idx),  -- its auction.closed
    chain_id     INTEGER NOT NULL,
    -- Addresses and the signature as the event carries them: 0x + 40 lowercase hex digits,
    -- and 130 hex digits (r || s || v, 65 bytes, by the epoch's anchor key).
    escrow       TEXT NOT NULL,             -- the LeadEscrow contract
    buyer        TEXT NOT NULL,             -- the winner's deposit address
    seller       TEXT NOT NULL,             -- the seller's payout address
    price        INTEGER NOT NULL,          -- smallest token units
    fee_bps      INTEGER NOT NULL,
    fee_recipient TEXT NOT NULL,            -- the zero address with no fee
    signature    TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    tx_hash      BLOB,                      -- 32 bytes: ours once sent (NULL if another paid)
    block_number INTEGER,
    gas_used     INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    closed_ms    INTEGER NOT NULL,          -- Unix ms, enclave clock: the close's time
    settled_ms   INTEGER                    -- Unix ms, host clock, when seen paid
);
CREATE INDEX settlements_state ON settlements (state, close_idx);
CREATE INDEX settlements_seller ON settlements (seller);
