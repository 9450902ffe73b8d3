-- The failed scans that count towards a distributor's limit, alone in their own index:
-- the check before every scan then reads at most the limit's worth of rows, however
-- many "already collected" answers the distributor gave in the window. The query
-- repeats this WHERE clause word for word (with the pattern written out, not bound),
-- which is what lets both engines use the index.
CREATE INDEX voucher_scan_failures_limited ON voucher_scan_failures (agent_id, at)
    WHERE reason LIKE 'limited:%';
