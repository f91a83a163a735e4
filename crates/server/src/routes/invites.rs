//! Onboarding over HTTP: the admin's invite API (`/api/v1/invites`), the invite portal
//! (`/invite/{token}`, `/invite/connect`), the join page (`/join`), Google's redirect back
//! (`/oauth/google/callback`) and a member's reconnect (`/api/v1/me/google/connect`).

use crate::AppState;
use crate::auth::{AdminAuth, Auth};
use crate::error::{ApiError, ApiJson};
use crate::onboarding::{Completed, InviteView, IssuedInvite, JoinOutcome, OnboardingError, pages};
use crate::ops::Actor;
use axum::Json;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use crewgate_core::Principal;
use crewgate_store::onboarding::InviteOrigin;
use secrecy::ExposeSecret;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CreateInvite {
    email: String,
    name: Option<String>,
}

fn issued_json(i: &IssuedInvite) -> serde_json::Value {
    serde_json::json!({
        "invite": InviteView::new(i.invite.clone()),
        // Shown once: only the hash of the token inside is stored.
        "link": i.link.expose_secret(),
        "emailed": match &i.emailed { Some(Ok(())) => serde_json::json!(true), Some(Err(_)) => serde_json::json!(false), None => serde_json::Value::Null },
        "emailError": i.emailed.as_ref().and_then(|r| r.as_ref().err()),
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> Result<Json<Vec<InviteView>>, ApiError> {
    Ok(Json(state.store.list_invites().await?.into_iter().map(InviteView::new).collect()))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    AdminAuth(p): AdminAuth,
    ApiJson(req): ApiJson<CreateInvite>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let issued = state
        .onboarding
        .create_invite(
            state.store.as_ref(),
            &Actor::Principal(p),
            &req.email,
            req.name.as_deref(),
            InviteOrigin::Admin,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(issued_json(&issued))))
}

pub(crate) async fn resend(
    State(state): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let issued = state.onboarding.resend_invite(state.store.as_ref(), &Actor::Principal(p), &id).await?;
    Ok(Json(issued_json(&issued)))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.onboarding.revoke_invite(state.store.as_ref(), &Actor::Principal(p), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member starts Google consent again (after "needs reconnect"); the dashboard then sends the
/// browser to the returned URL.
pub(crate) async fn reconnect_google(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Principal::User { user_id, .. } = &p else {
        return Err(ApiError::BadRequest("only a member connects their own Google account".into()));
    };
    let user =
        state.store.get_user(user_id).await?.ok_or_else(|| ApiError::not_found(format!("user {user_id}")))?;
    let url = state.onboarding.start_reconnect(state.store.as_ref(), user_id, &user.email).await?;
    Ok(Json(serde_json::json!({ "url": url })))
}

fn refusal(e: &OnboardingError) -> Response {
    if let OnboardingError::Api(inner) = e {
        tracing::error!(error = %inner, "onboarding failed");
        return pages::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The gateway could not finish; nothing was set up. Try again in a minute, or tell the admin.",
        );
    }
    let title = match e {
        OnboardingError::InviteExpired => "This invite has expired",
        OnboardingError::InviteUsed => "This invite was already used",
        OnboardingError::InviteRevoked => "This invite was revoked",
        OnboardingError::InviteUnknown => "This invite link is not valid",
        OnboardingError::ConsentDenied => "Google was not connected",
        OnboardingError::StateUnknown => "This sign-in link is no longer valid",
        _ => "Set-up was refused",
    };
    pages::message(e.status(), title, &e.to_string())
}

fn see_other(url: &str) -> Response {
    match header::HeaderValue::from_str(url) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => {
            pages::message(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "bad redirect URL")
        }
    }
}

pub(crate) async fn invite_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.onboarding.pending_invite(state.store.as_ref(), &token).await {
        Ok(invite) => pages::invite(
            &invite.email,
            invite.agent_id.as_str(),
            &token,
            state.onboarding.settings().google.is_some(),
        ),
        Err(e) => refusal(&e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConnectForm {
    token: String,
}

/// The invite page's button: the token travels in the form body, not in another URL.
pub(crate) async fn invite_connect(State(state): State<AppState>, Form(form): Form<ConnectForm>) -> Response {
    match state.onboarding.start_invite_sign_in(state.store.as_ref(), &form.token).await {
        Ok(url) => see_other(&url),
        Err(e) => refusal(&e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub(crate) async fn oauth_callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let outcome = state
        .onboarding
        .callback(state.store.as_ref(), q.code.as_deref(), q.state.as_deref(), q.error.as_deref())
        .await;
    match outcome {
        Ok(Completed::Onboarded(done)) => pages::ready(
            &done.email,
            done.agent_id.as_str(),
            done.token.secret.expose_secret(),
            &done.dashboard_url,
        ),
        Ok(Completed::Reconnected { email }) => {
            pages::reconnected(&email, &format!("{}/", state.onboarding.settings().public_url))
        }
        Err(e) => {
            tracing::info!(reason = %e, "an OAuth callback was refused");
            refusal(&e)
        }
    }
}

pub(crate) async fn join_page(State(state): State<AppState>) -> Response {
    if !state.onboarding.self_service_open() {
        return refusal(&OnboardingError::SelfServiceOff);
    }
    pages::join(None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct JoinForm {
    email: String,
}

pub(crate) async fn join_submit(State(state): State<AppState>, Form(form): Form<JoinForm>) -> Response {
    match state.onboarding.join(state.store.as_ref(), &form.email).await {
        Ok(JoinOutcome::Invited(i)) => {
            pages::join_invited(&i.invite.email, i.link.expose_secret(), matches!(i.emailed, Some(Ok(()))))
        }
        Ok(JoinOutcome::AwaitingAdmin) => pages::join(Some((
            "ok",
            "Thanks — your request was sent to the admin. You will get an e-mail with your invite link once it is approved.",
        ))),
        Err(e @ (OnboardingError::SelfServiceOff | OnboardingError::Api(_))) => refusal(&e),
        Err(e) => pages::join(Some(("bad", &e.to_string()))),
    }
}
