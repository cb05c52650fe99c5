//! What clients ask for while starting up, answered as the spec says rather than with 404s:
//! TURN servers, third-party protocols, 3PIDs, and the user directory.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult, ruma_wrapper::Authenticated};
use axum::{Json, Router, extract::State, routing::get};
use ruma::api::client::{
    thirdparty::get_protocols::v3 as get_protocols, user_directory::search_users::v3 as search_users,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .route("/_matrix/client/v3/voip/turnServer", get(turn_server))
        .route("/_matrix/client/r0/voip/turnServer", get(turn_server))
        .ruma::<get_protocols::Request, _, _>(protocols)
        .route("/_matrix/client/v3/account/3pid", get(threepids))
        .route("/_matrix/client/r0/account/3pid", get(threepids))
        .ruma::<search_users::Request, _, _>(user_directory)
}

/// `GET /_matrix/client/v3/voip/turnServer`: the configured TURN server with credentials for
/// this user, or an empty object when none is configured (which clients understand as "no
/// TURN"; ruma's response type requires the fields, so the JSON is built here).
async fn turn_server(State(services): State<Arc<Services>>, auth: Authenticated) -> Json<serde_json::Value> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Json(match turn_credentials(&services.config.turn, auth.identity.user_id.as_str(), now) {
        Some(turn) => turn,
        None => serde_json::json!({}),
    })
}

/// The `/voip/turnServer` answer for `user_id` at `now` (seconds), or None when no TURN server
/// or no credentials are configured. With a shared secret the credentials are coturn's REST
/// scheme: username "<expiry>:<user ID>", password base64(HMAC-SHA1(secret, username)).
fn turn_credentials(turn: &myelin_core::config::TurnConfig, user_id: &str, now: u64) -> Option<serde_json::Value> {
    use hmac::{KeyInit, Mac};
    if turn.uris.is_empty() {
        return None;
    }
    let (username, password) = match (&turn.shared_secret, &turn.username, &turn.password) {
        (Some(secret), _, _) => {
            let username = format!("{}:{user_id}", now + turn.user_lifetime_secs);
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(username.as_bytes());
            let mut password =
                ruma::serde::Base64::<ruma::serde::base64::Standard, _>::new(mac.finalize().into_bytes().to_vec())
                    .encode();
            // coturn decodes padded base64.
            while password.len() % 4 != 0 {
                password.push('=');
            }
            (username, password)
        }
        (None, Some(username), Some(password)) => (username.clone(), password.clone()),
        _ => return None,
    };
    Some(serde_json::json!({
        "username": username,
        "password": password,
        "uris": turn.uris,
        "ttl": turn.user_lifetime_secs,
    }))
}

/// `GET /_matrix/client/v3/thirdparty/protocols`: no bridges, no protocols.
async fn protocols(request: Ruma<get_protocols::Request>) -> ApiResult<get_protocols::Response> {
    request.identity()?;
    Ok(get_protocols::Response::new(Default::default()).into())
}

/// `GET /_matrix/client/v3/account/3pid`: third-party identifiers are not supported yet. The
/// empty list is spelled out (ruma would leave it out), as Synapse does and clients expect.
async fn threepids(_: Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "threepids": [] }))
}

/// `POST /_matrix/client/v3/user_directory/search`
async fn user_directory(
    State(services): State<Arc<Services>>,
    request: Ruma<search_users::Request>,
) -> ApiResult<search_users::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let limit = u64::from(b.limit) as usize;
    let (users, limited) = services.rooms.search_users(&identity.user_id, &b.search_term, limit).await?;
    let results = users
        .into_iter()
        .filter_map(|(user_id, name, avatar)| {
            let mut user = search_users::User::new(ruma::UserId::parse(user_id).ok()?);
            user.display_name = name;
            user.avatar_url = avatar.map(Into::into);
            Some(user)
        })
        .collect();
    Ok(search_users::Response::new(results, limited).into())
}

#[cfg(test)]
mod tests {
    use super::turn_credentials;
    use myelin_core::config::TurnConfig;

    #[test]
    fn turn_credentials_follow_coturn_rest_scheme() {
        let mut turn = TurnConfig { uris: vec!["turn:turn.example.org:3478".into()], ..TurnConfig::default() };
        assert!(turn_credentials(&turn, "@a:example.org", 0).is_none(), "no credentials configured");
        turn.shared_secret = Some("s3cret".into());
        turn.user_lifetime_secs = 100;
        let answer = turn_credentials(&turn, "@a:example.org", 1_000).unwrap();
        assert_eq!(answer["username"], "1100:@a:example.org");
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"s3cret",b"1100:@a:example.org",hashlib.sha1).digest()).decode())'
        assert_eq!(answer["password"], "Q3LrKGamQalHMihwCn/4sQyRXFI=");
        assert_eq!(answer["ttl"], 100);
        assert_eq!(answer["uris"][0], "turn:turn.example.org:3478");
        turn.uris.clear();
        assert!(turn_credentials(&turn, "@a:example.org", 0).is_none(), "no TURN server");
    }
}
