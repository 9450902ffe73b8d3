ALTER TABLE citizen_logins DROP COLUMN identity_verified;
