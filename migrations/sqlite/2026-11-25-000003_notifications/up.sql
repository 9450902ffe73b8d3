-- The notification outbox: one notice per (citizen, channel) that tells the citizen a
-- document waits in their vault, written in the same transaction as the documents it
-- announces, and sent by the worker. The contact is sealed to the citizen's key.
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    citizen_id TEXT NOT NULL REFERENCES citizens (id),
    kind TEXT NOT NULL CHECK (kind IN ('document', 'reminder')),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    sealed_contact BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_at TIMESTAMP,
    claim_token TEXT,
    sent_at TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL
);
-- At most one notice per (tenant, citizen, channel, kind) still gathering documents:
-- a delivery inside the coalescing window attaches itself to it (INSERT … ON CONFLICT).
CREATE UNIQUE INDEX notices_gathering ON notices (tenant_id, citizen_id, channel, kind)
    WHERE state = 'pending' AND attempts = 0;
CREATE INDEX notices_due ON notices (state, next_attempt_at);
CREATE INDEX notices_tenant_state ON notices (tenant_id, state);

-- Which documents a notice announces (several when deliveries were coalesced).
CREATE TABLE notice_documents (
    notice_id TEXT NOT NULL REFERENCES notices (id),
    document_id TEXT NOT NULL REFERENCES documents (id),
    PRIMARY KEY (notice_id, document_id)
);
CREATE INDEX notice_documents_document ON notice_documents (document_id);

-- When the one reminder for a document still unopened was queued.
ALTER TABLE documents ADD COLUMN reminded_at TIMESTAMP;
