-- The content repository: one row per mxc:// URI; bytes live in the blob store by sha256.
CREATE TABLE media (
    origin             TEXT NOT NULL,
    media_id           TEXT NOT NULL,
    uploader           TEXT,
    content_type       TEXT,
    filename           TEXT,
    -- NULL until the bytes are there (an async upload still pending).
    size               BIGINT,
    sha256             TEXT,
    uploaded_ts        BIGINT,
    created_ts         BIGINT NOT NULL,
    -- A pending ID nobody uploaded to is forgotten after this instant.
    unused_expires_ts  BIGINT,
    -- Uploaded at or after the freeze: never served by the unauthenticated endpoints.
    authenticated_only BOOLEAN NOT NULL DEFAULT FALSE,
    quarantined        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX media_by_uploader ON media (uploader);
CREATE INDEX media_by_sha256 ON media (sha256);
