-- Federation transport: other servers' keys, this server's retired keys, and per-destination
-- backoff, so that a restart neither refetches every key nor hammers a server that is down.

-- The latest key document each server published (or a notary vouched for), as received,
-- signatures included: served again to servers that ask this one as a notary.
CREATE TABLE server_key_documents (
    server_name TEXT NOT NULL PRIMARY KEY,
    document TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);

-- Every verify key ever seen per server, so that signatures by a key the server has since
-- replaced still verify. expired_ts is set for keys known only as old_verify_keys.
CREATE TABLE server_verify_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    PRIMARY KEY (server_name, key_id)
);

-- This server's own retired signing keys (`myelin keys rotate`), published as old_verify_keys.
CREATE TABLE own_old_signing_keys (
    key_id TEXT NOT NULL PRIMARY KEY,
    public_key TEXT NOT NULL,
    expired_ts BIGINT NOT NULL
);

-- Destinations that failed recently: no request before retry_after_ts.
CREATE TABLE destination_backoff (
    destination TEXT NOT NULL PRIMARY KEY,
    failures BIGINT NOT NULL,
    retry_after_ts BIGINT NOT NULL,
    last_error TEXT NOT NULL
);
