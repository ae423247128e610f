-- leadgate host schema v3: on-chain anchoring of checkpoints. One row per checkpoint the
-- enclave signed for the configured CheckpointAnchor deployment; `state` moves
-- pending -> sent -> anchored, or to superseded (a later checkpoint got there first) or
-- conflict (the chain holds another root for this size: a fork, never retried).
CREATE TABLE anchors (
    size         INTEGER PRIMARY KEY,       -- tree size of the checkpoint
    root         BLOB NOT NULL,             -- its root hash, 32 bytes
    signature    BLOB NOT NULL,             -- the enclave's EIP-712 signature, 65 bytes
    chain_id     INTEGER NOT NULL,
    contract     BLOB NOT NULL,             -- 20 bytes
    state        TEXT NOT NULL DEFAULT 'pending',
    tx_hash      BLOB,                      -- 32 bytes, once sent
    block_number INTEGER,
    gas_used     INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_ms   INTEGER NOT NULL,
    anchored_ms  INTEGER
);
CREATE INDEX anchors_state ON anchors (state, size);
