-- Logging in: which provider account opens which vault, the short-lived state of a
-- login or logout in progress, and server-side sessions (ids stored hashed).

-- A citizen is keyed by (issuer, sub): FranceConnect's sub differs per service and
-- never matches across providers, so each provider account is linked explicitly.
CREATE TABLE citizen_logins (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens (id),
    provider_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_login_at TIMESTAMP NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX citizen_logins_citizen ON citizen_logins (citizen_id);

-- A login or logout redirect in progress: its `state` (hashed), the browser it was
-- started from (hash of a pre-login cookie), and for a login the nonce to expect.
-- Consumed once, by a single DELETE.
CREATE TABLE auth_flows (
    state_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('login', 'logout')),
    browser_hash TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX auth_flows_expiry ON auth_flows (expires_at);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('citizen', 'agent')),
    subject_id TEXT NOT NULL,
    provider_id TEXT,
    id_token TEXT,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Where a citizen wants to be told that a document is waiting, sealed to their key.
ALTER TABLE citizens ADD COLUMN sealed_contacts BLOB;
