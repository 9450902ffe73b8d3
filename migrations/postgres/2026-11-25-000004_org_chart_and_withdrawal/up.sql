-- The org chart: an agent may work for several departments, and a department that is
-- no longer used is archived rather than deleted (documents still point to it).
-- A withdrawn document keeps its row, with who withdrew it and why.

CREATE TABLE agent_departments (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    department_id TEXT NOT NULL REFERENCES departments (id),
    PRIMARY KEY (agent_id, department_id)
);
CREATE INDEX agent_departments_department ON agent_departments (department_id);

-- `agents.department_id` is superseded by agent_departments. SQLite cannot drop a
-- column that references another table, so the column stays, always empty.
INSERT INTO agent_departments (agent_id, department_id)
SELECT id, department_id FROM agents WHERE department_id IS NOT NULL;
UPDATE agents SET department_id = NULL;

ALTER TABLE departments ADD COLUMN archived_at TIMESTAMP;

ALTER TABLE documents ADD COLUMN withdrawn_by TEXT;
ALTER TABLE documents ADD COLUMN withdrawal_reason TEXT;
CREATE INDEX documents_department ON documents (tenant_id, department_id, created_at);
