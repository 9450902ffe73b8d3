-- A manifest line's idempotency key is the tenant's, not the agent's: the same
-- manifest run by two agents (browser and command line) delivers each line once.
-- Keys a client chose itself stay the agent's ('agent'). Rows delivered before keep
-- working: each manifest line key already used becomes the tenant's on its first
-- document; a twin delivered by another agent keeps its key as that agent's.
ALTER TABLE documents ADD COLUMN idempotency_scope TEXT
    CHECK (idempotency_scope IN ('agent', 'tenant'));
UPDATE documents SET idempotency_scope = 'agent' WHERE idempotency_key IS NOT NULL;
UPDATE documents SET idempotency_scope = 'tenant'
    WHERE idempotency_key LIKE 'bulk-%'
    AND id = (SELECT first.id FROM documents first
              WHERE first.tenant_id = documents.tenant_id
              AND first.idempotency_key = documents.idempotency_key
              ORDER BY first.created_at, first.id LIMIT 1);
CREATE UNIQUE INDEX documents_tenant_idempotency ON documents (tenant_id, idempotency_key)
    WHERE idempotency_scope = 'tenant';
