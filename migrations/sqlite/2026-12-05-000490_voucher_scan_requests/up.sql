-- One submission of a scan: the one-time token of a scan form (stored when the form is
-- shown, consumed when it comes back) or an API request's Idempotency-Key (stored when
-- it first arrives). The same submission coming back (a double click, a resubmitted
-- form, a retried request) is shown the first one's answer instead of scanning again.
-- Keys and codes are kept as keyed hashes; each row goes once `expires_at` is past.
CREATE TABLE voucher_scan_requests (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    code_hash TEXT,
    outcome TEXT,
    created_at TIMESTAMP NOT NULL,
    consumed_at TIMESTAMP,
    expires_at TIMESTAMP NOT NULL,
    UNIQUE (agent_id, key_hash)
);
CREATE INDEX voucher_scan_requests_expiry ON voucher_scan_requests (expires_at);
