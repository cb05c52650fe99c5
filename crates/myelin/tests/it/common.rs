//! The test harness: start a server on a fresh database, talk JSON to it.

use myelin::server::{self, RunningServer};
use myelin_core::Config;
use myelin_store::testing;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::common::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::common::Backend::Postgres).await }
        }
    )*};
}

/// The database a test server uses; dropped (PostgreSQL) with the guard.
pub struct TestDatabase {
    pub url: String,
    pg_name: Option<String>,
    pub dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_name) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("myelin.db").display()), None),
            Backend::Postgres => {
                let (url, name) =
                    testing::create_postgres_database().await.expect("PostgreSQL reachable at 127.0.0.1:5432");
                (url, Some(name))
            }
        };
        TestDatabase { url, pg_name, dir }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            testing::drop_postgres_database_blocking(name);
        }
    }
}

/// The config every test starts from: registration on, rate limits off, random port.
pub fn test_config(db: &TestDatabase) -> Config {
    let mut config =
        Config { listen: "127.0.0.1:0".parse().unwrap(), data_dir: db.dir.path().join("data"), ..Default::default() };
    config.database.url = Some(db.url.clone());
    config.registration.enabled = true;
    config.rate_limits.enabled = false;
    // Tests of federation turn it on; the others need no TLS listener.
    config.federation.enabled = false;
    config
}

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    server: Option<RunningServer>,
    pub db: TestDatabase,
}

/// A registered user's session.
#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub password: String,
    pub token: String,
    pub device_id: String,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::new(backend).await;
        let mut config = test_config(&db);
        configure(&mut config);
        Self::start_config(db, config).await
    }

    pub async fn start_config(db: TestDatabase, config: Config) -> Self {
        let server = server::start(config).await.expect("server starts");
        TestServer {
            base: format!("http://{}", server.client_addr),
            http: reqwest::Client::new(),
            server: Some(server),
            db,
        }
    }

    pub fn services(&self) -> &myelin_api::Services {
        &self.server.as_ref().expect("running").services
    }

    /// Stops the server gracefully (tests of restarts use the returned database).
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let TestServer { db, .. } = self;
        db
    }

    /// Sends a request; returns the status and the JSON body (Null if not JSON).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let response = self.raw(method, path, token, body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    /// Registers `localpart` with the dummy flow, as clients do.
    pub async fn register(&self, localpart: &str) -> User {
        let password = format!("{localpart}-password");
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register {localpart}: {body}");
        User {
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            password,
            token: body["access_token"].as_str().unwrap().to_owned(),
            device_id: body["device_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Logs `user` in again with a password; returns the login response.
    pub async fn login(&self, localpart: &str, password: &str, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.post("/_matrix/client/v3/login", None, body).await
    }
}

/// Asserts a Matrix error: status and errcode.
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: u16, errcode: &str) {
    assert_eq!(result.0.as_u16(), status, "status of {}", result.1);
    assert_eq!(result.1["errcode"], errcode, "errcode of {}", result.1);
    assert!(result.1["error"].is_string(), "error message in {}", result.1);
}
