//! The `myelin` command: config example/check, admin commands against the database, and
//! `serve` with its first-user hint and graceful shutdown on SIGTERM.

use crate::{backend_tests, common::*};
use serde_json::json;
use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

backend_tests!(admin_commands, media_commands);

fn myelin(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myelin"))
        .args(args)
        .current_dir(db.dir.path())
        .env("MYELIN_DATA_DIR", db.dir.path().join("data"))
        .env("MYELIN_DATABASE__URL", &db.url)
        .env_remove("RUST_LOG")
        .output()
        .expect("myelin runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn admin_commands(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    assert!(
        stdout(&myelin(&db, &["user", "create", "root", "--password", "rootpassword", "--admin"]))
            .contains("@root:localhost (admin)")
    );
    let created = stdout(&myelin(&db, &["user", "create", "carol", "--random-password"]));
    let carol_password =
        created.lines().find_map(|l| l.strip_prefix("password: ")).expect("password printed").to_owned();
    let taken = myelin(&db, &["user", "create", "carol", "--password", "whatever1"]);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("M_USER_IN_USE"));
    assert!(!myelin(&db, &["user", "create", "dave"]).status.success(), "a password choice is required");
    let list = stdout(&myelin(&db, &["user", "list"]));
    assert!(list.contains("@root:localhost\tadmin") && list.contains("@carol:localhost"), "{list}");

    let token =
        stdout(&myelin(&db, &["registration-token", "create", "--uses", "2", "--expires", "2099-01-01T00:00:00Z"]));
    let token = token.trim().to_owned();
    assert_eq!(token.len(), 16);
    stdout(&myelin(&db, &["registration-token", "create", "--token", "named"]));
    let tokens = stdout(&myelin(&db, &["registration-token", "list"]));
    assert!(tokens.contains(&format!("{token}\t2\t0\t2099-01-01T00:00:00Z\ttrue")), "{tokens}");
    stdout(&myelin(&db, &["registration-token", "delete", "named"]));
    assert!(!myelin(&db, &["registration-token", "delete", "named"]).status.success());

    // A server on the same database sees all of it.
    let config = test_config(&db);
    let server = TestServer::start_config(db, config).await;
    assert_eq!(server.login("root", "rootpassword", json!({})).await.0, 200);
    assert_eq!(server.login("carol", &carol_password, json!({})).await.0, 200);
    let validity = server
        .get(&format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={token}"), None)
        .await;
    assert_eq!(validity.1["valid"], true);
    let (_, session) = server.login("carol", &carol_password, json!({})).await;

    // The CLI works while the server runs.
    stdout(&myelin(&server.db, &["user", "reset-password", "carol", "--password", "carol-new-pw"]));
    assert_error(&server.login("carol", &carol_password, json!({})).await, 403, "M_FORBIDDEN");
    assert_eq!(server.login("carol", "carol-new-pw", json!({})).await.0, 200);
    stdout(&myelin(&server.db, &["user", "deactivate", "carol"]));
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", session["access_token"].as_str()).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert!(stdout(&myelin(&server.db, &["user", "list"])).contains("@carol:localhost\tdeactivated"));
}

async fn media_commands(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    stdout(&myelin(&db, &["user", "create", "root", "--password", "rootpassword", "--admin"]));
    let config = test_config(&db);
    let server = TestServer::start_config(db, config).await;
    let alice = server.register("alice").await;
    let (_, root) = server.login("root", "rootpassword", json!({})).await;
    let root_token = root["access_token"].as_str().unwrap();
    let a =
        crate::media::upload(&server, &alice.token, b"shared bytes".to_vec(), Some("text/plain"), Some("a.txt")).await;
    let b = crate::media::upload(&server, &alice.token, b"shared bytes".to_vec(), None, None).await;
    let c = crate::media::upload(&server, &alice.token, b"other bytes".to_vec(), None, None).await;
    let mxc = |id: &str| format!("mxc://localhost/{id}");
    let db = &server.db;

    let info = stdout(&myelin(db, &["media", "info", &mxc(&a)]));
    for line in [
        "uploader           @alice:localhost",
        "content_type       text/plain",
        "size               12",
        "quarantined        false",
    ] {
        assert!(info.contains(line), "{line} in\n{info}");
    }
    assert!(!myelin(db, &["media", "info", "not-an-mxc"]).status.success());

    stdout(&myelin(db, &["media", "quarantine", &mxc(&a)]));
    assert_error(&server.get(&crate::media::download_url(&a), Some(&alice.token)).await, 404, "M_NOT_FOUND");
    assert_eq!(server.get(&crate::media::download_url(&a), Some(root_token)).await.0, 200, "admins still see it");
    stdout(&myelin(db, &["media", "unquarantine", &mxc(&a)]));
    assert_eq!(server.get(&crate::media::download_url(&a), Some(&alice.token)).await.0, 200);

    // A blob goes when nothing uses it any more.
    let blob_count = || -> usize {
        std::fs::read_dir(server.db.dir.path().join("data/media/blobs"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum()
    };
    assert_eq!(blob_count(), 2);
    assert!(stdout(&myelin(db, &["media", "delete", &mxc(&a)])).contains("(0 bytes freed"));
    assert_error(&server.get(&crate::media::download_url(&a), Some(&alice.token)).await, 404, "M_NOT_FOUND");
    assert_eq!(server.get(&crate::media::download_url(&b), Some(&alice.token)).await.0, 200);
    assert!(stdout(&myelin(db, &["media", "delete", &mxc(&b)])).contains("(12 bytes freed"));
    assert_eq!(blob_count(), 1);
    assert!(!myelin(db, &["media", "delete", &mxc(&b)]).status.success());

    assert!(
        stdout(&myelin(db, &["media", "purge", "--before", "2999-01-01T00:00:00Z", "--remote"]))
            .contains("deleted 0 media")
    );
    assert!(
        stdout(&myelin(db, &["media", "purge", "--before", "2000-01-01T00:00:00Z", "--local"]))
            .contains("deleted 0 media")
    );
    assert!(
        stdout(&myelin(db, &["media", "purge", "--before", "2999-01-01T00:00:00Z", "--local"]))
            .contains("deleted 1 media")
    );
    assert_error(&server.get(&crate::media::download_url(&c), Some(&alice.token)).await, 404, "M_NOT_FOUND");
    assert_eq!(blob_count(), 0);
}

#[test]
fn config_example_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_myelin")).args(args).current_dir(dir.path()).output().expect("myelin runs")
    };
    let example = run(&["config", "example"]);
    assert!(example.status.success());
    let path = dir.path().join("example.toml");
    std::fs::write(&path, &example.stdout).unwrap();
    let checked = run(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    for (text, key) in [
        ("listen = 8008\n", "listen"),
        ("[registration]\nenabled = \"yes\"\n", "registration.enabled"),
        ("[registration]\nenabeld = true\n", "enabeld"),
    ] {
        std::fs::write(&path, text).unwrap();
        let checked = run(&["config", "check", "--config", path.to_str().unwrap()]);
        assert!(!checked.status.success());
        let message = String::from_utf8_lossy(&checked.stderr);
        assert!(message.contains(key), "{key}: {message}");
    }
    let missing = run(&["config", "check", "--config", "/nonexistent.toml"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
}

#[test]
fn serve_prints_the_first_user_hint_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_myelin"))
            .current_dir(dir.path())
            .env("MYELIN_LISTEN", format!("127.0.0.1:{port}"))
            .env("MYELIN_REGISTRATION__ENABLED", "true")
            // The default federation listener, with its generated development certificate,
            // on a free port: 8448 may be taken on a developer's machine.
            .env("MYELIN_FEDERATION__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    // Log lines (the warning about the generated certificate) may come first.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..10 {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        if line.contains("myelin user create") {
            break;
        }
    }
    assert!(line.contains("myelin user create"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    // With no config file the data lands in ./data.
    assert!(dir.path().join("data/myelin.db").exists());
    let response = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        use std::io::{Read, Write};
        s.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    });
    assert!(response.unwrap().starts_with("HTTP/1.1 200"));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the server if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
