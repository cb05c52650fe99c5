//! Fresh databases for tests: each test gets its own PostgreSQL database (on the server named
//! by `MYELIN_TEST_POSTGRES_URL`, default the local one) or SQLite file, so runs never collide.

use sqlx::{Connection, PgConnection};

/// The maintenance database tests create their databases from.
pub fn postgres_admin_url() -> String {
    std::env::var("MYELIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty database and returns (its URL, its name).
pub async fn create_postgres_database() -> Result<(String, String), sqlx::Error> {
    let admin = postgres_admin_url();
    let name = format!("myelin_test_{}_{}", std::process::id(), myelin_core::util::random_string(10).to_lowercase());
    let mut conn = PgConnection::connect(&admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
    Ok((format!("{base}/{name}"), name))
}

/// Drops a test database, even with connections still open.
pub async fn drop_postgres_database(name: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(&postgres_admin_url()).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut conn).await?;
    conn.close().await
}

/// Drops a test database from synchronous code (a `Drop` impl), on a thread of its own.
pub fn drop_postgres_database_blocking(name: String) {
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            let _ = runtime.block_on(drop_postgres_database(&name));
        }
    })
    .join();
}
