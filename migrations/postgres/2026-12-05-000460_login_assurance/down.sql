DROP TABLE agent_tenant_choices;
ALTER TABLE citizen_logins DROP COLUMN identity_verified;
