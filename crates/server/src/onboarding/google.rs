//! Google sign-in for onboarding: the authorization-code flow with PKCE (S256), the code
//! exchange and the OIDC userinfo lookup that tells us which account consented.
//!
//! The identity comes from `userinfo`, fetched with the fresh access token straight from Google
//! over TLS (apis.md §2.2 allows this instead of verifying the `id_token` signature).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crewgate_core::url::percent_encode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Where Google is and who we are to it.
#[derive(Clone)]
pub struct GoogleOAuth {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    /// Full scope strings requested at consent.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for GoogleOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleOAuth")
            .field("client_id", &self.client_id)
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// What Google said about the account that consented.
#[derive(Debug, Clone, Deserialize)]
pub struct GoogleIdentity {
    pub sub: String,
    pub email: String,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub hd: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Tokens from the code exchange.
pub struct GoogleTokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<u64>,
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Google refused the code (reused, expired, PKCE mismatch, wrong redirect URI …).
    #[error("Google refused the sign-in code ({code}: {description})")]
    Refused { code: String, description: String },
    #[error("Google could not be reached: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("Google answered something unexpected: {0}")]
    Unexpected(String),
}

/// The `code_challenge` for a verifier: BASE64URL(SHA256(verifier)) without padding.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl GoogleOAuth {
    /// The consent URL: offline access (a refresh token), forced consent (so a reconnect gets a
    /// new refresh token), the invited address pre-selected, and an `hd` hint when the company
    /// has exactly one domain (only a hint: the claim is checked after the exchange).
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
        login_hint: &str,
        hd: Option<&str>,
    ) -> String {
        let mut params = vec![
            ("client_id", self.client_id.clone()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("response_type", "code".to_owned()),
            ("scope", self.scopes.join(" ")),
            ("state", state.to_owned()),
            ("code_challenge", challenge.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
            ("access_type", "offline".to_owned()),
            ("prompt", "consent".to_owned()),
            ("login_hint", login_hint.to_owned()),
        ];
        if let Some(hd) = hd {
            params.push(("hd", hd.to_owned()));
        }
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
        let sep = if self.auth_url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{}", self.auth_url, query.join("&"))
    }

    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        code: &str,
        verifier: &SecretString,
        redirect_uri: &str,
    ) -> Result<GoogleTokens, OAuthError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("code_verifier", verifier.expose_secret()),
        ];
        let resp = http
            .post(&self.token_url)
            .form(&form)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(OAuthError::Transport)?;
        let status = resp.status();
        let body = resp.text().await.map_err(OAuthError::Transport)?;
        if !status.is_success() {
            return Err(match serde_json::from_str::<TokenErrorResponse>(&body) {
                Ok(e) => OAuthError::Refused {
                    code: e.error,
                    description: e.error_description.unwrap_or_default(),
                },
                Err(_) => OAuthError::Unexpected(format!("token endpoint answered HTTP {status}")),
            });
        }
        let t: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| OAuthError::Unexpected(format!("token response does not parse: {e}")))?;
        Ok(GoogleTokens {
            access_token: SecretString::from(t.access_token),
            refresh_token: t.refresh_token.map(SecretString::from),
            expires_in: t.expires_in,
            scopes: t.scope.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
        })
    }

    pub async fn userinfo(
        &self,
        http: &reqwest::Client,
        access_token: &SecretString,
    ) -> Result<GoogleIdentity, OAuthError> {
        let resp = http
            .get(&self.userinfo_url)
            .bearer_auth(access_token.expose_secret())
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(OAuthError::Transport)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(OAuthError::Unexpected(format!("userinfo answered HTTP {status}")));
        }
        resp.json::<GoogleIdentity>()
            .await
            .map_err(|e| OAuthError::Unexpected(format!("userinfo does not parse: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenge_matches_an_independent_computation() {
        // base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=") in Python.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFrWFEjXk"),
            "N5DjP59hYRFs8j7QZRRT08zTBz12zqBuM6XfXUePpHc"
        );
    }

    #[test]
    fn authorize_url_encodes_every_parameter() {
        let g = GoogleOAuth {
            client_id: "id.apps".into(),
            client_secret: SecretString::from("s"),
            auth_url: "https://accounts.example/o/oauth2/v2/auth".into(),
            token_url: String::new(),
            userinfo_url: String::new(),
            scopes: vec!["openid".into(), "email".into()],
        };
        let url = g.authorize_url("https://gw.example/oauth/google/callback", "st", "ch", "a+b@c.com", None);
        assert!(url.starts_with("https://accounts.example/o/oauth2/v2/auth?client_id=id.apps&"));
        assert!(url.contains("redirect_uri=https%3A%2F%2Fgw.example%2Foauth%2Fgoogle%2Fcallback"));
        assert!(url.contains("scope=openid%20email"));
        assert!(url.contains("login_hint=a%2Bb%40c.com"));
        assert!(url.contains("code_challenge_method=S256"));
        assert!(!url.contains("hd="));
    }
}
