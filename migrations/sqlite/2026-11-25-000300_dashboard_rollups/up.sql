-- Counters the officials' dashboard reads instead of counting documents and notices
-- one by one: kept up to date in the transactions that deliver, open and withdraw
-- documents and that queue and settle notices, and filled from the existing data
-- the first time the server starts with them (`dashboard_rollups_filled`).
-- Days are UTC calendar days written `YYYY-MM-DD`, which sort like the days.

-- Documents per delivery day, department ('' for none) and category.
CREATE TABLE dashboard_documents (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    day TEXT NOT NULL,
    department_id TEXT NOT NULL,
    category TEXT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    opened BIGINT NOT NULL DEFAULT 0,
    withdrawn BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, department_id, category)
);

-- Opened documents of the same groups, by band of delay before the first opening
-- (`dashboard::delays`): what the median delay is estimated from.
CREATE TABLE dashboard_open_delays (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    day TEXT NOT NULL,
    department_id TEXT NOT NULL,
    category TEXT NOT NULL,
    band INTEGER NOT NULL,
    opened BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, department_id, category, band)
);

-- Notices per day queued, channel and kind, by state. A notice counts once under '*'
-- (all), and once under each department and category of the documents it announces,
-- so that a filter counts every notice about at least one matching document once.
CREATE TABLE dashboard_notices (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    day TEXT NOT NULL,
    department_id TEXT NOT NULL,
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    pending BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, department_id, category, day, channel, kind)
);

-- One row once the counters above have been filled from the data already there.
CREATE TABLE dashboard_rollups_filled (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    filled_at TIMESTAMP NOT NULL
);
