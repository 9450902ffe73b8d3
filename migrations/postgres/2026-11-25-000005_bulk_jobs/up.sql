-- Bulk deliveries started from the browser: one row per job and one per manifest
-- line, so progress and the per-line report survive the request that started it.
-- No personal data: outcomes, document ids and refusal reasons that name columns.

CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    department_id TEXT REFERENCES departments (id),
    state TEXT NOT NULL CHECK (state IN ('staging', 'running', 'done', 'interrupted')),
    total INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX bulk_jobs_tenant ON bulk_jobs (tenant_id, created_at);

CREATE TABLE bulk_job_lines (
    job_id TEXT NOT NULL REFERENCES bulk_jobs (id),
    line INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'delivered', 'replayed', 'refused')),
    document_id TEXT,
    reason TEXT,
    PRIMARY KEY (job_id, line)
);
