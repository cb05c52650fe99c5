//! Membership and the auth rules behind it: invites, joins by ID and alias, leaving, kicks,
//! bans, power levels, forgetting; and room aliases.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, send_text},
};
use serde_json::json;

backend_tests!(
    invite_join_leave_forget,
    kick_ban_unban_and_power_levels,
    join_rules,
    aliases,
    auth_rules_in_every_room_version
);

async fn post(
    server: &TestServer,
    user: &User,
    path: String,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    server.post(&path, Some(&user.token), body).await
}

async fn invite_join_leave_forget(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room =
        create_room(&server, &alice, json!({ "preset": "private_chat", "invite": [bob.user_id], "is_direct": true }))
            .await;
    // Invited by createRoom: bob may join the invite-only room.
    let (_, member) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.user_id)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(member, json!({ "membership": "invite", "is_direct": true }));
    let (status, joined) =
        post(&server, &bob, format!("/_matrix/client/v3/rooms/{}/join", enc(&room)), json!({})).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["room_id"], room);
    send_text(&server, &bob, &room, "1", "hi alice").await;

    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{}/members", enc(&room)), Some(&bob.token)).await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2);
    let (_, joined_only) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/members?membership=join", enc(&room)), Some(&bob.token)).await;
    assert_eq!(joined_only["chunk"].as_array().unwrap().len(), 2);
    let (_, not_joined) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/members?not_membership=join", enc(&room)), Some(&bob.token))
        .await;
    assert_eq!(not_joined["chunk"].as_array().unwrap().len(), 0);
    // `at` a token from before bob joined: bob was only invited then.
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000", enc(&room)), Some(&bob.token))
        .await;
    let joined_index = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["content"]["membership"] == "join" && e["state_key"] == bob.user_id.as_str())
        .unwrap();
    let (_, early) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit={joined_index}", enc(&room)), Some(&bob.token))
        .await;
    let token = early["end"].as_str().unwrap();
    let (status, then) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/members?at={token}", enc(&room)), Some(&bob.token)).await;
    assert_eq!(status, 200, "{then}");
    let bob_then = then["chunk"].as_array().unwrap().iter().find(|e| e["state_key"] == bob.user_id.as_str()).unwrap();
    assert_eq!(bob_then["content"]["membership"], "invite");

    // Leaving: bob can no longer send, still reads the state as of his leaving, then forgets.
    assert_error(
        &post(&server, &bob, format!("/_matrix/client/v3/rooms/{}/forget", enc(&room)), json!({})).await,
        400,
        "M_BAD_JSON",
    );
    assert_eq!(post(&server, &bob, format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.0, 200);
    assert_error(
        &post(&server, &bob, format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/2", enc(&room));
    assert_error(&server.put(&path, Some(&bob.token), json!({ "body": "still here?" })).await, 403, "M_FORBIDDEN");
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&bob.token)).await;
    assert_eq!(status, 200);
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", Some(&bob.token)).await;
    assert_eq!(rooms["joined_rooms"], json!([]));
    assert_eq!(post(&server, &bob, format!("/_matrix/client/v3/rooms/{}/forget", enc(&room)), json!({})).await.0, 200);
    // Invite-only: no way back in without a new invite.
    assert_error(
        &post(&server, &bob, format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    assert_eq!(
        post(&server, &alice, invite.clone(), json!({ "user_id": bob.user_id, "reason": "come back" })).await.0,
        200
    );
    assert_eq!(post(&server, &bob, format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.0, 200);
    // Inviting someone who is in the room already.
    assert_error(&post(&server, &alice, invite, json!({ "user_id": bob.user_id })).await, 403, "M_FORBIDDEN");
}

async fn kick_ban_unban_and_power_levels(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    for user in [&bob, &carol] {
        assert_eq!(post(&server, user, format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.0, 200);
    }
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", enc(&room));
    let ban = format!("/_matrix/client/v3/rooms/{}/ban", enc(&room));
    let unban = format!("/_matrix/client/v3/rooms/{}/unban", enc(&room));
    // Bob (power 0) may not kick or ban, nor raise his own power.
    assert_error(&post(&server, &bob, kick.clone(), json!({ "user_id": carol.user_id })).await, 403, "M_FORBIDDEN");
    assert_error(&post(&server, &bob, ban.clone(), json!({ "user_id": carol.user_id })).await, 403, "M_FORBIDDEN");
    let power = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room));
    let (_, mut levels) = server.get(&power, Some(&alice.token)).await;
    levels["users"][&bob.user_id] = json!(100);
    assert_error(&server.put(&power, Some(&bob.token), levels.clone()).await, 403, "M_FORBIDDEN");
    // Alice makes bob a moderator (50): now he may kick, but not ban alice (100).
    levels["users"][&bob.user_id] = json!(50);
    assert_eq!(server.put(&power, Some(&alice.token), levels).await.0, 200);
    assert_eq!(post(&server, &bob, kick.clone(), json!({ "user_id": carol.user_id, "reason": "noise" })).await.0, 200);
    assert_error(&post(&server, &bob, ban.clone(), json!({ "user_id": alice.user_id })).await, 403, "M_FORBIDDEN");
    // Kicked carol can join the public room again; banned she cannot.
    assert_eq!(post(&server, &carol, format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.0, 200);
    assert_eq!(post(&server, &alice, ban.clone(), json!({ "user_id": carol.user_id })).await.0, 200);
    assert_error(
        &post(&server, &carol, format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let (_, member) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&carol.user_id)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(member["membership"], "ban");
    // Unbanning someone who is not banned is refused; unbanning carol lets her back.
    assert_error(&post(&server, &alice, unban.clone(), json!({ "user_id": bob.user_id })).await, 403, "M_FORBIDDEN");
    assert_eq!(post(&server, &alice, unban, json!({ "user_id": carol.user_id })).await.0, 200);
    assert_eq!(post(&server, &carol, format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.0, 200);
    // Nobody may join someone else.
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.user_id));
    assert_error(&server.put(&path, Some(&alice.token), json!({ "membership": "join" })).await, 403, "M_FORBIDDEN");
}

async fn join_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "private_chat" })).await;
    let join = format!("/_matrix/client/v3/rooms/{}/join", enc(&room));
    assert_error(&post(&server, &bob, join.clone(), json!({})).await, 403, "M_FORBIDDEN");
    // Opened up by alice: bob joins.
    let rules = format!("/_matrix/client/v3/rooms/{}/state/m.room.join_rules/", enc(&room));
    assert_eq!(server.put(&rules, Some(&alice.token), json!({ "join_rule": "public" })).await.0, 200);
    assert_eq!(post(&server, &bob, join, json!({})).await.0, 200);
    // Unknown rooms.
    assert_error(
        &post(&server, &bob, "/_matrix/client/v3/join/%21unknown%3Alocalhost".to_owned(), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &post(&server, &bob, "/_matrix/client/v3/join/%23unknown%3Alocalhost".to_owned(), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
}

async fn aliases(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let alias = "/_matrix/client/v3/directory/room/%23team%3Alocalhost";
    assert_eq!(server.put(alias, Some(&alice.token), json!({ "room_id": room })).await.0, 200);
    assert_error(&server.put(alias, Some(&bob.token), json!({ "room_id": room })).await, 409, "M_UNKNOWN");
    let (_, found) = server.get(alias, None).await;
    assert_eq!(found, json!({ "room_id": room, "servers": ["localhost"] }));
    // Joining by the alias.
    assert_eq!(post(&server, &bob, "/_matrix/client/v3/join/%23team%3Alocalhost".to_owned(), json!({})).await.0, 200);
    let (_, list) = server.get(&format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)), Some(&bob.token)).await;
    assert_eq!(list["aliases"], json!(["#team:localhost"]));
    // Now a canonical alias may name it.
    let canonical = format!("/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/", enc(&room));
    assert_eq!(server.put(&canonical, Some(&alice.token), json!({ "alias": "#team:localhost" })).await.0, 200);
    // Only its creator deletes it.
    assert_error(&server.request(reqwest::Method::DELETE, alias, Some(&bob.token), None).await, 403, "M_FORBIDDEN");
    assert_eq!(server.request(reqwest::Method::DELETE, alias, Some(&alice.token), None).await.0, 200);
    assert_error(&server.get(alias, None).await, 404, "M_NOT_FOUND");
    // Aliases of other servers, and malformed ones.
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/directory/room/%23x%3Aelsewhere.example",
                Some(&alice.token),
                json!({ "room_id": room }),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let (status, _) =
        server.put("/_matrix/client/v3/directory/room/nohash", Some(&alice.token), json!({ "room_id": room })).await;
    assert_eq!(status, 400);
    let (status, _) = server.get("/_matrix/client/v3/directory/room/nohash", None).await;
    assert_eq!(status, 400);
}

/// The auth rule families in every room version (groups v1–2, v3–6, v7–10, v11 differ in event
/// format, redaction and join rules; the outcome for clients must not).
async fn auth_rules_in_every_room_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    for version in 1..=11 {
        let v = format!("v{version}");
        let room =
            create_room(&server, &alice, json!({ "room_version": version.to_string(), "preset": "private_chat" }))
                .await;
        let r = enc(&room);
        let url = |tail: &str| format!("/_matrix/client/v3/rooms/{r}/{tail}");
        // Join rules: invite-only until invited.
        assert_error(&post(&server, &bob, url("join"), json!({})).await, 403, "M_FORBIDDEN");
        assert_eq!(post(&server, &alice, url("invite"), json!({ "user_id": bob.user_id })).await.0, 200, "{v}");
        assert_eq!(post(&server, &bob, url("join"), json!({})).await.0, 200, "{v}");
        // Power levels: bob (0) may not change them; promoted to 50 he may rename the room but
        // neither raise himself above 50 nor demote alice.
        let power = url("state/m.room.power_levels/");
        let (_, mut levels) = server.get(&power, Some(&alice.token)).await;
        levels["users"][&bob.user_id] = json!(50);
        assert_error(&server.put(&power, Some(&bob.token), levels.clone()).await, 403, "M_FORBIDDEN");
        assert_eq!(server.put(&power, Some(&alice.token), levels.clone()).await.0, 200, "{v}");
        assert_eq!(
            server.put(&url("state/m.room.name/"), Some(&bob.token), json!({ "name": "bob's" })).await.0,
            200,
            "{v}"
        );
        let mut higher = levels.clone();
        higher["users"][&bob.user_id] = json!(75);
        assert_error(&server.put(&power, Some(&bob.token), higher).await, 403, "M_FORBIDDEN");
        let mut demote = levels.clone();
        demote["users"][&alice.user_id] = json!(0);
        assert_error(&server.put(&power, Some(&bob.token), demote).await, 403, "M_FORBIDDEN");
        // Membership transitions: bob (50) invites carol; she joins; bob kicks her; alice bans
        // her; a banned user cannot be invited; unbanned she is out (leave).
        assert_eq!(post(&server, &bob, url("invite"), json!({ "user_id": carol.user_id })).await.0, 200, "{v}");
        assert_eq!(post(&server, &carol, url("join"), json!({})).await.0, 200, "{v}");
        assert_error(&post(&server, &carol, url("kick"), json!({ "user_id": bob.user_id })).await, 403, "M_FORBIDDEN");
        assert_eq!(post(&server, &bob, url("kick"), json!({ "user_id": carol.user_id })).await.0, 200, "{v}");
        assert_eq!(post(&server, &alice, url("ban"), json!({ "user_id": carol.user_id })).await.0, 200, "{v}");
        assert_error(
            &post(&server, &bob, url("invite"), json!({ "user_id": carol.user_id })).await,
            403,
            "M_FORBIDDEN",
        );
        assert_eq!(post(&server, &alice, url("unban"), json!({ "user_id": carol.user_id })).await.0, 200, "{v}");
        assert_error(&post(&server, &carol, url("join"), json!({})).await, 403, "M_FORBIDDEN");
        // Redactions: carol's gone; bob may redact his own and (at 50) alice's; without the power
        // a member may only redact their own.
        let mine = send_text(&server, &bob, &room, "m", "bob's message").await;
        let hers = send_text(&server, &alice, &room, "a", "alice's message").await;
        let redact = |event: &str, txn: &str| format!("/_matrix/client/v3/rooms/{r}/redact/{}/{txn}", enc(event));
        let own = server.put(&redact(&mine, "r1"), Some(&bob.token), json!({})).await;
        assert_eq!(own.0, 200, "{v}: {mine} {}", own.1);
        levels["users"][&bob.user_id] = json!(10);
        assert_eq!(server.put(&power, Some(&alice.token), levels.clone()).await.0, 200, "{v}");
        let refused = server.put(&redact(&hers, "r2"), Some(&bob.token), json!({})).await;
        assert_eq!(refused.0, 403, "{v}: {}", refused.1);
        assert_eq!(server.put(&redact(&hers, "r3"), Some(&alice.token), json!({})).await.0, 200, "{v}");
    }
}
