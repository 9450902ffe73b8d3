-- The document store: tenants and their agents, citizens' wrapped vault keys,
-- encrypted documents, wrapped server keys and the hash-chained audit log.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE departments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (tenant_id, slug)
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'agent', 'official', 'distributor')),
    department_id TEXT REFERENCES departments (id),
    created_at TIMESTAMP NOT NULL,
    disabled_at TIMESTAMP,
    UNIQUE (tenant_id, email)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX api_tokens_agent ON api_tokens (agent_id);

-- Server keys (the HMAC key, later signing keys), each wrapped by the master key
-- whose public recipient is recorded, so a wrong master key is caught at start.
CREATE TABLE key_material (
    purpose TEXT PRIMARY KEY,
    wrapped BYTEA NOT NULL,
    master_recipient TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    rewrapped_at TIMESTAMP
);

-- A citizen's vault key: the age identity wrapped by the master key, and its public
-- recipient. Addressing indexes are keyed hashes, never the identity itself.
CREATE TABLE citizens (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    wrapped_identity BYTEA NOT NULL,
    pivot_hash TEXT UNIQUE,
    nrn_hash TEXT UNIQUE,
    created_at TIMESTAMP NOT NULL
);

-- A delivered document. The age header lives here, the payload in the object store:
-- deleting this row makes every copy of the payload unreadable. Title, file name,
-- contact and recipient are sealed (age-encrypted) to the citizen.
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    department_id TEXT REFERENCES departments (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    citizen_id TEXT NOT NULL REFERENCES citizens (id),
    category TEXT NOT NULL,
    content_type TEXT NOT NULL,
    sealed_metadata BYTEA NOT NULL,
    age_header BYTEA NOT NULL,
    blob_key TEXT NOT NULL UNIQUE,
    ciphertext_size BIGINT NOT NULL,
    ciphertext_sha256 TEXT NOT NULL,
    plaintext_size BIGINT NOT NULL,
    idempotency_key TEXT,
    request_fingerprint TEXT,
    created_at TIMESTAMP NOT NULL,
    notified_at TIMESTAMP,
    first_opened_at TIMESTAMP,
    withdrawn_at TIMESTAMP,
    expires_at TIMESTAMP,
    UNIQUE (agent_id, idempotency_key)
);
CREATE INDEX documents_citizen ON documents (citizen_id, created_at);
CREATE INDEX documents_tenant ON documents (tenant_id, created_at);

-- One row holding the end of the audit chain. Appending an event updates it first,
-- which serialises concurrent appends on the row lock.
CREATE TABLE audit_chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    occurred_at TIMESTAMP NOT NULL,
    tenant_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT,
    citizen_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_citizen ON audit_events (citizen_id, seq);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, seq);
