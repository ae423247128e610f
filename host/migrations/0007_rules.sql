-- leadgate host schema v7: buyers' auto-bid rule sets. The enclave logs only a commitment to
-- each (`rules.set`, `rules.cancelled`); the host keeps the sealed rule set the buyer posted,
-- which it cannot open, to hand back to a restarting enclave (`LoadRules`).
CREATE TABLE rule_sets (
    idx        INTEGER PRIMARY KEY REFERENCES leaves(idx),  -- its rules.set
    buyer      TEXT NOT NULL,             -- 64 hex digits
    commitment TEXT NOT NULL UNIQUE,      -- SHA-256(enc || ciphertext), 64 hex digits
    issued_at  INTEGER NOT NULL,          -- Unix ms, the buyer's clock
    sealed     TEXT NOT NULL              -- the sealed rule set JSON as posted
);
CREATE INDEX rule_sets_buyer ON rule_sets (buyer, idx);
-- One row per `rules.cancelled` (copied from the event).
CREATE TABLE rule_cancels (
    idx        INTEGER PRIMARY KEY REFERENCES leaves(idx),
    buyer      TEXT NOT NULL,
    commitment TEXT NOT NULL
);
CREATE INDEX rule_cancels_buyer ON rule_cancels (buyer, idx);
