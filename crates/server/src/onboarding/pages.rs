//! Server-rendered pages of the invite portal, the join page and the OAuth callback. Every value
//! is HTML-escaped; styles and the copy button come from embedded assets (the CSP forbids inline
//! script and style).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; frame-ancestors 'none'";

/// What each Google scope lets the assistant do, in plain words.
pub const SCOPE_EXPLANATIONS: &[(&str, &str)] = &[
    (
        "Gmail",
        "read and search your mail, write drafts, and send mail — sending only after you approve each message",
    ),
    ("Calendar", "see your events and free/busy times, and create or change events after you approve"),
    ("Drive and Docs", "search your files and read documents (read-only)"),
    ("Sheets", "read spreadsheets, and update or append rows after you approve"),
    ("Contacts", "look up people in your contacts (read-only)"),
    ("Your identity", "your name and verified e-mail address, to make sure the invite is yours"),
];

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete page. `body` must already be escaped HTML.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} · crewgate</title><link rel=\"icon\" href=\"/assets/icon.svg\">\
         <link rel=\"stylesheet\" href=\"/assets/portal.css\"></head>\
         <body><main class=\"portal\"><div class=\"brand\"><img src=\"/assets/icon.svg\" alt=\"\" width=\"28\" height=\"28\"> crewgate</div>\
         {body}</main><script src=\"/assets/portal.js\"></script></body></html>",
        escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// A refusal or notice: what happened and what to do next. Nothing was created.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let tone = if status.is_success() { "ok" } else { "bad" };
    page(
        status,
        title,
        &format!(
            "<section class=\"card {tone}\" data-testid=\"portal-message\"><h1>{}</h1><p>{}</p></section>",
            escape(title),
            escape(text)
        ),
    )
}

/// After a reconnect: done, and the way back to the dashboard.
pub fn reconnected(email: &str, dashboard_url: &str) -> Response {
    page(
        StatusCode::OK,
        "Google reconnected",
        &format!(
            "<section class=\"card ok\" data-testid=\"portal-message\"><h1>Google reconnected</h1>\
             <p>{} is connected again; your assistant can use Google again.</p>\
             <p><a class=\"button primary\" data-testid=\"dashboard-link\" href=\"{}\">Back to my dashboard</a></p></section>",
            escape(email),
            escape(dashboard_url)
        ),
    )
}

/// The invite landing page: what will be connected and why, and the button to Google.
pub fn invite(email: &str, agent_id: &str, token: &str, google_ready: bool) -> Response {
    let scopes: String = SCOPE_EXPLANATIONS
        .iter()
        .map(|(what, why)| format!("<li><strong>{}</strong> — {}</li>", escape(what), escape(why)))
        .collect();
    let action = if google_ready {
        format!(
            "<form method=\"post\" action=\"/invite/connect\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\" class=\"primary\" data-testid=\"connect-google\">Connect Google</button></form>",
            escape(token)
        )
    } else {
        "<p class=\"bad\">Google sign-in is not configured on this gateway yet; ask the admin.</p>".to_owned()
    };
    page(
        StatusCode::OK,
        "Set up your assistant",
        &format!(
            "<section class=\"card\"><h1>Set up your assistant</h1>\
             <p>This invite is for <strong data-testid=\"invite-email\">{}</strong>. Your assistant will be \
             <code>{}</code>.</p>\
             <p>Connect the Google account of that address. Your assistant will be able to:</p><ul>{scopes}</ul>\
             <p class=\"muted\">It reads on its own, but every e-mail, event, document edit or CRM change waits \
             for your explicit approval. You can disconnect at any time in your Google account settings.</p>\
             {action}</section>",
            escape(email),
            escape(agent_id)
        ),
    )
}

/// Shown once: the person's dashboard token, with a copy button and the sign-in link.
pub fn ready(email: &str, agent_id: &str, token: &str, dashboard_url: &str) -> Response {
    let link = format!("{dashboard_url}?token={token}");
    page(
        StatusCode::OK,
        "Your assistant is ready",
        &format!(
            "<section class=\"card ok\"><h1>Your assistant is ready</h1>\
             <p><strong>{}</strong> is connected, and your assistant <code data-testid=\"agent-id\">{}</code> is set up.</p>\
             <p>This is your personal dashboard token. <strong>It is shown only once</strong>: copy it to your password \
             manager now.</p>\
             <div class=\"secret\"><code id=\"token\" data-testid=\"user-token\">{}</code>\
             <button type=\"button\" data-copy=\"token\">Copy</button></div>\
             <p><a class=\"button primary\" data-testid=\"dashboard-link\" href=\"{}\">Open my dashboard</a></p>\
             <p class=\"muted\">Lost it? Ask the admin to rotate your token.</p></section>",
            escape(email),
            escape(agent_id),
            escape(token),
            escape(&link)
        ),
    )
}

/// The join form, with an optional notice above it.
pub fn join(notice: Option<(&str, &str)>) -> Response {
    let notice = notice
        .map(|(tone, text)| {
            format!("<p class=\"{}\" data-testid=\"join-notice\">{}</p>", escape(tone), escape(text))
        })
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Request an assistant",
        &format!(
            "<section class=\"card\"><h1>Request an assistant</h1>{notice}\
             <p>Enter your company e-mail address. You will get a link to connect your Google account.</p>\
             <form method=\"post\" action=\"/join\"><label for=\"email\">Company e-mail</label>\
             <input id=\"email\" name=\"email\" type=\"email\" required autocomplete=\"email\">\
             <button type=\"submit\" class=\"primary\">Request</button></form></section>"
        ),
    )
}

/// After a join request that issued an invite at once.
pub fn join_invited(email: &str, link: &str, emailed: bool) -> Response {
    let mail = if emailed { " We also sent it to you by e-mail." } else { "" };
    page(
        StatusCode::OK,
        "Check your invite",
        &format!(
            "<section class=\"card ok\"><h1>Your invite is ready</h1>\
             <p>An invite for <strong>{}</strong> was created.{mail} It only works with that Google account.</p>\
             <p><a class=\"button primary\" data-testid=\"invite-link\" href=\"{}\">Continue set-up</a></p></section>",
            escape(email),
            escape(link)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<img src=x onerror=\"a\">&'"),
            "&lt;img src=x onerror=&quot;a&quot;&gt;&amp;&#39;"
        );
    }
}
