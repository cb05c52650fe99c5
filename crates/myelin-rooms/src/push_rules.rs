//! Push rules: the spec's server-default rules (ruma has them) plus the user's own, kept as the
//! `m.push_rules` account data, so `/sync` delivers them as clients expect.

use crate::service::RoomService;
use myelin_core::{Error, ErrorKind, Result};
use ruma::{
    UserId,
    push::{Action, AnyPushRuleRef, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind, Ruleset},
};
use serde_json::{Value, json};

fn not_found() -> Error {
    Error::not_found("no such push rule")
}

fn insert_error(e: InsertPushRuleError) -> Error {
    match e {
        InsertPushRuleError::UnknownRuleId => Error::not_found(e.to_string()),
        other => Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, other.to_string()),
    }
}

impl RoomService {
    /// The user's rule set: the stored one, or the server defaults.
    pub async fn push_rules(&self, user: &UserId) -> Result<Ruleset> {
        let stored = self.store.rooms().account_data(user.as_str(), "", "m.push_rules").await?;
        let mut ruleset = Ruleset::server_default(user);
        if let Some(text) = stored {
            let value: Value = serde_json::from_str(&text).map_err(Error::internal)?;
            if let Ok(stored) = serde_json::from_value::<Ruleset>(value["global"].clone()) {
                // Server-default rules come from this server's version of them; the user's
                // enabled flags and actions on them are kept.
                ruleset = stored;
            }
        }
        Ok(ruleset)
    }

    async fn save_push_rules(&self, user: &UserId, ruleset: &Ruleset) -> Result<()> {
        let content = json!({ "global": ruleset });
        self.store_server_account_data(user, "m.push_rules", &content).await?;
        self.forget_push_rules(user);
        Ok(())
    }

    /// Adds or replaces a rule of the user's, placed relative to `before` / `after`.
    pub async fn set_push_rule(
        &self,
        user: &UserId,
        rule: NewPushRule,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<()> {
        let mut ruleset = self.push_rules(user).await?;
        ruleset.insert(rule, after, before).map_err(insert_error)?;
        self.save_push_rules(user, &ruleset).await
    }

    pub async fn delete_push_rule(&self, user: &UserId, kind: RuleKind, rule_id: &str) -> Result<()> {
        let mut ruleset = self.push_rules(user).await?;
        ruleset.remove(kind, rule_id).map_err(|e| match e {
            RemovePushRuleError::NotFound => not_found(),
            other => Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, other.to_string()),
        })?;
        self.save_push_rules(user, &ruleset).await
    }

    /// One rule as JSON (its `enabled` and `actions` included).
    pub async fn push_rule(&self, user: &UserId, kind: RuleKind, rule_id: &str) -> Result<Value> {
        let ruleset = self.push_rules(user).await?;
        let rule = ruleset.get(kind, rule_id).ok_or_else(not_found)?;
        let value = match rule {
            AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => serde_json::to_value(r),
            AnyPushRuleRef::Content(r) => serde_json::to_value(r),
            AnyPushRuleRef::Room(r) => serde_json::to_value(r),
            AnyPushRuleRef::Sender(r) => serde_json::to_value(r),
            _ => return Err(not_found()),
        };
        value.map_err(Error::internal)
    }

    pub async fn set_push_rule_enabled(
        &self,
        user: &UserId,
        kind: RuleKind,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        let mut ruleset = self.push_rules(user).await?;
        ruleset.set_enabled(kind, rule_id, enabled).map_err(|_| not_found())?;
        self.save_push_rules(user, &ruleset).await
    }

    pub async fn set_push_rule_actions(
        &self,
        user: &UserId,
        kind: RuleKind,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        let mut ruleset = self.push_rules(user).await?;
        ruleset.set_actions(kind, rule_id, actions).map_err(|_| not_found())?;
        self.save_push_rules(user, &ruleset).await
    }
}
