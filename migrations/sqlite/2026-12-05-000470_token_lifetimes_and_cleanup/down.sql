DROP TABLE maintenance_leases;
DROP INDEX auth_flows_address;
ALTER TABLE auth_flows DROP COLUMN address_hash;
ALTER TABLE api_tokens DROP COLUMN last_used_at;
ALTER TABLE api_tokens DROP COLUMN expires_at;
ALTER TABLE api_tokens DROP COLUMN name;
