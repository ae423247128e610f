-- leadgate host schema v1. The host stores only what the enclave produced and what sellers
-- sent sealed: no plaintext lead data exists anywhere in it.
CREATE TABLE leaves (
    idx  INTEGER PRIMARY KEY,          -- leaf index
    leaf BLOB NOT NULL                 -- canonical event JSON (RFC 8785)
);
CREATE TABLE nodes (
    level INTEGER NOT NULL,            -- 0 = leaf hash
    idx   INTEGER NOT NULL,            -- index within level
    hash  BLOB NOT NULL,               -- 32 bytes
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE receipts (
    idx     INTEGER PRIMARY KEY REFERENCES leaves(idx),
    receipt TEXT NOT NULL              -- receipt JSON
);
CREATE TABLE leads (
    lead_id           TEXT PRIMARY KEY,
    seller            TEXT NOT NULL,   -- Ed25519 public key, hex
    ciphertext_sha256 TEXT NOT NULL UNIQUE,
    sealed            TEXT NOT NULL,   -- the sealed request JSON (HPKE ciphertext)
    accepted          INTEGER NOT NULL,
    reason            TEXT,
    score             INTEGER,
    idx               INTEGER NOT NULL REFERENCES leaves(idx),
    email_tag         BLOB,            -- HMAC tag from the public event, accepted leads only
    created_ms        INTEGER NOT NULL
);
CREATE INDEX leads_seller ON leads (seller);
CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY,
    note       BLOB NOT NULL,          -- C2SP signed note
    created_ms INTEGER NOT NULL
);
CREATE TABLE sealed (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    blob BLOB NOT NULL                 -- the enclave's sealed secrets
);
