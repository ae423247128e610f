-- leadgate host schema v4: the enclave's sealed state, so that a restart replays only the
-- leaves after it. Opaque to the host (AES-256-GCM under a key only the enclave derives); kept
-- for the newest two states.
CREATE TABLE state_parts (
    size   INTEGER NOT NULL,            -- log size the state is of
    part   INTEGER NOT NULL,            -- 0 .. parts - 1
    parts  INTEGER NOT NULL,
    root   BLOB NOT NULL,               -- tree root at size, 32 bytes
    blob   BLOB NOT NULL,               -- nonce ‖ ciphertext ‖ tag
    PRIMARY KEY (size, part)
);
