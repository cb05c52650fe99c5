//! User-Interactive Authentication: flows, sessions and the checks of each stage.

use crate::{Accounts, password, user_id::parse_local_user_id};
use myelin_core::{
    Error, ErrorKind, Result,
    util::{now_ms, random_string},
};
use myelin_store::UiaSession;
use ruma::{
    OwnedUserId, UserId,
    api::{
        client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier},
        error::StandardErrorBody,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::value::to_raw_value;
use std::time::Duration;

/// How long an unfinished UIA session lives.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The flows an endpoint accepts, with the parameters of their stages.
#[derive(Debug, Clone)]
pub struct UiaFlows {
    pub flows: Vec<Vec<AuthType>>,
    pub params: Option<serde_json::Value>,
}

impl UiaFlows {
    /// The single flow `[m.login.password]` that protects account changes.
    pub fn password() -> Self {
        UiaFlows { flows: vec![vec![AuthType::Password]], params: None }
    }
}

/// What a completed UIA proved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UiaDone {
    /// The user whose password was given, if a password stage ran.
    pub user_id: Option<OwnedUserId>,
    /// The registration token accepted, if that stage ran and the token is a database one.
    pub registration_token: Option<String>,
}

impl Accounts {
    /// Runs one step of UIA for a request. `subject` is the user the request acts for, when
    /// known (from the access token); a password stage must then be that user's.
    /// Returns `UiaDone` once some flow is complete, else `Error::Uiaa` with what is left.
    pub async fn user_interactive_auth(
        &self,
        flows: &UiaFlows,
        subject: Option<&UserId>,
        auth: Option<&AuthData>,
    ) -> Result<UiaDone> {
        let store = self.store.uia();
        let Some(auth) = auth else {
            let session = self.new_uia_session(subject).await?;
            return Err(challenge(flows, &session, Vec::new(), None));
        };
        let mut session = match auth.session() {
            Some(id) => store
                .get(id)
                .await?
                .filter(|s| s.created_ts > now_ms() - SESSION_LIFETIME.as_millis() as i64)
                .ok_or_else(|| {
                    Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::Unknown, "Unknown or expired UIA session")
                })?,
            // Clients may complete a first stage without asking for a session.
            None => self.new_uia_session(subject).await?,
        };
        if let (Some(owner), Some(subject)) = (&session.user_id, subject)
            && owner != subject.as_str()
        {
            return Err(Error::forbidden("This UIA session belongs to another user"));
        }
        let mut completed: Vec<AuthType> = serde_json::from_str(&session.completed).map_err(Error::internal)?;
        let mut done: UiaDone = serde_json::from_str(&session.data).map_err(Error::internal)?;

        if let Some(stage) = auth.auth_type() {
            let allowed =
                flows.flows.iter().any(|flow| flow.contains(&stage) && completed.iter().all(|c| flow.contains(c)));
            if !allowed || completed.contains(&stage) {
                let failure = failure(ErrorKind::Unrecognized, format!("Stage {stage} is not expected now"));
                return Err(challenge(flows, &session, completed, Some(failure)));
            }
            if let Err(failure) = self.check_stage(auth, subject, &mut done).await? {
                return Err(challenge(flows, &session, completed, Some(failure)));
            }
            completed.push(stage);
        }

        if flows.flows.iter().any(|flow| flow.iter().all(|s| completed.contains(s))) {
            store.delete(&session.session_id).await?;
            return Ok(done);
        }
        session.completed = serde_json::to_string(&completed).map_err(Error::internal)?;
        session.data = serde_json::to_string(&done).map_err(Error::internal)?;
        store.update(&session.session_id, &session.completed, &session.data).await?;
        Err(challenge(flows, &session, completed, None))
    }

    async fn new_uia_session(&self, subject: Option<&UserId>) -> Result<UiaSession> {
        let session = UiaSession {
            session_id: random_string(32),
            user_id: subject.map(|u| u.to_string()),
            completed: "[]".into(),
            data: "{}".into(),
            created_ts: now_ms(),
        };
        self.store.uia().create(&session).await?;
        Ok(session)
    }

    /// Checks one stage. The outer `Result` is for failures of the server; the inner `Err`
    /// is a failed stage, reported inside the UIA response.
    async fn check_stage(
        &self,
        auth: &AuthData,
        subject: Option<&UserId>,
        done: &mut UiaDone,
    ) -> Result<Result<(), StandardErrorBody>> {
        match auth {
            AuthData::Dummy(_) | AuthData::Terms(_) => Ok(Ok(())),
            AuthData::Password(stage) => {
                let UserIdentifier::Matrix(identifier) = &stage.identifier else {
                    return Ok(Err(failure(ErrorKind::Unrecognized, "Only m.id.user identifiers are supported")));
                };
                let Ok(user_id) = parse_local_user_id(&identifier.user, &self.config.server_name) else {
                    return Ok(Err(failure(ErrorKind::Forbidden, "Invalid username or password")));
                };
                if subject.is_some_and(|s| s != user_id) {
                    return Ok(Err(failure(ErrorKind::Forbidden, "The password must be your own")));
                }
                if !self.check_password(&user_id, &stage.password).await? {
                    return Ok(Err(failure(ErrorKind::Forbidden, "Invalid username or password")));
                }
                done.user_id = Some(user_id);
                Ok(Ok(()))
            }
            AuthData::RegistrationToken(stage) => match self.registration_token_kind(&stage.token).await? {
                Some(from_database) => {
                    done.registration_token = from_database.then(|| stage.token.clone());
                    Ok(Ok(()))
                }
                None => Ok(Err(failure(ErrorKind::Unauthorized, "Invalid registration token"))),
            },
            _ => Ok(Err(failure(ErrorKind::Unrecognized, "This authentication type is not supported"))),
        }
    }

    /// Whether `password` is the password of the active user `user_id`.
    pub(crate) async fn check_password(&self, user_id: &UserId, password: &str) -> Result<bool> {
        match self.store.users().get(user_id.as_str()).await? {
            Some(user) if !user.deactivated => match &user.password_hash {
                Some(hash) => password::verify(password, hash).await,
                None => Ok(false),
            },
            _ => Ok(false),
        }
    }
}

fn failure(kind: ErrorKind, message: impl Into<String>) -> StandardErrorBody {
    StandardErrorBody::new(kind, message.into())
}

/// The 401 that tells the client which stages remain.
fn challenge(
    flows: &UiaFlows,
    session: &UiaSession,
    completed: Vec<AuthType>,
    failure: Option<StandardErrorBody>,
) -> Error {
    let mut info = UiaaInfo::new(flows.flows.iter().map(|stages| AuthFlow::new(stages.clone())).collect());
    info.completed = completed;
    info.session = Some(session.session_id.clone());
    info.params = flows.params.as_ref().and_then(|p| to_raw_value(p).ok());
    info.auth_error = failure.map(Box::new);
    Error::Uiaa(Box::new(info))
}
