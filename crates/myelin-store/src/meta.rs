//! Server-wide facts that must outlive restarts (e.g. when a freeze started).

use crate::{Result, db::Db, db::on_db};

pub struct Meta<'a>(pub(crate) &'a Db);

impl Meta<'_> {
    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1").bind(key).fetch_optional(pool).await?
        }))
    }

    /// Stores `value` unless the key has one already; returns the value that is stored now.
    pub async fn get_or_insert(&self, key: &str, value: &str) -> Result<String> {
        on_db!(self.0, write, |pool| {
            sqlx::query("INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(pool)
                .await?;
            Ok(sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1").bind(key).fetch_one(pool).await?)
        })
    }
}
