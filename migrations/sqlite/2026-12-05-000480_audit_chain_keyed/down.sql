ALTER TABLE audit_events DROP COLUMN chain_version;
