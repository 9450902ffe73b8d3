-- Locked vaults. Until a citizen locks their vault, its identity rests here wrapped by
-- the master key (escrow). Locking deletes the row: from then on only the citizen's
-- passkeys and recovery code open the vault, and the server cannot.
CREATE TABLE vault_escrow (
    citizen_id TEXT PRIMARY KEY NOT NULL REFERENCES citizens (id),
    wrapped_identity BYTEA NOT NULL
);
INSERT INTO vault_escrow (citizen_id, wrapped_identity)
    SELECT id, wrapped_identity FROM citizens;
ALTER TABLE citizens DROP COLUMN wrapped_identity;
ALTER TABLE citizens ADD COLUMN locked_at TIMESTAMP;

-- One passkey of a locked vault: webauthn-rs's record of the credential (public key,
-- sign count), the random salt its PRF output is asked for, and the vault identity
-- wrapped by the key derived from that output (opaque to the server).
CREATE TABLE vault_passkeys (
    id TEXT PRIMARY KEY NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens (id),
    credential_id TEXT NOT NULL UNIQUE,
    passkey TEXT NOT NULL,
    prf_salt BYTEA NOT NULL,
    wrapped_identity BYTEA NOT NULL,
    label TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX vault_passkeys_citizen ON vault_passkeys (citizen_id);

-- The vault identity sealed under the citizen's recovery code (an age file with one
-- scrypt stanza; the server never sees the code), and each time it was handed out:
-- those are the attempts the per-citizen limit counts.
CREATE TABLE vault_recovery (
    citizen_id TEXT PRIMARY KEY NOT NULL REFERENCES citizens (id),
    sealed_identity BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE vault_recovery_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens (id),
    attempted_at TIMESTAMP NOT NULL
);
CREATE INDEX vault_recovery_attempts_citizen ON vault_recovery_attempts (citizen_id, attempted_at);

-- A WebAuthn ceremony between its two requests (webauthn-rs's state, with its
-- challenge), used once: finishing deletes it. A lock's ceremony also holds the new
-- recipient and the keyed hash of the proof the page must open with the new identity.
CREATE TABLE vault_ceremonies (
    id TEXT PRIMARY KEY NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens (id),
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    recipient TEXT,
    proof_hash TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX vault_ceremonies_expiry ON vault_ceremonies (expires_at);

-- Who encrypted a document: the server on arrival, or the sender before it left their
-- machine (end to end).
ALTER TABLE documents ADD COLUMN encrypted_by TEXT NOT NULL DEFAULT 'server';

-- Set when the citizen lost every way into their locked vault and started a new one:
-- the document can no longer be opened by anyone, and the commune is told to deliver
-- it again.
ALTER TABLE documents ADD COLUMN unrecoverable_at TIMESTAMP;
