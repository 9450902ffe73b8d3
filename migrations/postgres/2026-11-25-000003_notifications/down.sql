ALTER TABLE documents DROP COLUMN reminded_at;
DROP TABLE notice_documents;
DROP TABLE notices;
