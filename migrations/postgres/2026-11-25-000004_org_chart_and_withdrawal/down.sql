DROP INDEX documents_department;
ALTER TABLE documents DROP COLUMN withdrawal_reason;
ALTER TABLE documents DROP COLUMN withdrawn_by;
ALTER TABLE departments DROP COLUMN archived_at;
UPDATE agents SET department_id = (
    SELECT MIN(department_id) FROM agent_departments WHERE agent_id = agents.id
);
DROP TABLE agent_departments;
