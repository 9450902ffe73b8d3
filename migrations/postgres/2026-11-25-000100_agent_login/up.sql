-- Agents logging in to the browser: local accounts (argon2id password, TOTP second
-- factor sealed to the master key, hashed recovery codes, failure counters), the
-- short-lived state between password and code, and agent logins through a provider.

CREATE TABLE agent_credentials (
    agent_id TEXT PRIMARY KEY REFERENCES agents (id),
    -- PHC string (argon2id); NULL for an agent who logs in through a provider only.
    password_hash TEXT,
    -- The TOTP secret, sealed (age) to the master key; active once confirmed.
    totp_sealed BYTEA,
    totp_confirmed_at TIMESTAMP,
    -- The last accepted time step: a code is accepted once.
    totp_last_step BIGINT,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);

-- Each consumed by one DELETE; stored as keyed hashes.
CREATE TABLE agent_recovery_codes (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    code_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (agent_id, code_hash)
);

-- Between a correct password and a correct code: not a session, a few attempts.
CREATE TABLE agent_pending_logins (
    id_hash TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (id),
    attempts INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX agent_pending_logins_expiry ON agent_pending_logins (expires_at);

-- Redirects in progress are ephemeral: the table is recreated to tell citizen and
-- agent logins apart.
DROP TABLE auth_flows;
CREATE TABLE auth_flows (
    state_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('login', 'logout', 'agent_login', 'agent_logout')),
    browser_hash TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX auth_flows_expiry ON auth_flows (expires_at);
