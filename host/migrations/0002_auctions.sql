-- leadgate host schema v2: auctions, sealed bids, releases, and where each boot's replay
-- starts. Everything here is public (copied from log events) or sealed to the enclave or to a
-- buyer: no bid amount except a winner's published price, no lead plaintext.
CREATE TABLE auctions (
    auction_id   TEXT PRIMARY KEY,          -- the lead id
    open_idx     INTEGER NOT NULL REFERENCES leaves(idx),  -- its lead.accepted
    listing      TEXT NOT NULL,             -- redacted listing JSON (from the event)
    industry     TEXT NOT NULL,
    region       TEXT NOT NULL,
    score        INTEGER NOT NULL,
    reserve      INTEGER NOT NULL,          -- smallest token units
    closes_at    INTEGER NOT NULL,          -- Unix ms, enclave clock
    pricing      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open',  -- open | sold | unsold
    close_idx    INTEGER REFERENCES leaves(idx),
    winner       TEXT,                      -- buyer id (sold)
    price        INTEGER,                   -- the winner's price (sold)
    bids         INTEGER                    -- bids considered at close
);
CREATE INDEX auctions_status ON auctions (status, closes_at);
CREATE INDEX auctions_winner ON auctions (winner);
CREATE TABLE bids (
    idx          INTEGER PRIMARY KEY REFERENCES leaves(idx),  -- its bid.sealed
    auction_id   TEXT NOT NULL,
    buyer        TEXT NOT NULL,
    commitment   TEXT NOT NULL UNIQUE,      -- SHA-256 of the sealed bid, hex
    sealed       TEXT NOT NULL              -- the sealed bid JSON (HPKE to the enclave)
);
CREATE INDEX bids_auction ON bids (auction_id);
CREATE TABLE releases (
    idx          INTEGER PRIMARY KEY REFERENCES leaves(idx),  -- its lead.released
    lead_id      TEXT NOT NULL,
    buyer        TEXT NOT NULL,
    released     TEXT NOT NULL              -- the lead sealed to the winner (JSON)
);
CREATE TABLE epochs (
    idx          INTEGER PRIMARY KEY REFERENCES leaves(idx),  -- its log.epoch
    replay_from  INTEGER NOT NULL
);
