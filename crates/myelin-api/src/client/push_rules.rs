//! Push rules: `/pushrules/` and `/pushrules/global/{kind}/{ruleId}[/enabled|/actions]`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::api::client::push::{
    delete_pushrule::v3 as delete_rule, get_pushrule::v3 as get_rule, get_pushrule_actions::v3 as get_actions,
    get_pushrule_enabled::v3 as get_enabled, get_pushrules_all::v3 as get_all,
    get_pushrules_global_scope::v3 as get_global, set_pushrule::v3 as set_rule,
    set_pushrule_actions::v3 as set_actions, set_pushrule_enabled::v3 as set_enabled,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_all::Request, _, _>(all)
        .ruma::<get_global::Request, _, _>(global)
        .ruma::<get_rule::Request, _, _>(rule)
        .ruma::<set_rule::Request, _, _>(put_rule)
        .ruma::<delete_rule::Request, _, _>(remove_rule)
        .ruma::<get_enabled::Request, _, _>(enabled)
        .ruma::<set_enabled::Request, _, _>(put_enabled)
        .ruma::<get_actions::Request, _, _>(actions)
        .ruma::<set_actions::Request, _, _>(put_actions)
}

/// `GET /_matrix/client/v3/pushrules/`
async fn all(State(services): State<Arc<Services>>, request: Ruma<get_all::Request>) -> ApiResult<get_all::Response> {
    let identity = request.identity()?;
    Ok(get_all::Response::new(services.rooms.push_rules(&identity.user_id).await?).into())
}

/// `GET /_matrix/client/v3/pushrules/global/`
async fn global(
    State(services): State<Arc<Services>>,
    request: Ruma<get_global::Request>,
) -> ApiResult<get_global::Response> {
    let identity = request.identity()?;
    Ok(get_global::Response::new(services.rooms.push_rules(&identity.user_id).await?).into())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn rule(
    State(services): State<Arc<Services>>,
    request: Ruma<get_rule::Request>,
) -> ApiResult<get_rule::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let rule = services.rooms.push_rule(&identity.user_id, b.kind.clone(), &b.rule_id).await?;
    let rule = serde_json::from_value(rule).map_err(Error::internal)?;
    Ok(get_rule::Response::new(rule).into())
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn put_rule(
    State(services): State<Arc<Services>>,
    request: Ruma<set_rule::Request>,
) -> ApiResult<set_rule::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services.rooms.set_push_rule(&identity.user_id, b.rule.clone(), b.after.as_deref(), b.before.as_deref()).await?;
    Ok(set_rule::Response::new().into())
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn remove_rule(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_rule::Request>,
) -> ApiResult<delete_rule::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services.rooms.delete_push_rule(&identity.user_id, b.kind.clone(), &b.rule_id).await?;
    Ok(delete_rule::Response::new().into())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn enabled(
    State(services): State<Arc<Services>>,
    request: Ruma<get_enabled::Request>,
) -> ApiResult<get_enabled::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let rule = services.rooms.push_rule(&identity.user_id, b.kind.clone(), &b.rule_id).await?;
    Ok(get_enabled::Response::new(rule["enabled"].as_bool().unwrap_or(true)).into())
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn put_enabled(
    State(services): State<Arc<Services>>,
    request: Ruma<set_enabled::Request>,
) -> ApiResult<set_enabled::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services.rooms.set_push_rule_enabled(&identity.user_id, b.kind.clone(), &b.rule_id, b.enabled).await?;
    Ok(set_enabled::Response::new().into())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn actions(
    State(services): State<Arc<Services>>,
    request: Ruma<get_actions::Request>,
) -> ApiResult<get_actions::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let rule = services.rooms.push_rule(&identity.user_id, b.kind.clone(), &b.rule_id).await?;
    let actions = serde_json::from_value(rule["actions"].clone()).map_err(Error::internal)?;
    Ok(get_actions::Response::new(actions).into())
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn put_actions(
    State(services): State<Arc<Services>>,
    request: Ruma<set_actions::Request>,
) -> ApiResult<set_actions::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services.rooms.set_push_rule_actions(&identity.user_id, b.kind.clone(), &b.rule_id, b.actions.clone()).await?;
    Ok(set_actions::Response::new().into())
}
