//! Onboarding wiring from the config file: public URL, Google sign-in client
//! (`skills.installed.gog` + `integrations.google`), `onboarding.*` and the SMTP mailer.

use anyhow::{Context, Result};
use crewgate_config::Config;
use crewgate_runtime::tools::external::google_scopes;
use crewgate_server::onboarding::google::GoogleOAuth;
use crewgate_server::onboarding::mail::{Mailer, SmtpMailer, SmtpSettings};
use crewgate_server::onboarding::{Onboarding, OnboardingSettings};
use secrecy::ExposeSecret;
use std::sync::Arc;

const GOOGLE_USERINFO: &str = "https://openidconnect.googleapis.com/v1/userinfo";

pub fn onboarding(cfg: Option<&Config>, public_url: &str) -> Result<Onboarding> {
    let mut s =
        OnboardingSettings { public_url: public_url.trim_end_matches('/').to_owned(), ..Default::default() };
    let Some(cfg) = cfg else { return Ok(Onboarding::new(s, None)) };
    let o = &cfg.onboarding;
    s.allowed_domains = o.allowed_domains.iter().map(|d| d.trim().to_lowercase()).collect();
    s.self_service = o.self_service;
    s.invite_ttl = o.invite_ttl();
    s.require_admin_approval = o.require_admin_approval;
    s.admin_email = o.admin_email.as_ref().map(|e| e.as_str().to_owned());
    let google = &cfg.integrations.google;
    let gog = cfg.skills.installed.gog.as_ref().filter(|g| g.enabled);
    let client_id = gog.and_then(|g| g.config.client_id.clone()).filter(|c| !c.trim().is_empty());
    let client_secret =
        gog.and_then(|g| g.config.client_secret.clone()).filter(|c| !c.expose_secret().trim().is_empty());
    s.google = match (client_id, client_secret) {
        (Some(client_id), Some(client_secret)) => Some(GoogleOAuth {
            client_id,
            client_secret,
            auth_url: google.auth_url.as_str().to_owned(),
            token_url: google.token_url.as_str().to_owned(),
            userinfo_url: match &google.api_base {
                Some(base) => format!("{}/v1/userinfo", base.as_str().trim_end_matches('/')),
                None => GOOGLE_USERINFO.to_owned(),
            },
            scopes: google_scopes(),
        }),
        _ => {
            if gog.is_some() {
                tracing::warn!("the gog skill has no clientId/clientSecret: invites cannot connect Google");
            }
            None
        }
    };
    let mailer: Option<Arc<dyn Mailer>> = match &cfg.integrations.smtp {
        Some(smtp) => Some(Arc::new(
            SmtpMailer::new(&SmtpSettings {
                host: smtp.host.clone(),
                port: smtp.port,
                username: smtp.username.clone(),
                password: smtp.password.clone(),
                from: smtp.from.as_str().to_owned(),
                starttls: smtp.starttls,
                plaintext: smtp.plaintext,
            })
            .context("setting up integrations.smtp")?,
        )),
        None => None,
    };
    Ok(Onboarding::new(s, mailer))
}
