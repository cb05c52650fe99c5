//! The store conformance suite: every test runs once on SQLite and once on PostgreSQL.

use sqlx::Connection;

use myelin_store::{
    BackoffRow, ConnectOptions, Error, KeyDocumentRow, NewAccessToken, NewEvent, NewRegistration, NewRoom, PushAction,
    RegistrationToken, StateMap, Store, UiaSession, VerifyKeyRow, testing,
};

/// A store on a fresh database of the given backend, dropped with the guard.
struct TestStore {
    store: Store,
    _dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            testing::drop_postgres_database_blocking(name);
        }
    }
}

async fn open(postgres: bool) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg_name) = if postgres {
        let (url, name) = testing::create_postgres_database().await.expect("PostgreSQL at 127.0.0.1:5432");
        (url, Some(name))
    } else {
        (format!("sqlite://{}", dir.path().join("t.db").display()), None)
    };
    let store = Store::connect(&url, &ConnectOptions::default()).await.unwrap();
    TestStore { store, _dir: dir, pg_name }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() { super::$name(super::open(false).await).await }
            #[tokio::test]
            async fn postgres() { super::$name(super::open(true).await).await }
        }
    )*};
}

conformance!(
    users_and_registration,
    registration_token_is_spent_with_the_user,
    access_tokens_and_devices,
    refresh_token_chain,
    deactivation_removes_sessions,
    uia_sessions,
    meta_values,
    migrations_are_idempotent,
    room_state_snapshots_and_deltas,
    events_txns_and_memberships,
    concurrent_messages_commit_together_and_fail_alone,
    federation_keys_and_backoff,
    staged_push_actions_count_before_and_after_the_move,
);

fn token(hash: &str, user: &str, device: &str, refresh: Option<&str>) -> NewAccessToken {
    NewAccessToken {
        token_hash: hash.into(),
        user_id: user.into(),
        device_id: device.into(),
        expires_ts: refresh.map(|_| 10_000),
        refresh_token_hash: refresh.map(Into::into),
        now_ms: 1,
    }
}

fn registration(user: &str) -> NewRegistration {
    NewRegistration { user_id: user.into(), password_hash: Some("h".into()), now_ms: 1, ..Default::default() }
}

async fn users_and_registration(t: TestStore) {
    let users = t.store.users();
    let mut r = registration("@a:x");
    r.device = Some(("DEV".into(), Some("phone".into())));
    r.access_token = Some(token("t1", "@a:x", "DEV", None));
    users.register(&r).await.unwrap();
    assert!(matches!(users.register(&registration("@a:x")).await, Err(Error::Conflict)));
    let row = users.get("@a:x").await.unwrap().unwrap();
    assert_eq!(row.password_hash.as_deref(), Some("h"));
    assert!(!row.is_admin && !row.deactivated);
    assert_eq!(users.devices("@a:x").await.unwrap()[0].display_name.as_deref(), Some("phone"));
    assert_eq!(t.store.tokens().lookup("t1").await.unwrap().unwrap().device_id, "DEV");
    users.set_displayname("@a:x", Some("Alice")).await.unwrap();
    users.set_avatar_url("@a:x", Some("mxc://x/y")).await.unwrap();
    let row = users.get("@a:x").await.unwrap().unwrap();
    assert_eq!((row.displayname.as_deref(), row.avatar_url.as_deref()), (Some("Alice"), Some("mxc://x/y")));
    assert!(users.set_password_hash("@a:x", "h2").await.unwrap());
    assert!(!users.set_password_hash("@nobody:x", "h2").await.unwrap());
    users.register(&registration("@b:x")).await.unwrap();
    let ids: Vec<String> = users.list().await.unwrap().into_iter().map(|u| u.user_id).collect();
    assert_eq!(ids, ["@a:x", "@b:x"]);
}

async fn registration_token_is_spent_with_the_user(t: TestStore) {
    let tokens = t.store.registration_tokens();
    let row =
        RegistrationToken { token: "tok".into(), uses_allowed: Some(1), completed: 0, expiry_ts: None, created_ts: 1 };
    tokens.create(&row).await.unwrap();
    assert!(matches!(tokens.create(&row).await, Err(Error::Conflict)));
    let mut r = registration("@a:x");
    r.registration_token = Some("tok".into());
    t.store.users().register(&r).await.unwrap();
    let spent = tokens.get("tok").await.unwrap().unwrap();
    assert_eq!(spent.completed, 1);
    assert!(!spent.is_usable(2));
    // A used-up token fails the registration, and nothing of it is kept.
    let mut r = registration("@b:x");
    r.registration_token = Some("tok".into());
    assert!(matches!(t.store.users().register(&r).await, Err(Error::TokenNotUsable)));
    assert!(t.store.users().get("@b:x").await.unwrap().is_none());
    // A taken user ID does not spend the token either.
    tokens
        .create(&RegistrationToken {
            token: "t2".into(),
            uses_allowed: Some(5),
            completed: 0,
            expiry_ts: Some(100),
            created_ts: 1,
        })
        .await
        .unwrap();
    let mut r = registration("@a:x");
    r.registration_token = Some("t2".into());
    assert!(matches!(t.store.users().register(&r).await, Err(Error::Conflict)));
    assert_eq!(tokens.get("t2").await.unwrap().unwrap().completed, 0);
    // Expired at now_ms >= expiry.
    let mut r = registration("@c:x");
    r.registration_token = Some("t2".into());
    r.now_ms = 100;
    assert!(matches!(t.store.users().register(&r).await, Err(Error::TokenNotUsable)));
    assert_eq!(tokens.list().await.unwrap().len(), 2);
    assert!(tokens.delete("t2").await.unwrap());
    assert!(!tokens.delete("t2").await.unwrap());
}

async fn access_tokens_and_devices(t: TestStore) {
    let users = t.store.users();
    users.register(&registration("@a:x")).await.unwrap();
    users.add_device_with_token("@a:x", "D1", Some("one"), &token("t1", "@a:x", "D1", None), 1).await.unwrap();
    users.add_device_with_token("@a:x", "D2", None, &token("t2", "@a:x", "D2", None), 1).await.unwrap();
    // Reusing a device ID keeps the device and replaces its token.
    users.add_device_with_token("@a:x", "D1", Some("ignored"), &token("t3", "@a:x", "D1", None), 2).await.unwrap();
    assert!(t.store.tokens().lookup("t1").await.unwrap().is_none());
    assert_eq!(t.store.tokens().lookup("t3").await.unwrap().unwrap().device_id, "D1");
    assert_eq!(users.device("@a:x", "D1").await.unwrap().unwrap().display_name.as_deref(), Some("one"));
    assert!(users.set_device_display_name("@a:x", "D2", Some("two")).await.unwrap());
    assert!(!users.set_device_display_name("@a:x", "D9", Some("x")).await.unwrap());
    users.touch_device("@a:x", "D2", "10.0.0.1", 5).await.unwrap();
    let d2 = users.device("@a:x", "D2").await.unwrap().unwrap();
    assert_eq!((d2.last_seen_ip.as_deref(), d2.last_seen_ts), (Some("10.0.0.1"), Some(5)));
    assert_eq!(users.delete_devices("@a:x", &["D2".into(), "D9".into()]).await.unwrap(), 1);
    assert!(t.store.tokens().lookup("t2").await.unwrap().is_none());
    assert_eq!(users.delete_all_devices_except("@a:x", Some("D1")).await.unwrap(), 0);
    assert_eq!(users.devices("@a:x").await.unwrap().len(), 1);
}

async fn refresh_token_chain(t: TestStore) {
    let users = t.store.users();
    users.register(&registration("@a:x")).await.unwrap();
    users.add_device_with_token("@a:x", "D", None, &token("a1", "@a:x", "D", Some("r1")), 1).await.unwrap();
    let tokens = t.store.tokens();
    assert!(tokens.refresh("nope", &token("a2", "", "", Some("r2"))).await.unwrap().is_none());
    let (user, device) = tokens.refresh("r1", &token("a2", "", "", Some("r2"))).await.unwrap().unwrap();
    assert_eq!((user.as_str(), device.as_str()), ("@a:x", "D"));
    // Retrying with r1 (the answer was lost) replaces the successor.
    tokens.refresh("r1", &token("a3", "", "", Some("r3"))).await.unwrap().unwrap();
    assert!(tokens.lookup("a2").await.unwrap().is_none());
    let a3 = tokens.lookup("a3").await.unwrap().unwrap();
    assert!(!a3.used);
    // Using the new access token revokes r1.
    tokens.mark_used("a3", a3.refresh_token_hash.as_deref()).await.unwrap();
    assert!(tokens.lookup("a3").await.unwrap().unwrap().used);
    assert!(tokens.refresh("r1", &token("a4", "", "", Some("r4"))).await.unwrap().is_none());
    assert!(tokens.refresh("r3", &token("a5", "", "", Some("r5"))).await.unwrap().is_some());
    assert_eq!(tokens.purge_expired(10_001).await.unwrap(), 3);
}

async fn deactivation_removes_sessions(t: TestStore) {
    let users = t.store.users();
    users.register(&registration("@a:x")).await.unwrap();
    users.add_device_with_token("@a:x", "D", None, &token("a1", "@a:x", "D", Some("r1")), 1).await.unwrap();
    assert!(users.deactivate("@a:x").await.unwrap());
    assert!(!users.deactivate("@zz:x").await.unwrap());
    let row = users.get("@a:x").await.unwrap().unwrap();
    assert!(row.deactivated && row.password_hash.is_none());
    assert!(t.store.tokens().lookup("a1").await.unwrap().is_none());
    assert!(users.devices("@a:x").await.unwrap().is_empty());
    assert!(t.store.tokens().refresh("r1", &token("a2", "", "", Some("r2"))).await.unwrap().is_none());
    assert!(matches!(users.register(&registration("@a:x")).await, Err(Error::Conflict)));
}

async fn uia_sessions(t: TestStore) {
    let uia = t.store.uia();
    let session =
        UiaSession { session_id: "s".into(), user_id: None, completed: "[]".into(), data: "{}".into(), created_ts: 5 };
    uia.create(&session).await.unwrap();
    uia.update("s", "[\"m.login.dummy\"]", "{\"a\":1}").await.unwrap();
    let stored = uia.get("s").await.unwrap().unwrap();
    assert_eq!((stored.completed.as_str(), stored.data.as_str()), ("[\"m.login.dummy\"]", "{\"a\":1}"));
    assert_eq!(uia.purge_older_than(5).await.unwrap(), 0);
    assert_eq!(uia.purge_older_than(6).await.unwrap(), 1);
    assert!(uia.get("s").await.unwrap().is_none());
}

async fn meta_values(t: TestStore) {
    let meta = t.store.meta();
    assert_eq!(meta.get("k").await.unwrap(), None);
    assert_eq!(meta.get_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(meta.get_or_insert("k", "second").await.unwrap(), "first");
}

async fn migrations_are_idempotent(t: TestStore) {
    t.store.users().register(&registration("@a:x")).await.unwrap();
    // Connecting again runs the migrator again: nothing changes, nothing is lost.
    let url = match &t.pg_name {
        Some(name) => {
            let admin = testing::postgres_admin_url();
            format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
        }
        None => format!("sqlite://{}", t._dir.path().join("t.db").display()),
    };
    let again = Store::connect(&url, &ConnectOptions::default()).await.unwrap();
    assert!(again.users().get("@a:x").await.unwrap().is_some());
    again.close().await;
}

/// A state event of room `!r:x` for the room tests (the JSON only matters to memberships).
fn state_event(n: i64, kind: &str, key: &str, before: Option<i64>, prev: Option<&str>) -> NewEvent {
    let content = if kind == "m.room.member" { r#"{"membership":"join"}"# } else { "{}" };
    NewEvent {
        push_actions: Vec::new(),
        current_state: None,
        event_id: format!("$e{n}"),
        room_id: "!r:x".into(),
        depth: n,
        event_type: kind.into(),
        state_key: Some(key.into()),
        sender: "@a:x".into(),
        origin_server_ts: 1000 + n,
        redacts: None,
        json: format!(r#"{{"content":{content},"type":"{kind}","state_key":"{key}"}}"#),
        state_before: before,
        prev_events: prev.into_iter().map(str::to_owned).collect(),
        txn: None,
        new_room: (n == 0).then(|| NewRoom {
            room_id: "!r:x".into(),
            room_version: "10".into(),
            creator: "@a:x".into(),
            created_ts: 1,
        }),
        relation: None,
    }
}

async fn room_state_snapshots_and_deltas(t: TestStore) {
    let rooms = t.store.rooms();
    let mut expected = StateMap::new();
    let mut groups = Vec::new();
    let mut before = None;
    // 120 state events over 30 keys: deltas, with full snapshots cutting the chains.
    for n in 0..120i64 {
        let key = format!("k{}", n % 30);
        let event = state_event(n, "org.example.s", &key, before, (n > 0).then(|| format!("$e{}", n - 1)).as_deref());
        let persisted = rooms.persist_event(&event).await.unwrap();
        assert_eq!(persisted.stream_ordering, n + 1);
        expected.insert(("org.example.s".into(), key), format!("$e{n}"));
        groups.push((persisted.state_after, expected.clone()));
        before = Some(persisted.state_after);
    }
    for (group, state) in &groups {
        assert_eq!(&rooms.state_at_group(*group).await.unwrap(), state, "group {group}");
    }
    assert_eq!(rooms.current_state("!r:x").await.unwrap(), expected);
    assert_eq!(rooms.forward_extremities("!r:x").await.unwrap(), vec!["$e119".to_owned()]);
    assert_eq!(rooms.max_stream().await.unwrap(), 120);
    let room = rooms.room("!r:x").await.unwrap().unwrap();
    assert_eq!((room.room_version.as_str(), room.creator.as_str()), ("10", "@a:x"));
}

async fn events_txns_and_memberships(t: TestStore) {
    let rooms = t.store.rooms();
    let create = rooms.persist_event(&state_event(0, "m.room.create", "", None, None)).await.unwrap();
    let join = rooms
        .persist_event(&state_event(1, "m.room.member", "@a:x", Some(create.state_after), Some("$e0")))
        .await
        .unwrap();
    let mut message = state_event(2, "m.room.message", "", Some(join.state_after), Some("$e1"));
    message.state_key = None;
    message.txn = Some(("DEV".into(), "t1".into()));
    let sent = rooms.persist_event(&message).await.unwrap();
    // A message keeps the state group it was sent in.
    assert_eq!(sent.state_after, join.state_after);
    assert_eq!(rooms.txn_event("!r:x", "@a:x", "DEV", "t1").await.unwrap().as_deref(), Some("$e2"));
    assert_eq!(rooms.txn_event("!r:x", "@a:x", "OTHER", "t1").await.unwrap(), None);
    assert_eq!(rooms.txn_event("!other:x", "@a:x", "DEV", "t1").await.unwrap(), None);
    // Whether a server has a joined member: by the user ID's server part only.
    assert!(rooms.has_joined_member_of("!r:x", "x").await.unwrap());
    assert!(!rooms.has_joined_member_of("!r:x", "y").await.unwrap());
    assert!(!rooms.has_joined_member_of("!other:x", "x").await.unwrap());
    let ids = ["$e2".to_owned(), "$e1".to_owned()];
    assert_eq!(rooms.txns_of_events(&ids, "@a:x", "DEV").await.unwrap(), [("$e2".to_owned(), "t1".to_owned())]);
    assert_eq!(rooms.txns_of_events(&ids, "@a:x", "OTHER").await.unwrap(), []);
    // The same transaction twice is refused by the store.
    message.event_id = "$e3".into();
    assert!(matches!(rooms.persist_event(&message).await, Err(Error::Conflict)));
    // Memberships and forgetting.
    assert_eq!(rooms.rooms_of_user("@a:x", "join").await.unwrap(), vec!["!r:x".to_owned()]);
    assert!(!rooms.forget("!r:x", "@a:x").await.unwrap(), "joined users cannot forget");
    let page = rooms.events_in_room("!r:x", 0, None, true, 10).await.unwrap();
    assert_eq!(page.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["$e0", "$e1", "$e2"]);
    // Backwards from before position 4 down to (not including) position 1.
    let back = rooms.events_in_room("!r:x", 4, Some(1), false, 10).await.unwrap();
    assert_eq!(back.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["$e2", "$e1"]);
    // Aliases.
    assert!(rooms.add_alias("#a:x", "!r:x", "@a:x").await.unwrap());
    assert!(!rooms.add_alias("#a:x", "!other:x", "@b:x").await.unwrap());
    assert_eq!(rooms.aliases_of_room("!r:x").await.unwrap(), vec!["#a:x".to_owned()]);
    assert!(rooms.remove_alias("#a:x").await.unwrap());
}

async fn concurrent_messages_commit_together_and_fail_alone(t: TestStore) {
    let rooms = t.store.rooms();
    // 20 rooms, each with a create event, then one message in each at once, one of them
    // repeating a transaction ID that is taken already.
    let mut messages = Vec::new();
    for r in 0..20 {
        let mut create = state_event(0, "m.room.create", "", None, None);
        create.event_id = format!("$c{r}");
        create.room_id = format!("!r{r}:x");
        create.new_room.as_mut().unwrap().room_id = create.room_id.clone();
        let created = rooms.persist_event(&create).await.unwrap();
        let mut message = state_event(1, "m.room.message", "", Some(created.state_after), Some(&create.event_id));
        message.state_key = None;
        message.event_id = format!("$m{r}");
        message.room_id = create.room_id.clone();
        message.txn = Some(("DEV".into(), format!("t{r}")));
        messages.push(message);
    }
    rooms.persist_event(&messages[0]).await.unwrap();
    messages[0].event_id = "$again".into();
    let results = futures_util::future::join_all(messages.iter().map(|m| rooms.persist_event(m))).await;
    assert!(matches!(results[0], Err(Error::Conflict)), "the repeated transaction fails");
    let mut streams: Vec<i64> = results[1..].iter().map(|r| r.as_ref().unwrap().stream_ordering).collect();
    streams.sort();
    streams.dedup();
    assert_eq!(streams.len(), 19, "every other message landed at its own position");
    for (m, result) in messages.iter().zip(&results).skip(1) {
        let row = rooms.event(&m.event_id).await.unwrap().unwrap();
        assert_eq!(row.stream_ordering, result.as_ref().unwrap().stream_ordering);
        assert_eq!(rooms.forward_extremities(&m.room_id).await.unwrap(), vec![m.event_id.clone()]);
    }
    assert!(rooms.event("$again").await.unwrap().is_none());
}

async fn federation_keys_and_backoff(t: TestStore) {
    let federation = t.store.federation();
    let document = |valid_until_ts| KeyDocumentRow {
        server_name: "other.example".into(),
        document: format!("{{\"valid_until_ts\":{valid_until_ts}}}"),
        valid_until_ts,
        fetched_ts: 1,
    };
    let key = |public: &str, valid_until_ts, expired_ts| VerifyKeyRow {
        key_id: "ed25519:a".into(),
        public_key: public.into(),
        valid_until_ts,
        expired_ts,
    };
    federation.save_server_keys(&document(100), &[key("K1", 100, None)]).await.unwrap();
    // An older document neither replaces the stored one nor shortens the key's validity.
    federation.save_server_keys(&document(50), &[key("K1", 50, None)]).await.unwrap();
    assert_eq!(federation.key_document("other.example").await.unwrap().unwrap().valid_until_ts, 100);
    assert_eq!(federation.verify_keys("other.example").await.unwrap(), vec![key("K1", 100, None)]);
    // Seen as expired, it stays expired; the same ID for another key takes the new key.
    federation.save_server_keys(&document(200), &[key("K1", 200, Some(150))]).await.unwrap();
    assert_eq!(federation.verify_keys("other.example").await.unwrap(), vec![key("K1", 200, Some(150))]);
    federation.save_server_keys(&document(300), &[key("K2", 300, None)]).await.unwrap();
    assert_eq!(federation.verify_keys("other.example").await.unwrap(), vec![key("K2", 300, None)]);

    let backoff = |destination: &str, retry_after_ts| BackoffRow {
        destination: destination.into(),
        failures: 2,
        retry_after_ts,
        last_error: "refused".into(),
    };
    federation.set_backoff(&backoff("old.example", 10)).await.unwrap();
    federation.set_backoff(&backoff("new.example", 1_000)).await.unwrap();
    assert_eq!(federation.purge_backoffs(500).await.unwrap(), 1);
    assert_eq!(federation.backoffs().await.unwrap(), vec![backoff("new.example", 1_000)]);
    federation.clear_backoff("new.example").await.unwrap();
    assert!(federation.backoffs().await.unwrap().is_empty());
}

/// Unread counts read the push actions still staged with their events the same as the ones
/// moved to `event_push_actions`, per room and per thread, and only after the user's join.
async fn staged_push_actions_count_before_and_after_the_move(t: TestStore) {
    let rooms = t.store.rooms();
    let create = rooms.persist_event(&state_event(0, "m.room.create", "", None, None)).await.unwrap();
    let join = rooms
        .persist_event(&state_event(1, "m.room.member", "@b:x", Some(create.state_after), Some("$e0")))
        .await
        .unwrap();
    let action = |highlight: bool, thread: Option<&str>| PushAction {
        user_id: "@b:x".into(),
        notify: true,
        highlight,
        thread_id: thread.map(str::to_owned),
        actions: "[\"notify\"]".into(),
    };
    // Two main-timeline messages (one highlighted) and one in a thread of $e2.
    for (n, a) in [(2, action(false, None)), (3, action(true, None)), (4, action(false, Some("$e2")))] {
        let mut message = state_event(n, "m.room.message", "", Some(join.state_after), Some(&format!("$e{}", n - 1)));
        message.state_key = None;
        message.push_actions = vec![a];
        rooms.persist_event(&message).await.unwrap();
    }
    let push = t.store.push();
    let room = vec!["!r:x".to_owned()];
    let mut by_thread = push.unread_counts("@b:x", true, &room).await.unwrap();
    by_thread.sort();
    let expected_threads = vec![("!r:x".to_owned(), None, 2, 1), ("!r:x".to_owned(), Some("$e2".to_owned()), 1, 0)];
    assert_eq!(push.unread_counts("@b:x", false, &room).await.unwrap(), vec![("!r:x".to_owned(), None, 3, 1)]);
    assert_eq!(by_thread, expected_threads);
    assert!(push.unread_counts("@c:x", false, &room).await.unwrap().is_empty());

    assert_eq!(push.rotate_staged().await.unwrap(), 3);
    let mut by_thread = push.unread_counts("@b:x", true, &room).await.unwrap();
    by_thread.sort();
    assert_eq!(push.unread_counts("@b:x", false, &room).await.unwrap(), vec![("!r:x".to_owned(), None, 3, 1)]);
    assert_eq!(by_thread, expected_threads);
}

/// A room `!r:x` with its create event; returns the state group messages are sent in.
async fn room_for_messages(store: &Store) -> i64 {
    store.rooms().persist_event(&state_event(0, "m.room.create", "", None, None)).await.unwrap().state_after
}

/// A message of `!r:x` with transaction ID `txn`.
fn message(n: i64, state: i64, txn: &str) -> NewEvent {
    let mut message = state_event(n, "m.room.message", "", Some(state), Some("$e0"));
    message.state_key = None;
    message.txn = Some(("DEV".into(), txn.into()));
    message
}

/// SQLite: messages are written on their own connection, which must wait, off the runtime's
/// threads, while another writer (here a second connection, as the admin CLI would be) holds
/// the database; what queued meanwhile commits in one go, a repeated transaction failing alone.
#[tokio::test]
async fn sqlite_messages_wait_for_another_writer() {
    let t = open(false).await;
    let state = room_for_messages(&t.store).await;
    t.store.rooms().persist_event(&message(1, state, "taken")).await.unwrap();

    let url = format!("sqlite://{}", t._dir.path().join("t.db").display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let sends: Vec<_> = [(2, "a"), (3, "taken"), (4, "b")]
        .into_iter()
        .map(|(n, txn)| {
            let store = t.store.clone();
            tokio::spawn(async move { store.rooms().persist_event(&message(n, state, txn)).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(sends.iter().all(|s| !s.is_finished()), "no message commits while another writer holds the lock");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    let mut results = Vec::new();
    for send in sends {
        results.push(send.await.unwrap());
    }
    assert!(matches!(results[1], Err(Error::Conflict)), "the repeated transaction fails: {:?}", results[1]);
    let (a, b) = (results[0].as_ref().unwrap(), results[2].as_ref().unwrap());
    assert_ne!(a.stream_ordering, b.stream_ordering);
    for (id, persisted) in [("$e2", a), ("$e4", b)] {
        assert_eq!(t.store.rooms().event(id).await.unwrap().unwrap().stream_ordering, persisted.stream_ordering);
    }
    assert!(t.store.rooms().event("$e3").await.unwrap().is_none());
}

/// SQLite: messages queued on the room's head are written in the order queued, each built on
/// the one before; one that fails (a repeated transaction ID) makes those built on it fail as
/// stale, and so does one built on a head that another message replaced meanwhile, writing
/// nothing, and the room's latest event stays the last one written.
#[tokio::test]
async fn sqlite_messages_queued_on_the_head_fail_after_a_failed_one() {
    let t = open(false).await;
    let state = room_for_messages(&t.store).await;
    let rooms = t.store.rooms();
    rooms.persist_event(&message(1, state, "taken")).await.unwrap();
    let on = |n: i64, prev: &str, txn: &str| NewEvent { prev_events: vec![prev.to_owned()], ..message(n, state, txn) };
    let queued: Vec<_> = [(2, "$e1", "a"), (3, "$e2", "taken"), (4, "$e3", "b"), (5, "$e1", "c")]
        .into_iter()
        .map(|(n, prev, txn)| rooms.queue_on_head(on(n, prev, txn)).unwrap())
        .collect();
    let mut results = Vec::new();
    for write in queued {
        results.push(write.written().await);
    }
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(matches!(results[1], Err(Error::Conflict)), "the repeated transaction fails: {:?}", results[1]);
    assert!(matches!(results[2], Err(Error::StaleHead)), "built on the failed one: {:?}", results[2]);
    assert!(matches!(results[3], Err(Error::StaleHead)), "built on a replaced head: {:?}", results[3]);
    for gone in ["$e3", "$e4", "$e5"] {
        assert!(rooms.event(gone).await.unwrap().is_none(), "{gone} was not written");
    }
    assert_eq!(rooms.forward_extremities("!r:x").await.unwrap(), ["$e2"]);
    // Built again on the room's latest event, it goes through.
    rooms.queue_on_head(on(6, "$e2", "b")).unwrap().written().await.unwrap();
    assert_eq!(rooms.forward_extremities("!r:x").await.unwrap(), ["$e6"]);
}

/// SQLite: the message connection does not checkpoint the WAL in its commits; the checkpoint
/// thread moves what they wrote into the database file soon after.
#[tokio::test]
async fn sqlite_messages_reach_the_database_file() {
    let t = open(false).await;
    let state = room_for_messages(&t.store).await;
    let file = t._dir.path().join("t.db");
    let size = || std::fs::metadata(&file).unwrap().len();
    // Whatever sqlx's connections wrote so far goes into the file first.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.unwrap();
    let before = size();
    for n in 1..=300 {
        let mut m = message(n, state, &format!("t{n}"));
        m.prev_events = vec![format!("$e{}", if n == 1 { 0 } else { n - 1 })];
        t.store.rooms().persist_event(&m).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= before {
        assert!(std::time::Instant::now() < deadline, "300 messages never reached the database file");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// SQLite: under a steady stream of messages the WAL still starts again from its beginning
/// after the checkpoints; it grew by every commit before (to 629 MB in the rooms benchmark).
/// A message every millisecond or so, until the WAL's checkpoint sequence number, which each
/// start writes into its header, moves on.
#[tokio::test]
async fn sqlite_wal_starts_again_under_steady_writes() {
    let t = open(false).await;
    let state = room_for_messages(&t.store).await;
    let wal = t._dir.path().join("t.db-wal");
    // Bytes 12..16 of the WAL header: how many times the WAL started again.
    let starts = || {
        use std::io::Read;
        let mut header = [0u8; 16];
        match std::fs::File::open(&wal).and_then(|mut file| file.read_exact(&mut header)) {
            Ok(()) => u32::from_be_bytes([header[12], header[13], header[14], header[15]]),
            Err(_) => 0,
        }
    };
    let first = starts();
    let mut n = 0;
    while starts() == first {
        // Checkpoints come every 256 commits or 200 ms: some twenty of them.
        assert!(n < 5_000, "{n} messages and the WAL never started again");
        n += 1;
        let mut m = message(n, state, &format!("t{n}"));
        m.prev_events = vec![format!("$e{}", n - 1)];
        t.store.rooms().persist_event(&m).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// SQLite: only redactions have an entry in the index of `redacts` (a message's commit writes
/// no page of it), and the lookup of redactions still goes through that index.
#[tokio::test]
async fn sqlite_redactions_are_looked_up_in_their_partial_index() {
    let t = open(false).await;
    let state = room_for_messages(&t.store).await;
    t.store.rooms().persist_event(&message(1, state, "m1")).await.unwrap();
    let mut redaction = message(2, state, "m2");
    redaction.event_type = "m.room.redaction".into();
    redaction.redacts = Some("$e1".into());
    t.store.rooms().persist_event(&redaction).await.unwrap();
    let found = t.store.rooms().redactions_of_many(&["$e1".into(), "$e0".into()]).await.unwrap();
    assert_eq!(found.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["$e2"]);

    let url = format!("sqlite://{}", t._dir.path().join("t.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let index: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'events_by_redacts'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(index.ends_with("WHERE redacts IS NOT NULL"), "{index}");
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE redacts IN (?, ?) AND event_type = 'm.room.redaction'",
    )
    .bind("$e1")
    .bind("$e0")
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(plan.iter().any(|row| row.3.contains("events_by_redacts")), "{plan:?}");
}
