DROP TABLE auth_flows;
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
DROP TABLE agent_pending_logins;
DROP TABLE agent_recovery_codes;
DROP TABLE agent_credentials;
