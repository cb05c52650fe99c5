-- Accounts: users, devices, access and refresh tokens, UIA sessions, registration tokens.
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    displayname   TEXT,
    avatar_url    TEXT,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ip TEXT,
    last_seen_ts BIGINT,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Only hashes of tokens are stored.
CREATE TABLE access_tokens (
    token_hash         TEXT PRIMARY KEY NOT NULL,
    user_id            TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    expires_ts         BIGINT,
    refresh_token_hash TEXT,
    used               BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts         BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash      TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    next_token_hash TEXT,
    created_ts      BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_by_next ON refresh_tokens (next_token_hash);

CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT,
    completed  TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY NOT NULL,
    uses_allowed BIGINT,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_ts    BIGINT,
    created_ts   BIGINT NOT NULL
);

CREATE TABLE server_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
