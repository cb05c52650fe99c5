//! Room features beyond the basics: `/context`, relations and threads with their aggregations,
//! the public room directory, knocking, restricted joins and room upgrades.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, invite, join, send_text},
};
use serde_json::{Value, json};

backend_tests!(
    context,
    relations_threads_and_aggregations,
    public_room_directory,
    knocking,
    restricted_joins,
    upgrades
);

async fn send(server: &TestServer, user: &User, room: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room));
    let (status, answer) = server.put(&path, Some(&user.token), content).await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

async fn context(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({ "name": "ctx" })).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(send_text(&server, &alice, &room, &format!("c{i}"), &format!("m{i}")).await);
    }
    let path = format!("/_matrix/client/v3/rooms/{}/context/{}?limit=4", enc(&room), enc(&ids[4]));
    let (status, context) = server.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["event"]["content"]["body"], "m4");
    let bodies = |key: &str| -> Vec<String> {
        context[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["content"]["body"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(bodies("events_before"), ["m3", "m2"]);
    assert_eq!(bodies("events_after"), ["m5", "m6"]);
    assert!(context["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.name"));
    // The tokens continue the timeline on both sides.
    let start = context["start"].as_str().unwrap();
    let (_, before) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1&from={start}", enc(&room)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(before["chunk"][0]["content"]["body"], "m1");
    let end = context["end"].as_str().unwrap();
    let (_, after) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1&from={end}", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(after["chunk"][0]["content"]["body"], "m7");
    let eve = server.register("eve").await;
    assert_error(&server.get(&path, Some(&eve.token)).await, 404, "M_NOT_FOUND");
}

async fn relations_threads_and_aggregations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let root = send_text(&server, &alice, &room, "root", "thread root").await;
    let thread = |body: &str| json!({ "msgtype": "m.text", "body": body, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
    let reply1 = send(&server, &bob, &room, "t1", thread("first reply")).await;
    let reply2 = send(&server, &alice, &room, "t2", thread("second reply")).await;
    // An edit of the root by alice, and one by bob that must not count.
    let edit = |body: &str| {
        json!({ "msgtype": "m.text", "body": format!("* {body}"), "m.new_content": { "msgtype": "m.text", "body": body },
                "m.relates_to": { "rel_type": "m.replace", "event_id": root } })
    };
    send(&server, &alice, &room, "e1", edit("edited root")).await;
    send(&server, &bob, &room, "e2", edit("bob's hijack")).await;
    let reference = send(
        &server,
        &bob,
        &room,
        "r1",
        json!({ "msgtype": "m.text", "body": "see above", "m.relates_to": { "rel_type": "m.reference", "event_id": root } }),
    )
    .await;
    // A reaction to a thread reply: found with recurse.
    let reaction = format!("/_matrix/client/v3/rooms/{}/send/m.reaction/x1", enc(&room));
    let (status, _) = server
        .put(
            &reaction,
            Some(&alice.token),
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": reply1, "key": "👍" } }),
        )
        .await;
    assert_eq!(status, 200);

    let (_, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&root)), Some(&bob.token)).await;
    let relations = &event["unsigned"]["m.relations"];
    assert_eq!(relations["m.thread"]["count"], 2, "{event}");
    assert_eq!(relations["m.thread"]["latest_event"]["event_id"], reply2);
    assert_eq!(relations["m.thread"]["current_user_participated"], true);
    assert_eq!(relations["m.replace"]["content"]["m.new_content"]["body"], "edited root");
    assert_eq!(relations["m.reference"]["chunk"], json!([{ "event_id": reference }]));

    let base = format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(&room), enc(&root));
    let (status, all) = server.get(&base, Some(&bob.token)).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["chunk"].as_array().unwrap().len(), 5);
    let (_, threads_only) = server.get(&format!("{base}/m.thread"), Some(&bob.token)).await;
    let ids: Vec<&str> =
        threads_only["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [reply2.as_str(), reply1.as_str()], "newest first");
    let (_, typed) = server.get(&format!("{base}/m.thread/m.room.message?dir=f&limit=1"), Some(&bob.token)).await;
    assert_eq!(typed["chunk"][0]["event_id"], reply1);
    let next = typed["next_batch"].as_str().unwrap();
    let (_, page2) =
        server.get(&format!("{base}/m.thread/m.room.message?dir=f&limit=1&from={next}"), Some(&bob.token)).await;
    assert_eq!(page2["chunk"][0]["event_id"], reply2);
    let (_, recursed) = server.get(&format!("{base}?recurse=true"), Some(&bob.token)).await;
    assert_eq!(recursed["chunk"].as_array().unwrap().len(), 6, "{recursed}");
    assert!(recursed["recursion_depth"].as_u64().unwrap() <= 3);

    let (status, threads) =
        server.get(&format!("/_matrix/client/v1/rooms/{}/threads", enc(&room)), Some(&bob.token)).await;
    assert_eq!(status, 200, "{threads}");
    assert_eq!(threads["chunk"][0]["event_id"], root);
    let carol = server.register("carol").await;
    join(&server, &carol, &room).await;
    let (_, mine) = server
        .get(&format!("/_matrix/client/v1/rooms/{}/threads?include=participated", enc(&room)), Some(&carol.token))
        .await;
    assert_eq!(mine["chunk"], json!([]));
    // A thread may not hang off a thread reply.
    let bad = json!({ "body": "x", "m.relates_to": { "rel_type": "m.thread", "event_id": reply1 } });
    let (status, _) = server
        .put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/bad", enc(&room)), Some(&bob.token), bad)
        .await;
    assert_eq!(status, 400);
}

async fn public_room_directory(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let public = create_room(
        &server,
        &alice,
        json!({ "visibility": "public", "preset": "public_chat", "name": "Rust Lovers", "topic": "crabs", "room_alias_name": "rust" }),
    )
    .await;
    let other =
        create_room(&server, &alice, json!({ "visibility": "public", "preset": "public_chat", "name": "Gardening" }))
            .await;
    let private = create_room(&server, &alice, json!({ "name": "Secret" })).await;
    join(&server, &bob, &public).await;

    let (status, list) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total_room_count_estimate"], 2);
    let first = &list["chunk"][0];
    assert_eq!(first["room_id"], public, "largest first");
    assert_eq!(first["name"], "Rust Lovers");
    assert_eq!(first["topic"], "crabs");
    assert_eq!(first["canonical_alias"], "#rust:localhost");
    assert_eq!(first["num_joined_members"], 2);
    // `public` is the spec's default for join_rule, which ruma leaves out.
    assert!(first.get("join_rule").is_none_or(|rule| rule == "public"), "{first}");
    let (_, page) = server.get("/_matrix/client/v3/publicRooms?limit=1", None).await;
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1);
    let next = page["next_batch"].as_str().unwrap();
    let (_, page2) = server.get(&format!("/_matrix/client/v3/publicRooms?limit=1&since={next}"), None).await;
    assert_eq!(page2["chunk"][0]["room_id"], other);
    let (_, found) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&bob.token),
            json!({ "filter": { "generic_search_term": "garden" } }),
        )
        .await;
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(found["chunk"][0]["room_id"], other);

    // Visibility: bob (power 0) may not publish; alice publishes and hides.
    let visibility = format!("/_matrix/client/v3/directory/list/room/{}", enc(&private));
    assert_eq!(server.get(&visibility, None).await.1["visibility"], "private");
    invite(&server, &alice, &private, &bob).await;
    join(&server, &bob, &private).await;
    assert_error(
        &server.put(&visibility, Some(&bob.token), json!({ "visibility": "public" })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(server.put(&visibility, Some(&alice.token), json!({ "visibility": "public" })).await.0, 200);
    assert_eq!(server.get(&visibility, None).await.1["visibility"], "public");
    assert_eq!(server.get("/_matrix/client/v3/publicRooms", None).await.1["total_room_count_estimate"], 3);
    assert_error(&server.get("/_matrix/client/v3/publicRooms?since=nonsense", None).await, 400, "M_INVALID_PARAM");
}

async fn knocking(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let knock_rules = json!([{ "type": "m.room.join_rules", "content": { "join_rule": "knock" } }]);
    let room = create_room(&server, &alice, json!({ "room_version": "7", "initial_state": knock_rules })).await;
    let (status, answer) = server
        .post(&format!("/_matrix/client/v3/knock/{}", enc(&room)), Some(&bob.token), json!({ "reason": "let me in" }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["room_id"], room);
    let (_, member) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.user_id)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(member["membership"], "knock");
    assert_eq!(member["reason"], "let me in");
    // Knocking is not joining; an invite answers it.
    assert_error(
        &server.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), Some(&bob.token), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    invite(&server, &alice, &room, &bob).await;
    assert_eq!(
        server.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), Some(&bob.token), json!({})).await.0,
        200
    );
    // Room version 6 knows no knocking: the auth rules refuse both the rule and the knock.
    let old = create_room(&server, &alice, json!({ "room_version": "6", "preset": "private_chat" })).await;
    assert_error(
        &server.post(&format!("/_matrix/client/v3/knock/{}", enc(&old)), Some(&bob.token), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
}

async fn restricted_joins(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let space = create_room(&server, &alice, json!({ "preset": "private_chat" })).await;
    let rules = json!([{ "type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] } }]);
    let room = create_room(&server, &alice, json!({ "room_version": "9", "initial_state": rules })).await;
    let join_path = format!("/_matrix/client/v3/join/{}", enc(&room));
    // Not in the space: refused.
    assert_error(&server.post(&join_path, Some(&bob.token), json!({})).await, 403, "M_FORBIDDEN");
    invite(&server, &alice, &space, &bob).await;
    join(&server, &bob, &space).await;
    // In the space: joined, vouched for by alice.
    let (status, answer) = server.post(&join_path, Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let (_, member) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.user_id)),
            Some(&bob.token),
        )
        .await;
    assert_eq!(member["join_authorised_via_users_server"], alice.user_id);
}

async fn upgrades(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let old = create_room(
        &server,
        &alice,
        json!({ "room_version": "9", "preset": "public_chat", "visibility": "public", "name": "Old", "room_alias_name": "club" }),
    )
    .await;
    join(&server, &bob, &old).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&old)),
            Some(&alice.token),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    let upgrade = format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old));
    assert_error(&server.post(&upgrade, Some(&bob.token), json!({ "new_version": "11" })).await, 403, "M_FORBIDDEN");
    assert_error(
        &server.post(&upgrade, Some(&alice.token), json!({ "new_version": "42" })).await,
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    let (status, answer) = server.post(&upgrade, Some(&alice.token), json!({ "new_version": "11" })).await;
    assert_eq!(status, 200, "{answer}");
    let new = answer["replacement_room"].as_str().unwrap().to_owned();
    let state = |room: String, kind: &'static str| {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(&room));
        let token = alice.token.clone();
        let server = &server;
        async move { server.get(&path, Some(&token)).await.1 }
    };
    assert_eq!(state(old.clone(), "m.room.tombstone").await["replacement_room"], new);
    let create = state(new.clone(), "m.room.create").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["predecessor"]["room_id"], old);
    assert_eq!(state(new.clone(), "m.room.name").await["name"], "Old");
    assert_eq!(state(new.clone(), "m.room.join_rules").await["join_rule"], "public");
    assert_eq!(state(new.clone(), "m.room.canonical_alias").await["alias"], "#club:localhost");
    let (_, alias) = server.get("/_matrix/client/v3/directory/room/%23club%3Alocalhost", None).await;
    assert_eq!(alias["room_id"], new);
    let (_, banned) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&new), enc(&carol.user_id)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(banned["membership"], "ban");
    // Bob follows into the new room; in the old one he can no longer talk.
    assert_eq!(
        server.post(&format!("/_matrix/client/v3/join/{}", enc(&new)), Some(&bob.token), json!({})).await.0,
        200
    );
    assert_error(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/z", enc(&old)),
                Some(&bob.token),
                json!({ "body": "hi" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (_, list) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(list["chunk"][0]["room_id"], new);
}
