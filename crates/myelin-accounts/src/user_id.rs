//! User ID rules for this server's own users.

use myelin_core::{Error, ErrorKind, Result};
use ruma::{OwnedUserId, ServerName, UserId};

/// Parses a localpart or a full user ID that must belong to `server_name`, as a login or
/// a UIA password stage gives it. Matching is case-insensitive on the localpart, as user IDs
/// are created lowercase.
pub fn parse_local_user_id(input: &str, server_name: &ServerName) -> Result<OwnedUserId> {
    let lowered = match input.strip_prefix('@') {
        Some(rest) => match rest.split_once(':') {
            Some((localpart, server)) => format!("@{}:{server}", localpart.to_lowercase()),
            None => input.to_owned(),
        },
        None => input.to_lowercase(),
    };
    let user_id = UserId::parse_with_server_name(lowered, server_name)
        .map_err(|e| Error::invalid_param(format!("Invalid user ID: {e}")))?;
    if user_id.server_name() != server_name {
        return Err(Error::invalid_param("User ID does not belong to this server"));
    }
    Ok(user_id)
}

/// Validates a requested localpart for a new account: the strict grammar (lowercase letters,
/// digits and `._=-/+`) and 255 bytes for the whole user ID.
pub fn new_user_id(localpart: &str, server_name: &ServerName) -> Result<OwnedUserId> {
    let invalid = |why: &str| {
        Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername, format!("Invalid username: {why}"))
    };
    if localpart.is_empty() {
        return Err(invalid("it is empty"));
    }
    if localpart.contains(':') || localpart.starts_with('@') {
        return Err(invalid("give only the localpart, without '@' or ':'"));
    }
    if localpart.starts_with('_') {
        // Reserved for application services' namespaces by convention, as Synapse does.
        return Err(invalid("usernames may not start with '_'"));
    }
    let user_id = UserId::parse_with_server_name(localpart, server_name).map_err(|e| invalid(&e.to_string()))?;
    user_id.validate_strict().map_err(|e| match e {
        ruma::IdParseError::MaximumLengthExceeded => invalid("the user ID would be longer than 255 bytes"),
        _ => invalid("only lowercase letters, digits and ._=-/+ are allowed"),
    })?;
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").unwrap()
    }

    #[test]
    fn new_user_ids() {
        assert_eq!(new_user_id("alice", server()).unwrap().as_str(), "@alice:example.org");
        assert!(new_user_id("a.b_c=d-e/f+g", server()).is_ok());
        for bad in ["", "Alice", "al ice", "@alice", "a:b", "_bridge", "é"] {
            let err = new_user_id(bad, server()).unwrap_err();
            assert_eq!(err.kind(), Some(&ErrorKind::InvalidUsername), "{bad}");
        }
        // 255 bytes in all is the limit: "@" + localpart + ":example.org" (12 bytes).
        assert!(new_user_id(&"a".repeat(242), server()).is_ok());
        assert!(new_user_id(&"a".repeat(243), server()).is_err());
    }

    #[test]
    fn login_identifiers() {
        assert_eq!(parse_local_user_id("Alice", server()).unwrap().as_str(), "@alice:example.org");
        assert_eq!(parse_local_user_id("@ALICE:example.org", server()).unwrap().as_str(), "@alice:example.org");
        assert!(parse_local_user_id("@alice:other.org", server()).is_err());
    }
}
