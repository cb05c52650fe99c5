//! User-Interactive Authentication sessions, kept in the database so that any process
//! sharing it can continue a session.

use crate::{Result, db::Db, db::on_db};

pub struct UiaSessions<'a>(pub(crate) &'a Db);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UiaSession {
    pub session_id: String,
    /// The user the session authenticates (None while registering).
    pub user_id: Option<String>,
    /// JSON array of the completed stage types.
    pub completed: String,
    /// JSON object of what the stages established (e.g. the registration token used).
    pub data: String,
    pub created_ts: i64,
}

impl UiaSessions<'_> {
    pub async fn create(&self, session: &UiaSession) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO uia_sessions (session_id, user_id, completed, data, created_ts)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&session.session_id)
            .bind(&session.user_id)
            .bind(&session.completed)
            .bind(&session.data)
            .bind(session.created_ts)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn get(&self, session_id: &str) -> Result<Option<UiaSession>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM uia_sessions WHERE session_id = $1")
                .bind(session_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn update(&self, session_id: &str, completed: &str, data: &str) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE uia_sessions SET completed = $2, data = $3 WHERE session_id = $1")
                .bind(session_id)
                .bind(completed)
                .bind(data)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn delete(&self, session_id: &str) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM uia_sessions WHERE session_id = $1").bind(session_id).execute(pool).await?;
        });
        Ok(())
    }

    /// Removes sessions created before `before_ts`; returns how many.
    pub async fn purge_older_than(&self, before_ts: i64) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM uia_sessions WHERE created_ts < $1")
                .bind(before_ts)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
