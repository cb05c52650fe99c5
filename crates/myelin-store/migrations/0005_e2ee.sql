-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and the
-- signatures users upload for each other's keys, device-list changes, to-device messages and
-- server-side key backups. Key objects are stored as the JSON the client signed.

CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- "signed_curve25519:AAAAHg": algorithm and key ID, as uploaded.
    key_id    TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE INDEX one_time_keys_by_algorithm ON one_time_keys (user_id, device_id, algorithm);

-- One fallback key per device and algorithm; handed out (and marked used) when the one-time
-- keys run out, and kept until the device replaces it.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- "master", "self_signing", "user_signing".
CREATE TABLE cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, merged into the signed key when it is
-- queried. A signature by another user's user-signing key is shown to that user only.
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    -- A device ID or a cross-signing public key (unpadded base64).
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    -- "ed25519:<public key or device ID>"
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- A user's devices or cross-signing keys changed at a stream position.
CREATE TABLE device_list_changes (
    stream_ordering BIGINT PRIMARY KEY,
    user_id         TEXT NOT NULL
);
CREATE INDEX device_list_changes_by_user ON device_list_changes (user_id, stream_ordering);

CREATE TABLE to_device_messages (
    stream_ordering BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    sender          TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    content         TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_ordering)
);

-- A sender's transaction IDs, so a retried PUT /sendToDevice delivers nothing twice.
CREATE TABLE to_device_txns (
    sender     TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (sender, device_id, txn_id)
);

CREATE TABLE backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    -- Changes whenever the keys of the backup change.
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE backup_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
