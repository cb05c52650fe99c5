//! Registration of new accounts, over the client API (with UIA) and from the admin CLI.

use crate::{Accounts, UiaDone, UiaFlows, login::NewSession, password, user_id::new_user_id};
use myelin_core::{
    Error, ErrorKind, Result,
    util::{now_ms, random_string},
};
use myelin_store::NewRegistration;
use ruma::{
    OwnedDeviceId, OwnedUserId,
    api::client::uiaa::{AuthData, AuthType, LoginTermsParams, PolicyDefinition, PolicyTranslation},
};
use std::collections::BTreeMap;

/// A registration request from a client.
#[derive(Debug, Default)]
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    pub auth: Option<AuthData>,
}

/// The new account, and its session unless `inhibit_login`.
#[derive(Debug)]
pub struct RegistrationOutcome {
    pub user_id: OwnedUserId,
    pub session: Option<NewSession>,
}

impl Accounts {
    /// The flows of registration: a token if required, the terms if any, else `m.login.dummy`.
    pub fn registration_flows(&self) -> UiaFlows {
        let registration = &self.config.registration;
        let mut stages = Vec::new();
        if registration.require_token {
            stages.push(AuthType::RegistrationToken);
        }
        let mut params = serde_json::Map::new();
        if !registration.terms.is_empty() {
            stages.push(AuthType::Terms);
            let policies: BTreeMap<String, PolicyDefinition> = registration
                .terms
                .iter()
                .map(|p| {
                    let translation = PolicyTranslation::new(p.name.clone(), p.url.clone());
                    (p.id.clone(), PolicyDefinition::new(p.version.clone(), [(p.lang.clone(), translation)].into()))
                })
                .collect();
            if let Ok(value) = serde_json::to_value(LoginTermsParams::new(policies)) {
                params.insert(AuthType::Terms.to_string(), value);
            }
        }
        if stages.is_empty() {
            stages.push(AuthType::Dummy);
        }
        UiaFlows { flows: vec![stages], params: (!params.is_empty()).then_some(params.into()) }
    }

    /// `GET /register/available`: Ok when the username is valid and free.
    pub async fn check_username_available(&self, username: &str) -> Result<()> {
        let user_id = new_user_id(username, &self.config.server_name)?;
        if self.store.users().exists(user_id.as_str()).await? {
            return Err(user_in_use());
        }
        Ok(())
    }

    /// `POST /register`: checks the request, runs UIA, then creates the account, its device
    /// and tokens in one transaction.
    pub async fn register(&self, request: Registration) -> Result<RegistrationOutcome> {
        if !self.config.registration.enabled {
            return Err(Error::forbidden("Registration is disabled on this server"));
        }
        // Check what can be checked before UIA, so the client learns of a taken name at once.
        let user_id = match &request.username {
            Some(username) => {
                self.check_username_available(username).await?;
                Some(new_user_id(username, &self.config.server_name)?)
            }
            None => None,
        };
        let Some(password) = &request.password else {
            return Err(Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::MissingParam, "A password is required"));
        };
        self.check_password_strength(password)?;

        let done: UiaDone = self.user_interactive_auth(&self.registration_flows(), None, request.auth.as_ref()).await?;

        let user_id = match user_id {
            Some(user_id) => user_id,
            None => new_user_id(&random_string(12).to_lowercase(), &self.config.server_name)?,
        };
        let password_hash = password::hash(password).await?;
        let mut registration = NewRegistration {
            user_id: user_id.to_string(),
            password_hash: Some(password_hash),
            displayname: Some(user_id.localpart().to_owned()),
            now_ms: now_ms(),
            registration_token: done.registration_token,
            ..Default::default()
        };
        let session = if request.inhibit_login {
            None
        } else {
            let (session, token) = self.new_session(&user_id, request.device_id.clone(), request.refresh_token);
            registration.device = Some((session.device_id.to_string(), request.initial_device_display_name.clone()));
            registration.access_token = Some(token);
            Some(session)
        };
        match self.store.users().register(&registration).await {
            Ok(()) => {}
            Err(myelin_store::Error::Conflict) => return Err(user_in_use()),
            Err(myelin_store::Error::TokenNotUsable) => {
                return Err(Error::new(
                    http::StatusCode::UNAUTHORIZED,
                    ErrorKind::Unauthorized,
                    "The registration token was used up while registering",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(%user_id, "registered");
        Ok(RegistrationOutcome { user_id, session })
    }

    /// Creates an account from the admin CLI: no UIA, no registration switch, no session.
    pub async fn create_user(&self, localpart: &str, password: Option<&str>, is_admin: bool) -> Result<OwnedUserId> {
        let user_id = new_user_id(localpart, &self.config.server_name)?;
        let password_hash = match password {
            Some(password) => {
                self.check_password_strength(password)?;
                Some(password::hash(password).await?)
            }
            None => None,
        };
        let registration = NewRegistration {
            user_id: user_id.to_string(),
            password_hash,
            is_admin,
            displayname: Some(user_id.localpart().to_owned()),
            now_ms: now_ms(),
            ..Default::default()
        };
        match self.store.users().register(&registration).await {
            Err(myelin_store::Error::Conflict) => Err(user_in_use()),
            other => other.map(|()| user_id).map_err(Into::into),
        }
    }

    pub(crate) fn check_password_strength(&self, password: &str) -> Result<()> {
        let min = self.config.auth.password_min_length;
        if password.chars().count() < min {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::WeakPassword,
                format!("The password must be at least {min} characters long"),
            ));
        }
        if password.len() > 512 {
            return Err(Error::invalid_param("The password is longer than 512 bytes"));
        }
        Ok(())
    }
}

fn user_in_use() -> Error {
    Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::UserInUse, "That user ID is already taken")
}
