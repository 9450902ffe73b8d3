ALTER TABLE documents DROP COLUMN unrecoverable_at;
ALTER TABLE documents DROP COLUMN encrypted_by;
DROP TABLE vault_ceremonies;
DROP TABLE vault_recovery_attempts;
DROP TABLE vault_recovery;
DROP TABLE vault_passkeys;
ALTER TABLE citizens DROP COLUMN locked_at;
ALTER TABLE citizens ADD COLUMN wrapped_identity BLOB;
UPDATE citizens SET wrapped_identity =
    (SELECT wrapped_identity FROM vault_escrow WHERE vault_escrow.citizen_id = citizens.id);
DROP TABLE vault_escrow;
