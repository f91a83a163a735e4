#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use crewgate_core::now_millis;
use crewgate_testkit::fake_attio::FakeAttio;
use crewgate_testkit::fake_google::{self, FakeGoogle, FakeGoogleAccount};
use crewgate_testkit::fake_notion::FakeNotion;
use crewgate_tools::{GoogleToken, InMemoryGoogleCredentials, ToolContext, ToolSettings, Toolbox};
use secrecy::SecretString;

pub fn google_settings(g: &FakeGoogle) -> ToolSettings {
    ToolSettings {
        google_api_base: Some(g.base_url()),
        google_token_url: g.token_url(),
        google_client_id: Some(fake_google::CLIENT_ID.into()),
        google_client_secret: Some(SecretString::from(fake_google::CLIENT_SECRET)),
        ..ToolSettings::default()
    }
}

pub fn google_toolbox(g: &FakeGoogle) -> Toolbox {
    Toolbox::new(google_settings(g)).unwrap()
}

/// The credential the store would hold after the OAuth flow for `acc`.
pub fn creds(acc: &FakeGoogleAccount) -> Arc<InMemoryGoogleCredentials> {
    Arc::new(InMemoryGoogleCredentials::new(GoogleToken {
        access_token: Some(SecretString::from(acc.access_token.clone())),
        expires_at: Some(now_millis() + 3_600_000),
        refresh_token: Some(SecretString::from(acc.refresh_token.clone())),
        scopes: Some(acc.scopes.clone()),
        email: Some(acc.email.clone()),
    }))
}

pub fn ctx(c: &Arc<InMemoryGoogleCredentials>) -> ToolContext {
    ToolContext::new().with_google(c.clone())
}

pub fn notion_toolbox(n: &FakeNotion) -> Toolbox {
    Toolbox::new(ToolSettings {
        notion_api_base: n.base_url(),
        notion_api_key: Some(SecretString::from(n.token())),
        ..ToolSettings::default()
    })
    .unwrap()
}

pub fn attio_toolbox(a: &FakeAttio) -> Toolbox {
    Toolbox::new(ToolSettings {
        attio_api_base: a.base_url(),
        attio_api_key: Some(SecretString::from(a.api_key())),
        ..ToolSettings::default()
    })
    .unwrap()
}
