//! Queries across two Myelin servers: profiles, room aliases, the public room directory,
//! device lists, device keys and one-time keys of another server's users.

use crate::{
    backend_tests,
    common::*,
    e2ee::{TestKey, claim, cross_signing_key, device_keys, one_time_key, query, upload, upload_signing},
    federation::{TestCa, federated},
    rooms::create_room,
};
use ruma::api::federation::device::get_devices::v1 as get_devices;
use serde_json::json;

backend_tests!(profiles_aliases_and_directory, keys_across_servers, openid_tokens);

async fn profiles_aliases_and_directory(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, _) = federated(backend, &ca, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id),
            Some(&alice.token),
            json!({"displayname": "Alice A"}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, profile) = b.get(&format!("/_matrix/client/v3/profile/{}", alice.user_id), Some(&bob.token)).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["displayname"], "Alice A");
    let (_, name) = b.get(&format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id), Some(&bob.token)).await;
    assert_eq!(name["displayname"], "Alice A");
    let unknown = b.get(&format!("/_matrix/client/v3/profile/@nobody:{a_name}"), Some(&bob.token)).await;
    assert_error(&unknown, 404, "M_NOT_FOUND");

    let room_id = create_room(
        &a,
        &alice,
        json!({"room_alias_name": "lobby", "preset": "public_chat", "visibility": "public", "name": "Lobby"}),
    )
    .await;
    let alias = format!("#lobby:{a_name}").replace('#', "%23");
    let (status, resolved) = b.get(&format!("/_matrix/client/v3/directory/room/{alias}"), Some(&bob.token)).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["room_id"], room_id);
    assert_eq!(resolved["servers"], json!([a_name]));
    let missing = b.get(&format!("/_matrix/client/v3/directory/room/%23nothing:{a_name}"), Some(&bob.token)).await;
    assert_error(&missing, 404, "M_NOT_FOUND");

    let (status, page) = b.get(&format!("/_matrix/client/v3/publicRooms?server={a_name}"), Some(&bob.token)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"][0]["room_id"], room_id, "{page}");
    assert_eq!(page["chunk"][0]["name"], "Lobby");
    let (status, page) = b
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={a_name}"),
            Some(&bob.token),
            json!({"filter": {"generic_search_term": "nomatch"}}),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"], json!([]));
}

async fn keys_across_servers(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, _) = federated(backend, &ca, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let key = TestKey::new(Some(&alice.device_id));
    let keys = device_keys(&alice, &key);
    let otk = one_time_key(&alice, &key);
    let (status, body) =
        upload(&a, &alice, json!({"device_keys": keys, "one_time_keys": {"signed_curve25519:AAAA": otk}})).await;
    assert_eq!(status, 200, "{body}");
    let master = TestKey::new(None);
    let (status, body) =
        upload_signing(&a, &alice, json!({"master_key": cross_signing_key(&alice, &master, "master")})).await;
    assert_eq!(status, 200, "{body}");

    // Bob on B asks for Alice's keys: over federation, in the answer as if local.
    let answer = query(&b, &bob, &alice).await;
    assert_eq!(answer["device_keys"][&alice.user_id][&alice.device_id]["keys"], keys["keys"], "{answer}");
    assert!(answer["master_keys"][&alice.user_id]["keys"].is_object(), "{answer}");
    assert!(answer["failures"].as_object().is_none_or(|f| f.is_empty()), "{answer}");

    // Her one-time key goes to exactly one claimer.
    let claimed = claim(&b, &bob, &alice).await;
    assert_eq!(claimed["signed_curve25519:AAAA"]["key"], otk["key"], "{claimed}");
    assert_eq!(claim(&b, &bob, &alice).await, serde_json::Value::Null);

    // Her device list as other servers see it.
    let devices = b
        .services()
        .federation
        .client
        .send(
            a_name.as_str().try_into().unwrap(),
            get_devices::Request::new(alice.user_id.as_str().try_into().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(devices.devices.len(), 1);
    assert_eq!(devices.devices[0].device_id.as_str(), alice.device_id);
    assert!(u64::from(devices.stream_id) > 0);
    assert!(devices.master_key.is_some());

    // A server that cannot be reached is a failure, the rest is answered.
    let (status, answer) = b
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob.token),
            json!({"device_keys": {&alice.user_id: [], "@carol:localhost:1": []}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["device_keys"][&alice.user_id].is_object(), "{answer}");
    assert!(answer["failures"]["localhost:1"]["status"].is_number(), "{answer}");
}

/// An OpenID token proves to a third party, through the federation API, who the user is.
async fn openid_tokens(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = a.register("bob").await;
    let path = format!("/_matrix/client/v3/user/{}/openid/request_token", alice.user_id);
    let (status, token) = a.post(&path, Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], a_name);
    assert_eq!(token["expires_in"], 3600);
    assert_error(&a.post(&path, Some(&bob.token), json!({})).await, 403, "M_FORBIDDEN");

    let http = ca.client();
    let userinfo = |token: &str| format!("https://{a_name}/_matrix/federation/v1/openid/userinfo?access_token={token}");
    let answer = http.get(userinfo(token["access_token"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["sub"], alice.user_id);
    let answer = http.get(userinfo("not-a-token")).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["errcode"], "M_UNKNOWN_TOKEN");
}
