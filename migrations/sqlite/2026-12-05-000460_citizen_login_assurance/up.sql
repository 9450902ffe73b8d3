-- Whether each provider account's last login guaranteed the identity it asserted.
-- NULL: recorded before this was kept; judged then by the provider's configuration.
ALTER TABLE citizen_logins ADD COLUMN identity_verified BOOLEAN;
