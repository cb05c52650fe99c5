//! Keys of other servers' users for local clients (`/keys/query`, `/keys/claim` over
//! `/_matrix/federation/v1/user/keys/*`), and this server's answer to `GET
//! /_matrix/federation/v1/user/devices/{userId}`. Servers are asked concurrently, each within
//! a deadline; a server that fails or refuses is reported in `failures`, the rest is answered.

use super::device_keys::{ClaimedKeys, KeysQuery};
use crate::service::RoomService;
use futures_util::future::join_all;
use myelin_core::{Error, Result};
use myelin_federation::FederationError;
use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId,
    api::federation::keys::{claim_keys::v1 as claim, get_keys::v1 as query},
    serde::Raw,
};
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};

/// How long a remote server may take to answer a key query or claim.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

fn failure(error: &FederationError) -> Value {
    let status = match error {
        FederationError::Refused { status, .. } => *status,
        FederationError::Forbidden(_) | FederationError::Disabled => 403,
        _ => 503,
    };
    json!({"status": status, "message": error.to_string()})
}

fn to_value<T>(raw: &Raw<T>) -> Option<Value> {
    serde_json::from_str(raw.json().get()).ok()
}

/// A device as `/user/devices` lists it.
pub struct FederationDevice {
    pub device_id: String,
    pub keys: Value,
    pub display_name: Option<String>,
}

/// A local user's devices and cross-signing keys, for another server.
pub struct FederationDevices {
    pub stream_id: u64,
    pub devices: Vec<FederationDevice>,
    pub master_key: Option<Value>,
    pub self_signing_key: Option<Value>,
}

impl RoomService {
    async fn ask<T>(
        &self,
        server: &OwnedServerName,
        request: T,
    ) -> std::result::Result<T::IncomingResponse, FederationError>
    where
        T: ruma::api::OutgoingRequest<
                Authentication = ruma::api::federation::authentication::ServerSignatures,
                PathBuilder = ruma::api::path_builder::SinglePath,
            >,
    {
        match tokio::time::timeout(REMOTE_TIMEOUT, self.federation.client.send(server, request)).await {
            Ok(answer) => answer,
            Err(_) => Err(FederationError::Unreachable {
                destination: server.to_string(),
                message: format!("no answer within {} s", REMOTE_TIMEOUT.as_secs()),
            }),
        }
    }

    pub(crate) async fn query_remote_keys(
        &self,
        wanted: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>>,
        out: &mut KeysQuery,
    ) {
        let answers = join_all(wanted.into_iter().map(|(server, users)| async move {
            let answer = self.ask(&server, query::Request::new(users)).await;
            (server, answer)
        }))
        .await;
        for (server, answer) in answers {
            let response = match answer {
                Ok(response) => response,
                Err(e) => {
                    out.failures.insert(server.to_string(), failure(&e));
                    continue;
                }
            };
            // A server speaks for its own users only.
            let its_own = |user: &UserId| user.server_name() == server;
            for (user, devices) in response.device_keys.iter().filter(|(u, _)| its_own(u)) {
                let devices = devices.iter().filter_map(|(d, k)| Some((d.to_string(), to_value(k)?))).collect();
                out.device_keys.insert(user.to_string(), devices);
            }
            for (from, to) in [
                (&response.master_keys, &mut out.master_keys),
                (&response.self_signing_keys, &mut out.self_signing_keys),
            ] {
                for (user, key) in from.iter().filter(|(u, _)| its_own(u)) {
                    if let Some(key) = to_value(key) {
                        to.insert(user.to_string(), key);
                    }
                }
            }
        }
    }

    pub(crate) async fn claim_remote_keys(
        &self,
        wanted: BTreeMap<OwnedServerName, BTreeMap<String, BTreeMap<String, String>>>,
        claimed: &mut ClaimedKeys,
        failures: &mut BTreeMap<String, Value>,
    ) {
        let answers = join_all(wanted.into_iter().map(|(server, users)| async move {
            let claims = users
                .into_iter()
                .filter_map(|(user, devices)| {
                    let user = OwnedUserId::try_from(user).ok()?;
                    let devices = devices
                        .into_iter()
                        .map(|(d, a)| (OwnedDeviceId::from(d), OneTimeKeyAlgorithm::from(a.as_str())))
                        .collect();
                    Some((user, devices))
                })
                .collect();
            let answer = self.ask(&server, claim::Request::new(claims)).await;
            (server, answer)
        }))
        .await;
        for (server, answer) in answers {
            match answer {
                Ok(response) => {
                    for (user, devices) in response.one_time_keys.iter().filter(|(u, _)| u.server_name() == server) {
                        let entry = claimed.entry(user.to_string()).or_default();
                        for (device, keys) in devices {
                            let keys = keys.iter().filter_map(|(id, k)| Some((id.to_string(), to_value(k)?))).collect();
                            entry.insert(device.to_string(), keys);
                        }
                    }
                }
                Err(e) => {
                    failures.insert(server.to_string(), failure(&e));
                }
            }
        }
    }

    /// `GET /_matrix/federation/v1/user/devices/{userId}` for a local user.
    pub async fn devices_for_federation(&self, user: &UserId) -> Result<FederationDevices> {
        if user.server_name() != self.config.server_name {
            return Err(Error::forbidden("Only this server's users' devices are listed here"));
        }
        let wanted = BTreeMap::from([(user.to_string(), Vec::new())]);
        let mut keys = self.query_keys(None, &wanted).await?;
        let mut with_keys = keys.device_keys.remove(user.as_str()).unwrap_or_default();
        let devices = self
            .store
            .users()
            .devices(user.as_str())
            .await?
            .into_iter()
            .filter_map(|d| {
                let keys = with_keys.remove(&d.device_id)?;
                Some(FederationDevice { device_id: d.device_id, keys, display_name: d.display_name })
            })
            .collect();
        let stream_id = self.store.keys().latest_device_list_change(user.as_str()).await?.max(0) as u64;
        Ok(FederationDevices {
            stream_id,
            devices,
            master_key: keys.master_keys.remove(user.as_str()),
            self_signing_key: keys.self_signing_keys.remove(user.as_str()),
        })
    }
}
