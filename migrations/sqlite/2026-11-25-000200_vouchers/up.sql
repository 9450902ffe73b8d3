-- Voucher campaigns (one single-use code per household). The database keeps a keyed
-- hash of each code and of each household reference, and the allotment: never a code
-- in clear, never an address. A voucher placed in a citizen's vault also carries its
-- code sealed to that citizen.

CREATE TABLE voucher_campaigns (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    -- What is handed out, e.g. "masques lavables".
    item TEXT NOT NULL,
    default_allotment INTEGER NOT NULL CHECK (default_allotment > 0),
    starts_on DATE NOT NULL,
    ends_on DATE NOT NULL,
    created_by TEXT NOT NULL REFERENCES agents (id),
    created_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP,
    closed_by TEXT REFERENCES agents (id)
);
CREATE INDEX voucher_campaigns_tenant ON voucher_campaigns (tenant_id, created_at);

-- Distribution points: public places, printed on the letters.
CREATE TABLE voucher_sites (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES voucher_campaigns (id),
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    opening_hours TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (campaign_id, name)
);

CREATE TABLE vouchers (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES voucher_campaigns (id),
    code_hash TEXT NOT NULL UNIQUE,
    household_hash TEXT NOT NULL,
    allotment INTEGER NOT NULL CHECK (allotment > 0),
    issued_by TEXT NOT NULL REFERENCES agents (id),
    issued_at TIMESTAMP NOT NULL,
    -- Set for a voucher placed in a citizen's vault: the code sealed to them.
    citizen_id TEXT REFERENCES citizens (id),
    sealed_code BLOB,
    revoked_at TIMESTAMP,
    revoked_by TEXT REFERENCES agents (id),
    replaced_by TEXT REFERENCES vouchers (id),
    redeemed_at TIMESTAMP,
    redeemed_site_id TEXT REFERENCES voucher_sites (id),
    redeemed_by TEXT REFERENCES agents (id),
    identity_checked BOOLEAN,
    -- Hash of the scanning device's id: a retried scan from it is not a second pickup.
    redeemed_device TEXT
);
-- One live code per household and campaign; revoked ones stay for the record.
CREATE UNIQUE INDEX vouchers_live_household ON vouchers (campaign_id, household_hash)
    WHERE revoked_at IS NULL;
CREATE INDEX vouchers_campaign_redeemed ON vouchers (campaign_id, redeemed_at);
CREATE INDEX vouchers_citizen ON vouchers (citizen_id) WHERE citizen_id IS NOT NULL;

-- Scans that redeemed nothing, per distributor: the rate limit counts them and the
-- admin can read them. The code itself is not kept.
CREATE TABLE voucher_scan_failures (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    campaign_id TEXT REFERENCES voucher_campaigns (id),
    reason TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX voucher_scan_failures_agent ON voucher_scan_failures (agent_id, at);
