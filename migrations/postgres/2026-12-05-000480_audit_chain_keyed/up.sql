-- Which algorithm links each audit event to the previous one: 1, a plain SHA-256 (rows
-- written before the chain was keyed), 2, an HMAC-SHA-256 under a key only the master
-- key unlocks. Existing rows keep 1 until the first start with this version re-chains
-- them under the key (after checking their plain chain).
ALTER TABLE audit_events ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
