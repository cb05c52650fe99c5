//! End-to-end encryption keys: `/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`,
//! `/keys/device_signing/upload` and `/keys/signatures/upload`.

use super::RouteRuma;
use crate::{Ruma, Services, keys_json, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_accounts::UiaFlows;
use myelin_core::Error;
use myelin_rooms::e2ee::{CrossSigningUpload, UploadedKey};
use ruma::{
    OneTimeKeyAlgorithm, OwnedOneTimeKeyId, OwnedUserId, UInt,
    api::client::keys::{
        claim_keys::v3 as claim_keys, get_key_changes::v3 as get_key_changes, get_keys::v3 as get_keys,
        upload_keys::v3 as upload_keys, upload_signatures::v3 as upload_signatures,
        upload_signing_keys::v3 as upload_signing_keys,
    },
    serde::Raw,
};
use std::{collections::BTreeMap, sync::Arc};

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<upload_keys::Request, _, _>(upload)
        .ruma::<get_keys::Request, _, _>(query)
        .ruma::<claim_keys::Request, _, _>(claim)
        .ruma::<get_key_changes::Request, _, _>(changes)
        .ruma::<upload_signing_keys::Request, _, _>(upload_signing)
        .ruma::<upload_signatures::Request, _, _>(upload_signed)
}

fn uploaded<T>(keys: &BTreeMap<OwnedOneTimeKeyId, Raw<T>>) -> Vec<UploadedKey> {
    keys.iter().map(|(id, key)| UploadedKey { id: id.to_string(), json: key.json().get().to_owned() }).collect()
}

fn counts(counts: BTreeMap<String, u64>) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    counts.into_iter().map(|(a, n)| (OneTimeKeyAlgorithm::from(a.as_str()), UInt::new_saturating(n))).collect()
}

/// `POST /_matrix/client/v3/keys/upload`
async fn upload(
    State(services): State<Arc<Services>>,
    request: Ruma<upload_keys::Request>,
) -> ApiResult<upload_keys::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let counts_now = services
        .rooms
        .upload_keys(
            &identity.user_id,
            &identity.device_id,
            b.device_keys.as_ref().map(|k| k.json().get()),
            &uploaded(&b.one_time_keys),
            &uploaded(&b.fallback_keys),
        )
        .await?;
    Ok(upload_keys::Response::new(counts(counts_now)).into())
}

/// `POST /_matrix/client/v3/keys/query`
async fn query(
    State(services): State<Arc<Services>>,
    request: Ruma<get_keys::Request>,
) -> ApiResult<get_keys::Response> {
    let identity = request.identity()?;
    let wanted = keys_json::wanted_devices(&request.body.device_keys);
    let keys = services.rooms.query_keys(Some(&identity.user_id), &wanted).await?;
    let mut response = get_keys::Response::new();
    response.failures = keys.failures;
    response.device_keys = keys_json::device_keys(keys.device_keys)?;
    response.master_keys = keys_json::user_keys(keys.master_keys)?;
    response.self_signing_keys = keys_json::user_keys(keys.self_signing_keys)?;
    response.user_signing_keys = keys_json::user_keys(keys.user_signing_keys)?;
    Ok(response.into())
}

fn user_id(user: &str) -> Result<OwnedUserId, Error> {
    OwnedUserId::try_from(user).map_err(Error::internal)
}

/// `POST /_matrix/client/v3/keys/claim`
async fn claim(
    State(services): State<Arc<Services>>,
    request: Ruma<claim_keys::Request>,
) -> ApiResult<claim_keys::Response> {
    request.identity()?;
    let wanted = keys_json::wanted_claims(&request.body.one_time_keys);
    let (claimed, failures) = services.rooms.claim_keys(&wanted, false).await?;
    let mut response = claim_keys::Response::new(keys_json::claimed(claimed)?);
    response.failures = failures;
    Ok(response.into())
}

/// `GET /_matrix/client/v3/keys/changes`
async fn changes(
    State(services): State<Arc<Services>>,
    request: Ruma<get_key_changes::Request>,
) -> ApiResult<get_key_changes::Response> {
    let identity = request.identity()?;
    let (changed, left) = services.rooms.key_changes(&identity.user_id, &request.body.from, &request.body.to).await?;
    let parse = |users: Vec<String>| users.iter().map(|u| user_id(u)).collect::<Result<Vec<_>, _>>();
    Ok(get_key_changes::Response::new(parse(changed)?, parse(left)?).into())
}

/// `POST /_matrix/client/v3/keys/device_signing/upload` (UIA, except for the first upload)
async fn upload_signing(
    State(services): State<Arc<Services>>,
    request: Ruma<upload_signing_keys::Request>,
) -> ApiResult<upload_signing_keys::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let json = |key: &Option<Raw<_>>| key.as_ref().map(|k: &Raw<_>| k.json().get().to_owned());
    let upload = CrossSigningUpload {
        master_key: json(&b.master_key),
        self_signing_key: json(&b.self_signing_key),
        user_signing_key: json(&b.user_signing_key),
    };
    if services.rooms.cross_signing_upload_needs_auth(&identity.user_id, &upload).await? {
        services
            .accounts
            .user_interactive_auth(&UiaFlows::password(), Some(&identity.user_id), b.auth.as_ref())
            .await?;
    }
    services.rooms.upload_cross_signing_keys(&identity.user_id, &upload).await?;
    Ok(upload_signing_keys::Response::new().into())
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
async fn upload_signed(
    State(services): State<Arc<Services>>,
    request: Ruma<upload_signatures::Request>,
) -> ApiResult<upload_signatures::Response> {
    let identity = request.identity()?;
    let mut signed: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (user, keys) in &request.body.signed_keys {
        let entry = signed.entry(user.to_string()).or_default();
        for (key_id, json) in keys.iter() {
            entry.insert(key_id.to_owned(), json.get().to_owned());
        }
    }
    let failures = services.rooms.upload_signatures(&identity.user_id, &signed).await?;
    let mut response = upload_signatures::Response::new();
    for (user, keys) in failures {
        let mut out = BTreeMap::new();
        for (key_id, failure) in keys {
            let failure =
                serde_json::from_value(serde_json::json!({"errcode": failure.errcode, "error": failure.error}))
                    .map_err(Error::internal)?;
            out.insert(key_id, failure);
        }
        response.failures.insert(user_id(&user)?, out);
    }
    Ok(response.into())
}
