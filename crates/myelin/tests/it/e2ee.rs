//! End-to-end encryption: device and one-time keys, claims (also concurrent), to-device
//! messages, device-list tracking, cross-signing (MSC3967's first upload without UIA),
//! signatures and key backup. Keys are really signed (ed25519), as clients sign them.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, join},
    sync::sync,
};
use ruma::{
    CanonicalJsonValue,
    serde::Base64,
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};

backend_tests!(
    upload_query_and_claim,
    bad_keys_are_refused_and_nothing_is_lost,
    concurrent_claims_of_the_last_key,
    to_device_messages,
    device_lists_follow_shared_rooms,
    cross_signing_first_upload_and_signatures,
    key_backup,
);

/// An ed25519 key pair with the version (key ID) it signs with.
pub struct TestKey {
    pair: Ed25519KeyPair,
    public: String,
}

impl TestKey {
    /// A key whose ID is `id`, or its own public key (cross-signing keys) when None.
    pub fn new(id: Option<&str>) -> Self {
        let der = Ed25519KeyPair::generate();
        let probe = Ed25519KeyPair::from_der(&der, String::new()).unwrap();
        let public = Base64::<ruma::serde::base64::Standard>::new(probe.public_key().to_vec()).encode();
        let pair = Ed25519KeyPair::from_der(&der, id.unwrap_or(&public).to_owned()).unwrap();
        TestKey { pair, public }
    }

    /// `object` signed by `user` with this key.
    fn sign(&self, user: &str, object: Value) -> Value {
        let CanonicalJsonValue::Object(mut object) = CanonicalJsonValue::try_from(object).unwrap() else {
            panic!("not an object")
        };
        sign_json(user, &self.pair, &mut object).unwrap();
        serde_json::to_value(object).unwrap()
    }
}

fn random_key() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    Base64::<ruma::serde::base64::Standard>::new(bytes).encode()
}

fn rand_byte() -> u8 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let x = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 56) as u8
}

/// `text` as unpadded base64, as ciphertexts travel.
fn b64(text: &str) -> String {
    Base64::<ruma::serde::base64::Standard>::new(text.as_bytes().to_vec()).encode()
}

pub fn device_keys(user: &User, key: &TestKey) -> Value {
    key.sign(
        &user.user_id,
        json!({
            "user_id": user.user_id,
            "device_id": user.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", user.device_id): random_key(),
                format!("ed25519:{}", user.device_id): key.public,
            },
        }),
    )
}

pub fn one_time_key(user: &User, key: &TestKey) -> Value {
    key.sign(&user.user_id, json!({ "key": random_key() }))
}

pub fn cross_signing_key(user: &User, key: &TestKey, usage: &str) -> Value {
    json!({
        "user_id": user.user_id,
        "usage": [usage],
        "keys": { format!("ed25519:{}", key.public): key.public },
    })
}

pub async fn upload(server: &TestServer, user: &User, body: Value) -> (reqwest::StatusCode, Value) {
    server.post("/_matrix/client/v3/keys/upload", Some(&user.token), body).await
}

pub async fn claim(server: &TestServer, by: &User, of: &User) -> Value {
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(&by.token),
            json!({ "one_time_keys": { &of.user_id: { &of.device_id: "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["one_time_keys"][&of.user_id][&of.device_id].clone()
}

pub async fn query(server: &TestServer, by: &User, of: &User) -> Value {
    let (status, body) = server
        .post("/_matrix/client/v3/keys/query", Some(&by.token), json!({ "device_keys": { &of.user_id: [] } }))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn upload_query_and_claim(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let key = TestKey::new(Some(&alice.device_id));
    let keys = device_keys(&alice, &key);
    let otks: serde_json::Map<String, Value> =
        (1..=3).map(|i| (format!("signed_curve25519:AAAA{i}"), one_time_key(&alice, &key))).collect();
    let fallback = one_time_key(&alice, &key);
    let (status, body) = upload(
        &server,
        &alice,
        json!({
            "device_keys": keys,
            "one_time_keys": otks,
            "fallback_keys": { "signed_curve25519:FB1": fallback },
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 3);
    // Uploading the same keys again changes nothing.
    let again = upload(&server, &alice, json!({ "device_keys": keys, "one_time_keys": otks })).await;
    assert_eq!(again.1["one_time_key_counts"]["signed_curve25519"], 3, "{}", again.1);

    let synced = sync(&server, &alice, "").await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 3, "{synced}");
    assert_eq!(synced["device_unused_fallback_key_types"], json!(["signed_curve25519"]));

    // Bob sees alice's device keys as signed, with the device's display name.
    let rename = format!("/_matrix/client/v3/devices/{}", enc(&alice.device_id));
    assert_eq!(server.put(&rename, Some(&alice.token), json!({ "display_name": "Alice's phone" })).await.0, 200);
    let found = query(&server, &bob, &alice).await;
    let device = &found["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(device["keys"], keys["keys"], "{found}");
    assert_eq!(device["signatures"], keys["signatures"]);
    assert_eq!(device["unsigned"]["device_display_name"], "Alice's phone");

    // Three claims get the three one-time keys, each once; the fourth the fallback key.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let claimed = claim(&server, &bob, &alice).await;
        let (id, value) = claimed.as_object().unwrap().iter().next().unwrap();
        assert!(otks.contains_key(id), "{claimed}");
        assert_eq!(&otks[id], value);
        assert!(!seen.contains(id), "{id} claimed twice");
        seen.push(id.clone());
    }
    let claimed = claim(&server, &bob, &alice).await;
    assert_eq!(claimed["signed_curve25519:FB1"], fallback, "{claimed}");
    let synced = sync(&server, &alice, "").await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(synced["device_unused_fallback_key_types"], json!([]));
    // The fallback key stays, for the next claimer too.
    assert_eq!(claim(&server, &bob, &alice).await["signed_curve25519:FB1"], fallback);

    // Deleting the device removes its keys.
    let path = format!("/_matrix/client/v3/devices/{}", enc(&alice.device_id));
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": alice.password } });
    let (status, body) = server.request(reqwest::Method::DELETE, &path, Some(&alice.token), Some(auth)).await;
    assert_eq!(status, 200, "{body}");
    let found = query(&server, &bob, &alice).await;
    assert_eq!(found["device_keys"][&alice.user_id], json!({}), "{found}");
}

async fn bad_keys_are_refused_and_nothing_is_lost(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let key = TestKey::new(Some(&alice.device_id));
    let good = device_keys(&alice, &key);
    let otk = one_time_key(&alice, &key);
    let (status, body) =
        upload(&server, &alice, json!({ "device_keys": good, "one_time_keys": { "signed_curve25519:A1": otk } })).await;
    assert_eq!(status, 200, "{body}");

    // Keys of another user, of another device, unsigned, wrongly signed, badly encoded.
    let mut other_user = good.clone();
    other_user["user_id"] = json!(bob.user_id);
    let mut other_device = good.clone();
    other_device["device_id"] = json!("OTHER");
    let mut unsigned = good.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let stranger = TestKey::new(Some(&alice.device_id));
    let mut wrongly_signed = good.clone();
    wrongly_signed["signatures"] = stranger.sign(&alice.user_id, good.clone())["signatures"].clone();
    let bad_base64 = key.sign(
        &alice.user_id,
        json!({
            "user_id": alice.user_id, "device_id": alice.device_id, "algorithms": [],
            "keys": { format!("ed25519:{}", alice.device_id): key.public, format!("curve25519:{}", alice.device_id): "not base64!" },
        }),
    );
    for bad in [other_user, other_device, unsigned, wrongly_signed, bad_base64] {
        let result = upload(&server, &alice, json!({ "device_keys": bad })).await;
        assert_eq!(result.0, 400, "{bad}: {}", result.1);
        assert!(
            result.1["errcode"].as_str().is_some_and(|e| e == "M_INVALID_PARAM" || e == "M_BAD_JSON"),
            "{}",
            result.1
        );
    }
    // One-time keys: unsigned, signed by another key, reusing an ID with other content.
    for (id, bad) in [
        ("signed_curve25519:B1", json!({ "key": random_key() })),
        ("signed_curve25519:B2", stranger.sign(&alice.user_id, json!({ "key": random_key() }))),
        ("signed_curve25519:A1", one_time_key(&alice, &key)),
        ("signed_curve25519:B3", json!("not an object")),
    ] {
        let result = upload(&server, &alice, json!({ "one_time_keys": { id: bad } })).await;
        assert_eq!(result.0, 400, "{id}: {}", result.1);
    }
    let (status, body) = upload(&server, &alice, json!({ "one_time_keys": { "nocolon": otk } })).await;
    assert_eq!(status, 400, "{body}");

    // What was stored before is all still there.
    let found = query(&server, &bob, &alice).await;
    assert_eq!(found["device_keys"][&alice.user_id][&alice.device_id]["keys"], good["keys"]);
    let synced = sync(&server, &alice, "").await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 1);
}

async fn concurrent_claims_of_the_last_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let key = TestKey::new(Some(&alice.device_id));
    let (status, _) = upload(
        &server,
        &alice,
        json!({ "device_keys": device_keys(&alice, &key), "one_time_keys": { "signed_curve25519:LAST": one_time_key(&alice, &key) } }),
    )
    .await;
    assert_eq!(status, 200);
    let mut claimers = Vec::new();
    for i in 0..6 {
        claimers.push(server.register(&format!("claimer{i}")).await);
    }
    let claims = claimers.iter().map(|c| claim(&server, c, &alice));
    let results = futures_util::future::join_all(claims).await;
    let winners = results.iter().filter(|r| r.get("signed_curve25519:LAST").is_some()).count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(results.iter().all(|r| r.as_object().is_none_or(|o| o.len() <= 1)));
}

async fn to_device_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (_, second) = server.login("bob", &bob.password, json!({})).await;
    let second_device = second["device_id"].as_str().unwrap().to_owned();
    let second_token = second["access_token"].as_str().unwrap().to_owned();
    let first = sync(&server, &bob, "").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // A long-poll wakes for a to-device message.
    let send = |txn: &'static str, device: String| {
        let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
        let body = json!({ "messages": { &bob.user_id: { device: { "txn": txn } } } });
        let server = &server;
        let token = alice.token.clone();
        async move { server.put(&path, Some(&token), body).await }
    };
    let long_poll = format!("since={since}&timeout=10000");
    let waiting = sync(&server, &bob, &long_poll);
    let sender = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        assert_eq!(send("t1", bob.device_id.clone()).await.0, 200);
        started
    };
    let (delivered, started) = tokio::join!(waiting, sender);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let events = delivered["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{delivered}");
    assert_eq!(events[0], json!({ "sender": alice.user_id, "type": "m.test", "content": { "txn": "t1" } }));

    // The same transaction again is not delivered again; `*` reaches every device.
    assert_eq!(send("t1", bob.device_id.clone()).await.0, 200);
    assert_eq!(send("t2", "*".to_owned()).await.0, 200);
    let next = delivered["next_batch"].as_str().unwrap();
    let later = sync(&server, &bob, &format!("since={next}")).await;
    let events = later["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{later}");
    assert_eq!(events[0]["content"]["txn"], "t2");
    // Syncing on from there acknowledges it: not delivered a second time.
    let next = later["next_batch"].as_str().unwrap();
    let after = sync(&server, &bob, &format!("since={next}")).await;
    assert!(after["to_device"]["events"].as_array().is_none_or(Vec::is_empty), "{after}");
    // A sync that repeats an old token gets the unacknowledged messages again, never fewer.
    let path = format!("/_matrix/client/v3/sync?since={since}");
    let (_, second_sync) = server.get(&path, Some(&second_token)).await;
    let events = second_sync["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{second_sync}");
    assert_eq!(events[0]["content"]["txn"], "t2");

    // Deleting a device drops its pending messages; a message for it afterwards goes nowhere.
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": bob.password } });
    let path = format!("/_matrix/client/v3/devices/{}", enc(&second_device));
    assert_eq!(server.request(reqwest::Method::DELETE, &path, Some(&bob.token), Some(auth)).await.0, 200);
    // A new login with the same device ID starts with nothing waiting.
    let (status, again) = server.login("bob", &bob.password, json!({ "device_id": second_device })).await;
    assert_eq!(status, 200, "{again}");
    let (_, fresh) = server.get("/_matrix/client/v3/sync", again["access_token"].as_str()).await;
    assert!(fresh["to_device"]["events"].as_array().is_none_or(Vec::is_empty), "{fresh}");

    // Bad input: content that is not an object.
    let path = "/_matrix/client/v3/sendToDevice/m.test/t3";
    let result = server.put(path, Some(&alice.token), json!({ "messages": { &bob.user_id: { "*": "text" } } })).await;
    assert_eq!(result.0, 400, "{}", result.1);
}

async fn device_lists_follow_shared_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let start = sync(&server, &bob, "").await["next_batch"].as_str().unwrap().to_owned();

    // Alice uploads keys: bob (sharing a room) is told, carol is not.
    let carol_start = sync(&server, &carol, "").await["next_batch"].as_str().unwrap().to_owned();
    let key = TestKey::new(Some(&alice.device_id));
    assert_eq!(upload(&server, &alice, json!({ "device_keys": device_keys(&alice, &key) })).await.0, 200);
    let delta = sync(&server, &bob, &format!("since={start}")).await;
    assert_eq!(delta["device_lists"]["changed"], json!([alice.user_id]), "{delta}");
    let carols = sync(&server, &carol, &format!("since={carol_start}")).await;
    assert!(carols["device_lists"]["changed"].as_array().is_none_or(Vec::is_empty), "{carols}");
    let next = delta["next_batch"].as_str().unwrap().to_owned();
    let (status, changes) =
        server.get(&format!("/_matrix/client/v3/keys/changes?from={start}&to={next}"), Some(&bob.token)).await;
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["changed"], json!([alice.user_id]));

    // Carol joins: bob should track her; then alice leaves: bob may stop tracking her.
    join(&server, &carol, &room).await;
    let delta = sync(&server, &bob, &format!("since={next}")).await;
    assert!(delta["device_lists"]["changed"].as_array().unwrap().contains(&json!(carol.user_id)), "{delta}");
    let next = delta["next_batch"].as_str().unwrap().to_owned();
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", enc(&room));
    assert_eq!(server.post(&leave, Some(&alice.token), json!({})).await.0, 200);
    let delta = sync(&server, &bob, &format!("since={next}")).await;
    assert_eq!(delta["device_lists"]["left"], json!([alice.user_id]), "{delta}");

    let bad = server.get("/_matrix/client/v3/keys/changes?from=nonsense&to=s1", Some(&bob.token)).await;
    assert_error(&bad, 400, "M_INVALID_PARAM");
}

pub async fn upload_signing(server: &TestServer, user: &User, body: Value) -> (reqwest::StatusCode, Value) {
    server.post("/_matrix/client/v3/keys/device_signing/upload", Some(&user.token), body).await
}

async fn cross_signing_first_upload_and_signatures(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let device_key = TestKey::new(Some(&alice.device_id));
    let alice_device = device_keys(&alice, &device_key);
    assert_eq!(upload(&server, &alice, json!({ "device_keys": alice_device })).await.0, 200);

    let (master, ssk, usk) = (TestKey::new(None), TestKey::new(None), TestKey::new(None));
    let master_key = cross_signing_key(&alice, &master, "master");
    let ssk_key = master.sign(&alice.user_id, cross_signing_key(&alice, &ssk, "self_signing"));
    let usk_key = master.sign(&alice.user_id, cross_signing_key(&alice, &usk, "user_signing"));
    let keys = json!({ "master_key": master_key, "self_signing_key": ssk_key, "user_signing_key": usk_key });

    // A self-signing key the master key did not sign is refused, and stores nothing.
    let unsigned_ssk =
        json!({ "master_key": master_key, "self_signing_key": cross_signing_key(&alice, &ssk, "self_signing") });
    assert_eq!(upload_signing(&server, &alice, unsigned_ssk).await.0, 400);
    // The first upload needs no UIA (MSC3967); repeating it neither.
    let (status, body) = upload_signing(&server, &alice, keys.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upload_signing(&server, &alice, keys.clone()).await.0, 200);
    // Replacing them needs UIA.
    let other = TestKey::new(None);
    let replace = json!({ "master_key": cross_signing_key(&alice, &other, "master") });
    let (status, body) = upload_signing(&server, &alice, replace.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["session"].is_string(), "{body}");

    // Everyone sees the master and self-signing keys; only alice her user-signing key.
    let seen_by_bob = query(&server, &bob, &alice).await;
    assert_eq!(seen_by_bob["master_keys"][&alice.user_id]["keys"], master_key["keys"], "{seen_by_bob}");
    assert_eq!(seen_by_bob["self_signing_keys"][&alice.user_id]["keys"], ssk_key["keys"]);
    assert!(seen_by_bob["user_signing_keys"].get(&alice.user_id).is_none(), "{seen_by_bob}");
    let seen_by_alice = query(&server, &alice, &alice).await;
    assert_eq!(seen_by_alice["user_signing_keys"][&alice.user_id]["keys"], usk_key["keys"]);

    // Alice signs her device with her self-signing key: everyone sees the signature.
    let signed_device = ssk.sign(&alice.user_id, alice_device.clone());
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&alice.token),
            json!({ &alice.user_id: { &alice.device_id: signed_device } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"].as_object().is_none_or(|f| f.is_empty()), "{body}");
    let seen = query(&server, &bob, &alice).await;
    let signature = format!("ed25519:{}", ssk.public);
    assert!(
        seen["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id][&signature].is_string(),
        "{seen}"
    );

    // Bob signs alice's master key with his user-signing key: only bob sees that.
    let (bob_master, bob_usk) = (TestKey::new(None), TestKey::new(None));
    let bob_keys = json!({
        "master_key": cross_signing_key(&bob, &bob_master, "master"),
        "user_signing_key": bob_master.sign(&bob.user_id, cross_signing_key(&bob, &bob_usk, "user_signing")),
    });
    assert_eq!(upload_signing(&server, &bob, bob_keys).await.0, 200);
    let signed_master = bob_usk.sign(&bob.user_id, seen["master_keys"][&alice.user_id].clone());
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&bob.token),
            json!({ &alice.user_id: { &master.public: signed_master } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"].as_object().is_none_or(|f| f.is_empty()), "{body}");
    let bob_sees = query(&server, &bob, &alice).await;
    assert!(bob_sees["master_keys"][&alice.user_id]["signatures"][&bob.user_id].is_object(), "{bob_sees}");
    let alice_sees = query(&server, &alice, &alice).await;
    assert!(alice_sees["master_keys"][&alice.user_id]["signatures"].get(&bob.user_id).is_none(), "{alice_sees}");

    // A signature that does not verify is reported per key, and the rest still lands.
    let mut forged = signed_device.clone();
    forged["signatures"][&alice.user_id][&signature] = json!(random_key());
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&alice.token),
            json!({ &alice.user_id: { &alice.device_id: forged, "NOSUCHDEVICE": signed_device } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE", "{body}");
    assert!(body["failures"][&alice.user_id]["NOSUCHDEVICE"]["errcode"].is_string(), "{body}");

    // With the password, the keys may be replaced.
    let session = upload_signing(&server, &alice, replace.clone()).await.1["session"].as_str().unwrap().to_owned();
    let mut with_auth = replace.clone();
    with_auth["auth"] = json!({
        "type": "m.login.password", "session": session,
        "identifier": { "type": "m.id.user", "user": "alice" }, "password": alice.password,
    });
    let (status, body) = upload_signing(&server, &alice, with_auth).await;
    assert_eq!(status, 200, "{body}");
    let seen = query(&server, &bob, &alice).await;
    assert_eq!(seen["master_keys"][&alice.user_id]["keys"], replace["master_key"]["keys"]);
}

async fn key_backup(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let t = Some(alice.token.as_str());
    let (status, body) = server.get("/_matrix/client/v3/room_keys/version", t).await;
    assert_error(&(status, body), 404, "M_NOT_FOUND");
    let algorithm = json!({
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": { "public_key": random_key(), "signatures": {} },
    });
    let (status, body) = server.post("/_matrix/client/v3/room_keys/version", t, algorithm.clone()).await;
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_str().unwrap().to_owned();
    let (_, latest) = server.get("/_matrix/client/v3/room_keys/version", t).await;
    assert_eq!(latest["version"], version.as_str());
    assert_eq!(latest["count"], 0);
    assert_eq!(latest["auth_data"], algorithm["auth_data"]);
    let etag0 = latest["etag"].as_str().unwrap().to_owned();

    let key = |index: u64, forwarded: u64, verified: bool, tag: &str| {
        json!({
            "first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": { "ephemeral": random_key(), "ciphertext": b64(tag), "mac": b64("mac") },
        })
    };
    let room = "!room:localhost";
    let session_path = format!("/_matrix/client/v3/room_keys/keys/{}/s1?version={version}", enc(room));
    let (status, body) = server.put(&session_path, t, key(5, 1, false, "first")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    assert_ne!(body["etag"], etag0.as_str());
    // A worse key (higher index) does not replace it; a verified one does, then a lower index.
    server.put(&session_path, t, key(9, 0, false, "worse")).await;
    assert_eq!(server.get(&session_path, t).await.1["session_data"]["ciphertext"], b64("first"));
    server.put(&session_path, t, key(7, 3, true, "verified")).await;
    assert_eq!(server.get(&session_path, t).await.1["session_data"]["ciphertext"], b64("verified"));
    server.put(&session_path, t, key(1, 9, false, "unverified lower")).await;
    assert_eq!(server.get(&session_path, t).await.1["session_data"]["ciphertext"], b64("verified"));
    server.put(&session_path, t, key(7, 1, true, "fewer forwards")).await;
    assert_eq!(server.get(&session_path, t).await.1["session_data"]["ciphertext"], b64("fewer forwards"));

    // Bulk upload; reading all keys and one room's.
    let all = format!("/_matrix/client/v3/room_keys/keys?version={version}");
    let bulk = json!({ "rooms": { room: { "sessions": { "s2": key(0, 0, false, "two") } }, "!other:localhost": { "sessions": { "s3": key(0, 0, false, "three") } } } });
    let (status, body) = server.put(&all, t, bulk).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 3);
    let (_, everything) = server.get(&all, t).await;
    assert_eq!(everything["rooms"][room]["sessions"].as_object().unwrap().len(), 2, "{everything}");
    let room_path = format!("/_matrix/client/v3/room_keys/keys/{}?version={version}", enc(room));
    assert_eq!(server.get(&room_path, t).await.1["sessions"]["s2"]["session_data"]["ciphertext"], b64("two"));

    // One room's keys at once, then that room's keys deleted, then all keys deleted.
    let (status, body) = server.put(&room_path, t, json!({ "sessions": { "s4": key(0, 0, false, "four") } })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 4);
    let other_room = format!("/_matrix/client/v3/room_keys/keys/{}?version={version}", enc("!other:localhost"));
    let (status, body) = server.request(reqwest::Method::DELETE, &other_room, t, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 3);
    assert_eq!(server.get(&other_room, t).await.1["sessions"], json!({}));
    let (status, body) = server.request(reqwest::Method::DELETE, &all, t, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 0);
    assert_eq!(server.get(&all, t).await.1["rooms"], json!({}));
    // Put back for what follows.
    server.put(&session_path, t, key(7, 1, true, "fewer forwards")).await;
    server.put(&all, t, json!({ "rooms": { room: { "sessions": { "s2": key(0, 0, false, "two") } }, "!other:localhost": { "sessions": { "s3": key(0, 0, false, "three") } } } })).await;

    // Writing to an old version: 403 naming the current one.
    let (_, newer) = server.post("/_matrix/client/v3/room_keys/version", t, algorithm.clone()).await;
    let current = newer["version"].as_str().unwrap().to_owned();
    let result = server.put(&session_path, t, key(0, 0, true, "late")).await;
    assert_error(&result, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(result.1["current_version"], current.as_str());
    // The algorithm of a version cannot change; auth data can.
    let mut changed = algorithm.clone();
    changed["algorithm"] = json!("org.example.other");
    let update = format!("/_matrix/client/v3/room_keys/version/{version}");
    assert_eq!(server.put(&update, t, changed).await.0, 400);
    let mut new_auth = algorithm.clone();
    new_auth["auth_data"]["public_key"] = json!(random_key());
    assert_eq!(server.put(&update, t, new_auth.clone()).await.0, 200);
    assert_eq!(server.get(&update, t).await.1["auth_data"], new_auth["auth_data"]);

    // Deleting one session, then the version with its keys.
    let (status, body) = server.request(reqwest::Method::DELETE, &session_path, t, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 2);
    assert_error(&server.get(&session_path, t).await, 404, "M_NOT_FOUND");
    assert_eq!(server.request(reqwest::Method::DELETE, &update, t, None).await.0, 200);
    assert_error(&server.get(&update, t).await, 404, "M_NOT_FOUND");
    assert_error(&server.get(&all, t).await, 404, "M_NOT_FOUND");
    // Other users' versions do not exist for alice.
    let bob = server.register("bob").await;
    let bobs = format!("/_matrix/client/v3/room_keys/version/{current}");
    assert_error(&server.get(&bobs, Some(&bob.token)).await, 404, "M_NOT_FOUND");
}
