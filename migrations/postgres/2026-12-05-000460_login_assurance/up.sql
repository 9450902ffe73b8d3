-- Whether each provider account's last login guaranteed the identity it asserted.
-- NULL: recorded before this was kept; judged then by the provider's configuration.
ALTER TABLE citizen_logins ADD COLUMN identity_verified BOOLEAN;

-- A provider login whose work email has an account in several tenants waits here, for
-- a few minutes, until the agent chooses the tenant. Only agent ids are kept.
CREATE TABLE agent_tenant_choices (
    id_hash TEXT PRIMARY KEY NOT NULL,
    agent_ids TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    id_token TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
