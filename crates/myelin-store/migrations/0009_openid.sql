-- OpenID tokens (`/user/{userId}/openid/request_token`): a third party (an integration
-- manager, a widget) checks one with this server's `/_matrix/federation/v1/openid/userinfo`
-- to learn who the user is. Stored hashed, like access tokens.
CREATE TABLE openid_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
