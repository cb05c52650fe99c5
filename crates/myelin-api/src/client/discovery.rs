//! Discovery: `/versions` and `/capabilities`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use ruma::{
    RoomVersionId,
    api::client::discovery::{
        get_capabilities::v3 as capabilities,
        get_capabilities::v3::{Capabilities, RoomVersionStability, RoomVersionsCapability},
        get_supported_versions,
    },
};
use std::{collections::BTreeMap, sync::Arc};

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<get_supported_versions::Request, _, _>(versions).ruma::<capabilities::Request, _, _>(capabilities)
}

/// The Matrix versions Myelin speaks: every stable release up to v1.11.
pub const SUPPORTED_VERSIONS: &[&str] =
    &["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"];

/// `GET /_matrix/client/versions`
async fn versions(_: Ruma<get_supported_versions::Request>) -> ApiResult<get_supported_versions::Response> {
    let versions = SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect();
    Ok(get_supported_versions::Response::new(versions).into())
}

/// `GET /_matrix/client/v3/capabilities`
async fn capabilities(
    State(_services): State<Arc<Services>>,
    _: Ruma<capabilities::Request>,
) -> ApiResult<capabilities::Response> {
    let mut caps = Capabilities::new();
    caps.change_password.enabled = true;
    caps.thirdparty_id_changes.enabled = false;
    caps.get_login_token.enabled = false;
    // The same list room creation accepts.
    let available: BTreeMap<RoomVersionId, RoomVersionStability> =
        myelin_rooms::supported_room_versions().into_iter().map(|v| (v, RoomVersionStability::Stable)).collect();
    caps.room_versions = RoomVersionsCapability::new(myelin_rooms::DEFAULT_ROOM_VERSION, available);
    Ok(capabilities::Response::new(caps).into())
}
