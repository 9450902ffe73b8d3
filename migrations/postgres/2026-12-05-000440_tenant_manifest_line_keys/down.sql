DROP INDEX documents_tenant_idempotency;
ALTER TABLE documents DROP COLUMN idempotency_scope;
