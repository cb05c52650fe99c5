//! Server signing keys: this server's key document (`GET /_matrix/key/v2/server`), other
//! servers' keys fetched directly or through notaries and cached, answering notary queries,
//! and verifying the X-Matrix signature of inbound requests.

use crate::{
    SigningKey,
    client::{FederationClient, read_limited},
};
use myelin_core::{Error, ErrorKind, Result, util::now_ms};
use myelin_store::{KeyDocumentRow, OldSigningKeyRow, Store, VerifyKeyRow};
use reqwest::Method;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName,
    api::federation::authentication::XMatrix,
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet},
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Largest key document read from another server.
const MAX_KEY_DOCUMENT: usize = 256 * 1024;

pub struct ServerKeys {
    store: Store,
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    old_keys: Vec<OldSigningKeyRow>,
    validity: Duration,
    trusted: Vec<OwnedServerName>,
    client: Arc<FederationClient>,
    /// Verify keys per server, read through to the store.
    cache: Mutex<HashMap<OwnedServerName, Vec<VerifyKeyRow>>>,
    /// One fetch per server at a time; later askers wait and read what it stored.
    fetching: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
    /// When a server's keys were last fetched (or failed to be): not again before a pause.
    last_fetch: Mutex<HashMap<OwnedServerName, Instant>>,
}

fn unauthorized(message: impl Into<String>) -> Error {
    Error::new(http::StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
}

/// Checks that `object` carries a valid signature of `entity` by one of `keys` (signatures of
/// other entities, e.g. a notary's, are not looked at).
pub fn verify_signed_by(
    object: &CanonicalJsonObject,
    entity: &str,
    keys: &PublicKeySet,
) -> std::result::Result<(), String> {
    let mut only = object.clone();
    let Some(CanonicalJsonValue::Object(signatures)) = only.get_mut("signatures") else {
        return Err("no signatures".into());
    };
    signatures.retain(|name, _| name == entity);
    // ruma checks the signatures that are there: an object without one by `entity` (by a key
    // we know) would pass, so that is refused here.
    let signed_by_a_known_key = matches!(
        signatures.get(entity),
        Some(CanonicalJsonValue::Object(by_key)) if by_key.keys().any(|key_id| keys.contains_key(key_id))
    );
    if !signed_by_a_known_key {
        return Err(format!("not signed by {entity} with a known key"));
    }
    let map: PublicKeyMap = BTreeMap::from([(entity.to_owned(), keys.clone())]);
    ruma::signatures::verify_json(&map, &only).map_err(|e| e.to_string())
}

/// The longest a fetched key is trusted without fetching again (spec: the lesser of
/// `valid_until_ts` and now + 7 days).
const MAX_KEY_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;
/// After a failed fetch, the same server's keys are not fetched again for this long.
const FAILED_FETCH_PAUSE: Duration = Duration::from_secs(60);
/// A key document fetched this recently is not fetched again for a notary query.
const NOTARY_REFETCH_PAUSE_MS: i64 = 5 * 60 * 1000;

/// The verify keys a key document lists (current and old) with their validity, capped at
/// seven days from now.
fn keys_of(document: &CanonicalJsonObject) -> std::result::Result<(Vec<VerifyKeyRow>, i64), String> {
    let valid_until_ts = match document.get("valid_until_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => i64::from(*ts).min(now_ms() + MAX_KEY_VALIDITY_MS),
        _ => return Err("no valid_until_ts".into()),
    };
    let mut rows = Vec::new();
    if let Some(CanonicalJsonValue::Object(keys)) = document.get("verify_keys") {
        for (key_id, value) in keys {
            if let Some(CanonicalJsonValue::String(key)) = value.as_object().and_then(|o| o.get("key")) {
                rows.push(VerifyKeyRow {
                    key_id: key_id.clone(),
                    public_key: key.clone(),
                    valid_until_ts,
                    expired_ts: None,
                });
            }
        }
    }
    if let Some(CanonicalJsonValue::Object(keys)) = document.get("old_verify_keys") {
        for (key_id, value) in keys {
            let Some(object) = value.as_object() else { continue };
            if let (Some(CanonicalJsonValue::String(key)), Some(CanonicalJsonValue::Integer(expired))) =
                (object.get("key"), object.get("expired_ts"))
            {
                let expired = i64::from(*expired);
                rows.push(VerifyKeyRow {
                    key_id: key_id.clone(),
                    public_key: key.clone(),
                    valid_until_ts: expired,
                    expired_ts: Some(expired),
                });
            }
        }
    }
    if rows.iter().all(|row| row.expired_ts.is_some()) {
        return Err("no verify_keys".into());
    }
    Ok((rows, valid_until_ts))
}

fn as_key_set(rows: &[VerifyKeyRow], usable: impl Fn(&VerifyKeyRow) -> bool) -> PublicKeySet {
    rows.iter()
        .filter(|row| usable(row))
        .filter_map(|row| Some((row.key_id.clone(), Base64::parse(&row.public_key).ok()?)))
        .collect()
}

impl ServerKeys {
    pub(crate) async fn new(
        store: Store,
        server_name: OwnedServerName,
        key: Arc<SigningKey>,
        validity: Duration,
        trusted: Vec<OwnedServerName>,
        client: Arc<FederationClient>,
    ) -> Result<Self> {
        let old_keys = store.federation().old_signing_keys().await?;
        Ok(ServerKeys {
            store,
            server_name,
            key,
            old_keys,
            validity,
            trusted,
            client,
            cache: Mutex::default(),
            fetching: Mutex::default(),
            last_fetch: Mutex::default(),
        })
    }

    /// This server's key document, signed, valid for the configured time from now.
    pub fn own_document(&self) -> Result<CanonicalJsonObject> {
        let valid_until = now_ms() + self.validity.as_millis() as i64;
        let old: serde_json::Map<String, serde_json::Value> = self
            .old_keys
            .iter()
            .filter(|old| old.key_id != self.key.key_id())
            .map(|old| (old.key_id.clone(), serde_json::json!({ "key": old.public_key, "expired_ts": old.expired_ts })))
            .collect();
        let document = serde_json::json!({
            "server_name": self.server_name,
            "valid_until_ts": valid_until,
            "verify_keys": { self.key.key_id(): { "key": self.key.public_key_base64() } },
            "old_verify_keys": old,
        });
        let mut object: CanonicalJsonObject =
            serde_json::from_value(document).map_err(|e| Error::internal(format!("own key document: {e}")))?;
        ruma::signatures::sign_json(self.server_name.as_str(), self.key.pair(), &mut object)
            .map_err(|e| Error::internal(format!("signing the key document: {e}")))?;
        Ok(object)
    }

    /// The verify keys of `server`, fetching them when no key is valid at `valid_at` (ms).
    pub async fn verify_keys(&self, server: &ServerName, valid_at: i64) -> Result<Vec<VerifyKeyRow>> {
        self.verify_keys_with(server, valid_at, None).await
    }

    /// As `verify_keys`, also fetching when `wanted` (a key ID) is not among them: the server
    /// may have a new key. Fetches of one server are at least a minute apart.
    async fn verify_keys_with(
        &self,
        server: &ServerName,
        valid_at: i64,
        wanted: Option<&str>,
    ) -> Result<Vec<VerifyKeyRow>> {
        if server == self.server_name {
            let mut rows = vec![VerifyKeyRow {
                key_id: self.key.key_id(),
                public_key: self.key.public_key_base64(),
                valid_until_ts: i64::MAX,
                expired_ts: None,
            }];
            rows.extend(self.old_keys.iter().map(|old| VerifyKeyRow {
                key_id: old.key_id.clone(),
                public_key: old.public_key.clone(),
                valid_until_ts: old.expired_ts,
                expired_ts: Some(old.expired_ts),
            }));
            return Ok(rows);
        }
        let fresh = |rows: &[VerifyKeyRow]| {
            rows.iter().any(|r| r.expired_ts.is_none() && r.valid_until_ts >= valid_at)
                && wanted.is_none_or(|key_id| rows.iter().any(|r| r.key_id == key_id))
        };
        let paused = |keys: &Self| {
            keys.last_fetch
                .lock()
                .expect("key fetch times")
                .get(server)
                .is_some_and(|at| at.elapsed() < FAILED_FETCH_PAUSE)
        };
        if let Some(rows) = self.cached(server).await?
            && fresh(&rows)
        {
            return Ok(rows);
        }
        if paused(self) {
            return Ok(self.cached(server).await?.unwrap_or_default());
        }
        let lock = self.fetching.lock().expect("key fetch lock").entry(server.to_owned()).or_default().clone();
        let outcome = async {
            let _fetching = lock.lock().await;
            // Someone else may have fetched them while we waited.
            if let Some(rows) = self.cached(server).await?
                && (fresh(&rows) || paused(self))
            {
                return Ok(rows);
            }
            if let Err(e) = self.fetch(server).await {
                tracing::warn!(%server, "fetching server keys: {e}");
            }
            self.last_fetch.lock().expect("key fetch times").insert(server.to_owned(), Instant::now());
            self.cache.lock().expect("key cache").remove(server);
            Ok(self.cached(server).await?.unwrap_or_default())
        }
        .await;
        {
            let mut fetching = self.fetching.lock().expect("key fetch lock");
            // The map and this function hold the last references: nobody waits on it.
            if Arc::strong_count(&lock) <= 2 {
                fetching.remove(server);
            }
            let mut last = self.last_fetch.lock().expect("key fetch times");
            if last.len() > 10_000 {
                last.retain(|_, at| at.elapsed() < FAILED_FETCH_PAUSE);
            }
        }
        outcome
    }

    async fn cached(&self, server: &ServerName) -> Result<Option<Vec<VerifyKeyRow>>> {
        if let Some(rows) = self.cache.lock().expect("key cache").get(server) {
            return Ok(Some(rows.clone()));
        }
        let rows = self.store.federation().verify_keys(server.as_str()).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        self.cache.lock().expect("key cache").insert(server.to_owned(), rows.clone());
        Ok(Some(rows))
    }

    /// Fetches `server`'s keys from itself, else from each trusted notary in turn, and stores
    /// the first document that checks out.
    async fn fetch(&self, server: &ServerName) -> std::result::Result<(), String> {
        let mut errors = Vec::new();
        match self.fetch_direct(server).await {
            Ok(document) => return self.save(server, document).await,
            Err(e) => errors.push(format!("{server}: {e}")),
        }
        for notary in &self.trusted {
            if notary == server {
                continue;
            }
            match self.fetch_from_notary(notary, server).await {
                Ok(document) => return self.save(server, document).await,
                Err(e) => errors.push(format!("notary {notary}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    async fn fetch_direct(&self, server: &ServerName) -> std::result::Result<CanonicalJsonObject, String> {
        let response = self
            .client
            .request(server, Method::GET, "/_matrix/key/v2/server", None, false, false)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = read_limited(response, MAX_KEY_DOCUMENT).await?;
        let document: CanonicalJsonObject = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        self.check_document(server, &document)?;
        Ok(document)
    }

    async fn fetch_from_notary(
        &self,
        notary: &ServerName,
        server: &ServerName,
    ) -> std::result::Result<CanonicalJsonObject, String> {
        // The notary's own keys come from the notary directly, never through another notary
        // (which could ask back and wait on this very fetch).
        let notary_keys = match self.cached(notary).await.map_err(|e| e.to_string())? {
            Some(rows) if rows.iter().any(|r| r.expired_ts.is_none() && r.valid_until_ts >= now_ms()) => rows,
            _ => {
                let document = self.fetch_direct(notary).await?;
                self.save(notary, document).await?;
                self.cache.lock().expect("key cache").remove(notary);
                self.cached(notary).await.map_err(|e| e.to_string())?.unwrap_or_default()
            }
        };
        let notary_set = as_key_set(&notary_keys, |row| row.expired_ts.is_none());
        if notary_set.is_empty() {
            return Err("the notary's own keys are unknown".into());
        }
        let body = serde_json::to_vec(&serde_json::json!({ "server_keys": { server.as_str(): {} } }))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(notary, Method::POST, "/_matrix/key/v2/query", Some(body), false, true)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = read_limited(response, MAX_KEY_DOCUMENT * 4).await?;
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let documents = answer.get("server_keys").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let mut best: Option<(i64, CanonicalJsonObject)> = None;
        for document in documents {
            let Ok(document) = serde_json::from_value::<CanonicalJsonObject>(document) else { continue };
            if self.check_document(server, &document).is_err()
                || verify_signed_by(&document, notary.as_str(), &notary_set).is_err()
            {
                continue;
            }
            let valid_until = keys_of(&document).map(|(_, ts)| ts).unwrap_or_default();
            if best.as_ref().is_none_or(|(ts, _)| valid_until > *ts) {
                best = Some((valid_until, document));
            }
        }
        best.map(|(_, document)| document).ok_or_else(|| "no valid key document for the server".into())
    }

    /// A key document must be the server's own, signed by its own current keys.
    fn check_document(&self, server: &ServerName, document: &CanonicalJsonObject) -> std::result::Result<(), String> {
        match document.get("server_name") {
            Some(CanonicalJsonValue::String(name)) if name == server.as_str() => {}
            _ => return Err("the key document names another server".into()),
        }
        let (rows, _) = keys_of(document)?;
        let current = as_key_set(&rows, |row| row.expired_ts.is_none());
        verify_signed_by(document, server.as_str(), &current)
    }

    async fn save(&self, server: &ServerName, document: CanonicalJsonObject) -> std::result::Result<(), String> {
        let (rows, valid_until_ts) = keys_of(&document)?;
        let text = serde_json::to_string(&document).map_err(|e| e.to_string())?;
        let row =
            KeyDocumentRow { server_name: server.to_string(), document: text, valid_until_ts, fetched_ts: now_ms() };
        self.store.federation().save_server_keys(&row, &rows).await.map_err(|e| e.to_string())
    }

    /// A notary answer for `server`: its latest key document valid until at least
    /// `minimum_valid_until_ts`, fetched anew if the stored one is older, signed by this server
    /// too. Empty when none can be had.
    pub async fn notary_documents(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: i64,
    ) -> Result<Vec<CanonicalJsonObject>> {
        if server == self.server_name {
            return Ok(vec![self.own_document()?]);
        }
        if !self.client.may_talk_to(server) {
            return Ok(Vec::new());
        }
        let wanted = minimum_valid_until_ts.max(now_ms());
        let mut stored = self.store.federation().key_document(server.as_str()).await?;
        // An asker cannot make this server fetch again and again by asking for a validity the
        // server never publishes: a document fetched a few minutes ago is answered as it is.
        let recent = stored.as_ref().is_some_and(|doc| doc.fetched_ts > now_ms() - NOTARY_REFETCH_PAUSE_MS);
        if !recent && stored.as_ref().is_none_or(|doc| doc.valid_until_ts < wanted) {
            self.verify_keys(server, wanted).await?;
            stored = self.store.federation().key_document(server.as_str()).await?;
        }
        let Some(stored) = stored else { return Ok(Vec::new()) };
        let mut document: CanonicalJsonObject =
            serde_json::from_str(&stored.document).map_err(|e| Error::internal(format!("stored key document: {e}")))?;
        ruma::signatures::sign_json(self.server_name.as_str(), self.key.pair(), &mut document)
            .map_err(|e| Error::internal(format!("signing a notary answer: {e}")))?;
        Ok(vec![document])
    }

    /// Checks the X-Matrix `Authorization` of an inbound request and returns the origin.
    /// `uri` is the path and query as received; `body` the raw body (JSON or empty).
    pub async fn verify_request(
        &self,
        method: &http::Method,
        uri: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<OwnedServerName> {
        let x_matrix = XMatrix::extract_from_http_headers(headers)
            .map_err(|e| unauthorized(format!("Missing or malformed X-Matrix authorization: {e}")))?;
        if x_matrix.destination.as_deref().is_some_and(|d| d != self.server_name) {
            return Err(unauthorized(format!("This request is for another server, not {}", self.server_name)));
        }
        let origin = x_matrix.origin.clone();
        if origin == self.server_name {
            return Err(unauthorized("A request signed with this server's own name"));
        }
        if !self.client.may_talk_to(&origin) {
            return Err(Error::forbidden(format!("Federation with {origin} is not allowed here")));
        }
        let rows = self.verify_keys_with(&origin, now_ms(), Some(x_matrix.key.as_str())).await?;
        let usable = as_key_set(&rows, |row| row.expired_ts.is_none() && row.valid_until_ts >= now_ms());
        if !usable.contains_key(x_matrix.key.as_str()) {
            return Err(unauthorized(format!("Unknown or expired key {} of {origin}", x_matrix.key)));
        }
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|e| unauthorized(format!("Unusable request URI: {e}")))?;
        let map: PublicKeyMap = BTreeMap::from([(origin.to_string(), usable)]);
        x_matrix
            .verify_http_request(&request, &self.server_name, &map)
            .map_err(|e| unauthorized(format!("Invalid X-Matrix signature: {e}")))?;
        Ok(origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::signatures::Ed25519KeyPair;

    fn key(version: &str) -> (Ed25519KeyPair, PublicKeySet) {
        let pair = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), version.to_owned()).unwrap();
        let public = Base64::new(pair.public_key().to_vec());
        (pair, BTreeMap::from([(format!("ed25519:{version}"), public)]))
    }

    #[test]
    fn a_signature_of_the_entity_is_required() {
        let (pair, keys) = key("a");
        let (other, _) = key("b");
        let object: CanonicalJsonObject = serde_json::from_value(serde_json::json!({"x": 1})).unwrap();

        let mut signed = object.clone();
        ruma::signatures::sign_json("one.example", &pair, &mut signed).unwrap();
        assert!(verify_signed_by(&signed, "one.example", &keys).is_ok());

        let mut unsigned = object.clone();
        unsigned.insert("signatures".into(), CanonicalJsonValue::Object(Default::default()));
        assert!(verify_signed_by(&unsigned, "one.example", &keys).is_err());

        let mut by_another = object.clone();
        ruma::signatures::sign_json("two.example", &other, &mut by_another).unwrap();
        assert!(verify_signed_by(&by_another, "one.example", &keys).is_err());

        let mut unknown_key = object;
        ruma::signatures::sign_json("one.example", &other, &mut unknown_key).unwrap();
        assert!(verify_signed_by(&unknown_key, "one.example", &keys).is_err());
    }

    #[test]
    fn key_validity_is_capped_at_seven_days() {
        let far = now_ms() + 365 * 24 * 3600 * 1000;
        let document: CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "valid_until_ts": far,
            "verify_keys": {"ed25519:a": {"key": "abc"}},
        }))
        .unwrap();
        let (rows, valid_until) = keys_of(&document).unwrap();
        assert!(valid_until <= now_ms() + MAX_KEY_VALIDITY_MS);
        assert_eq!(rows[0].valid_until_ts, valid_until);
    }
}
