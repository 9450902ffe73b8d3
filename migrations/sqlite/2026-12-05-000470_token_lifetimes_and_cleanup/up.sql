-- API tokens have a name, may expire, and remember when they were last used (written
-- at most once a minute). Tokens issued before keep no expiry.
ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMP;
ALTER TABLE api_tokens ADD COLUMN last_used_at TIMESTAMP;

-- Disabling an agent now revokes their tokens and ends their sessions for good; do it
-- for the agents disabled before, so that re-enabling them revives nothing.
UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP
    WHERE revoked_at IS NULL
    AND agent_id IN (SELECT id FROM agents WHERE disabled_at IS NOT NULL);
DELETE FROM sessions
    WHERE kind = 'agent'
    AND subject_id IN (SELECT id FROM agents WHERE disabled_at IS NOT NULL);

-- Pending logins are counted per client address (a keyed hash, never the address).
ALTER TABLE auth_flows ADD COLUMN address_hash TEXT;
CREATE INDEX auth_flows_address ON auth_flows (address_hash, expires_at);

-- Periodic work that one instance at a time does (the cleanup of short-lived rows):
-- whoever moves `expires_at` forward, from the past, holds it.
CREATE TABLE maintenance_leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
INSERT INTO maintenance_leases (name, holder, expires_at)
    VALUES ('cleanup', '', '1970-01-01 00:00:00');
