ALTER TABLE citizens DROP COLUMN sealed_contacts;
DROP TABLE sessions;
DROP TABLE auth_flows;
DROP TABLE citizen_logins;
