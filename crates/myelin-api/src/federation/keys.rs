//! `GET /_matrix/key/v2/server` (this server's keys) and the notary endpoints
//! `GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query`.

use super::Federated;
use crate::{ApiError, Services, client::RouteRuma, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::{Error, util::now_ms};
use ruma::{
    CanonicalJsonObject,
    api::federation::discovery::{
        ServerSigningKeys, get_remote_server_keys::v2 as query_one, get_remote_server_keys_batch::v2 as query_batch,
        get_server_keys::v2 as server_keys,
    },
    serde::Raw,
};
use std::sync::Arc;

/// At most this many servers in one batch query.
const MAX_BATCH: usize = 100;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<server_keys::Request, _, _>(get_server_keys)
        .ruma::<query_one::Request, _, _>(get_query)
        .ruma::<query_batch::Request, _, _>(post_query)
}

fn raw(object: &CanonicalJsonObject) -> Result<Raw<ServerSigningKeys>, ApiError> {
    serde_json::value::to_raw_value(object)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("serializing a key document: {e}")).into())
}

/// `GET /_matrix/key/v2/server`
async fn get_server_keys(
    State(services): State<Arc<Services>>,
    _: Federated<server_keys::Request>,
) -> ApiResult<server_keys::Response> {
    let document = services.federation.keys.own_document()?;
    Ok(server_keys::Response::new(raw(&document)?).into())
}

/// `GET /_matrix/key/v2/query/{serverName}`
async fn get_query(
    State(services): State<Arc<Services>>,
    request: Federated<query_one::Request>,
) -> ApiResult<query_one::Response> {
    let minimum = i64::from(request.body.minimum_valid_until_ts.0);
    let documents = services.federation.keys.notary_documents(&request.body.server_name, minimum).await?;
    Ok(query_one::Response::new(documents.iter().map(raw).collect::<Result<_, _>>()?).into())
}

/// `POST /_matrix/key/v2/query`
async fn post_query(
    State(services): State<Arc<Services>>,
    request: Federated<query_batch::Request>,
) -> ApiResult<query_batch::Response> {
    if request.body.server_keys.len() > MAX_BATCH {
        return Err(Error::invalid_param(format!("At most {MAX_BATCH} servers per query")).into());
    }
    let mut answer = Vec::new();
    for (server, criteria) in &request.body.server_keys {
        let minimum = criteria
            .values()
            .filter_map(|c| c.minimum_valid_until_ts)
            .map(|ts| i64::from(ts.0))
            .max()
            .unwrap_or_else(now_ms);
        for document in services.federation.keys.notary_documents(server, minimum).await? {
            answer.push(raw(&document)?);
        }
    }
    Ok(query_batch::Response::new(answer).into())
}
