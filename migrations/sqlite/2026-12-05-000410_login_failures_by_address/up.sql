-- Failed logins per client address (a keyed hash of it: no address is stored), counted
-- in the database so that concurrent attempts and several instances share one count.
-- Each attempt is reserved before its password or code is checked.
CREATE TABLE login_failures_by_address (
    address_hash TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_started_at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_by_address_window ON login_failures_by_address (window_started_at);
