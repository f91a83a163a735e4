//! `crewgate chat`: a terminal conversation with an agent of a running gateway.
//!
//! Over `http://` it uses the WebSocket `/api/v1/ws` (the answer streams in as it is written, with
//! tool activity); over `https://`, or with `--no-stream`, it uses the sessions REST API (the
//! answer appears when complete). The token comes from `CREWGATE_TOKEN` (or `--token`) and is only
//! ever sent as an `Authorization` header.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const HELP: &str = "commands: /new (start a new session), /session (show its id), /help, /quit (or Ctrl-D)";

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Agent to talk to; defaults to the token's own agent (an admin token must name one).
    #[arg(long)]
    pub agent: Option<String>,
    /// Continue this session instead of starting a new one.
    #[arg(long)]
    pub session: Option<String>,
    /// URL of the running gateway.
    #[arg(long, env = "CREWGATE_URL", default_value = "http://127.0.0.1:18789")]
    pub url: String,
    /// A user (or admin) token; prefer the environment variable, arguments are visible to `ps`.
    #[arg(long, env = "CREWGATE_TOKEN", hide_env_values = true)]
    pub token: SecretString,
    /// Use the REST API (answers arrive whole) even over http://.
    #[arg(long)]
    pub no_stream: bool,
}

/// Runs the conversation on stdin/stdout.
pub async fn run(args: ChatArgs) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = std::io::stdout();
    chat_loop(&args, stdin, &mut stdout, interactive).await
}

/// The conversation: one line in, one answer out, until EOF or `/quit`.
pub async fn chat_loop<R, W>(args: &ChatArgs, input: R, out: &mut W, interactive: bool) -> Result<()>
where
    R: AsyncBufRead + Unpin,
    W: Write,
{
    let base = args.url.trim_end_matches('/').to_owned();
    let mut transport = if args.no_stream || !base.starts_with("http://") {
        Transport::Rest(Rest::new(&base, args)?)
    } else {
        Transport::Ws(Box::new(Ws::connect(&base, args).await?))
    };
    let mut session = args.session.clone();
    if interactive {
        writeln!(out, "connected to {base}; {HELP}")?;
    }
    let mut lines = input.lines();
    loop {
        if interactive {
            write!(out, "you> ")?;
            out.flush()?;
        }
        let Some(line) = lines.next_line().await.context("reading the terminal")? else { break };
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => break,
            "/help" => writeln!(out, "{HELP}")?,
            "/new" => {
                session = None;
                writeln!(out, "(a new session starts with your next message)")?;
            }
            "/session" => writeln!(out, "session: {}", session.as_deref().unwrap_or("(none yet)"))?,
            text => {
                match &mut transport {
                    Transport::Ws(ws) => ws.turn(text, &mut session, out).await?,
                    Transport::Rest(rest) => rest.turn(text, &mut session, out).await?,
                }
                out.flush()?;
            }
        }
    }
    Ok(())
}

enum Transport {
    Ws(Box<Ws>),
    Rest(Rest),
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Ws {
    stream: WsStream,
    agent: Option<String>,
}

impl Ws {
    async fn connect(base: &str, args: &ChatArgs) -> Result<Self> {
        let url = format!("ws://{}/api/v1/ws", base.trim_start_matches("http://"));
        let mut req = url.as_str().into_client_request().with_context(|| format!("bad gateway URL {url}"))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", args.token.expose_secret()))
            .context("the token contains characters that cannot be sent in a header")?;
        auth.set_sensitive(true);
        req.headers_mut().insert("authorization", auth);
        let (stream, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| match &e {
            tokio_tungstenite::tungstenite::Error::Http(resp) if resp.status() == 401 => {
                anyhow!("the gateway refused the token (HTTP 401): check CREWGATE_TOKEN")
            }
            _ => anyhow::Error::new(e).context(format!("cannot connect to {url}: is the gateway running?")),
        })?;
        let mut ws = Self { stream, agent: args.agent.clone() };
        let ready = ws.next().await?;
        if ready["type"] != "ready" {
            bail!("unexpected first message from the gateway: {ready}");
        }
        Ok(ws)
    }

    async fn next(&mut self) -> Result<Value> {
        loop {
            match self.stream.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    return serde_json::from_str(&t).context("the gateway sent invalid JSON");
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    bail!(
                        "the gateway closed the connection{}",
                        frame.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                    )
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(anyhow::Error::new(e).context("the connection to the gateway broke"));
                }
                None => bail!("the gateway closed the connection"),
            }
        }
    }

    async fn turn<W: Write>(&mut self, text: &str, session: &mut Option<String>, out: &mut W) -> Result<()> {
        let msg = json!({"type": "send", "content": text, "session": session, "agent": self.agent});
        self.stream.send(WsMessage::Text(msg.to_string().into())).await.context("sending to the gateway")?;
        let mut started = false;
        loop {
            let ev = self.next().await?;
            match ev["type"].as_str().unwrap_or_default() {
                "session" => *session = ev["session"]["id"].as_str().map(str::to_owned),
                "delta" => {
                    if !started {
                        write!(out, "agent> ")?;
                        started = true;
                    }
                    write!(out, "{}", ev["text"].as_str().unwrap_or_default())?;
                    out.flush()?;
                }
                "tool_call" => {
                    writeln!(
                        out,
                        "{}[tool] {}({})",
                        if started { "\n" } else { "" },
                        ev["name"].as_str().unwrap_or("?"),
                        ev["arguments"].as_str().unwrap_or("")
                    )?;
                    started = false;
                }
                "tool_result" => {
                    let status = if ev["ok"].as_bool() == Some(true) { "ok" } else { "failed" };
                    writeln!(
                        out,
                        "[tool] {} {status}: {}",
                        ev["name"].as_str().unwrap_or("?"),
                        ev["preview"].as_str().unwrap_or("")
                    )?;
                }
                "final" => {
                    if !started {
                        write!(out, "agent> {}", ev["message"]["body"].as_str().unwrap_or_default())?;
                    }
                    writeln!(out)?;
                    return Ok(());
                }
                "error" => {
                    if started {
                        writeln!(out)?;
                    }
                    writeln!(out, "error: {}", ev["message"].as_str().unwrap_or("unknown error"))?;
                    // A request-level error (no turn) ends the exchange as well.
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

struct Rest {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    agent: Option<String>,
}

impl Rest {
    fn new(base: &str, args: &ChatArgs) -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().build().context("creating the HTTP client")?,
            base: base.to_owned(),
            token: args.token.clone(),
            agent: args.agent.clone(),
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret())
            .json(&body);
        if let Some(agent) = &self.agent {
            req = req.query(&[("agent", agent)]);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}: is the gateway running?", self.base))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().map_or_else(|| status.to_string(), str::to_owned);
            return Err(anyhow!("{msg}"));
        }
        Ok(v)
    }

    async fn turn<W: Write>(&mut self, text: &str, session: &mut Option<String>, out: &mut W) -> Result<()> {
        let id = match session {
            Some(id) => id.clone(),
            None => match self.call(reqwest::Method::POST, "/api/v1/sessions", json!({})).await {
                Ok(s) => {
                    let id = s["id"]
                        .as_str()
                        .ok_or_else(|| anyhow!("the gateway returned no session id"))?
                        .to_owned();
                    *session = Some(id.clone());
                    id
                }
                Err(e) => {
                    writeln!(out, "error: {e}")?;
                    return Ok(());
                }
            },
        };
        match self
            .call(reqwest::Method::POST, &format!("/api/v1/sessions/{id}/messages"), json!({"content": text}))
            .await
        {
            Ok(v) => {
                for m in v["messages"].as_array().into_iter().flatten() {
                    for c in m["tool_calls"].as_array().into_iter().flatten() {
                        writeln!(
                            out,
                            "[tool] {}({})",
                            c["name"].as_str().unwrap_or("?"),
                            c["arguments"].as_str().unwrap_or("")
                        )?;
                    }
                }
                writeln!(out, "agent> {}", v["reply"]["body"].as_str().unwrap_or_default())?;
            }
            Err(e) => writeln!(out, "error: {e}")?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crewgate_core::{IssuedToken, MasterKey, TokenKind};
    use crewgate_runtime::{LlmSettings, Runtime, RuntimeSettings, ToolRegistry};
    use crewgate_server::ops::{self, Actor, CreateAgent};
    use crewgate_server::{AppState, router};
    use crewgate_store::{SqliteStore, Store};
    use crewgate_testkit::fake_llm::{FakeLlm, Step};
    use std::sync::Arc;

    struct Gw {
        url: String,
        token: String,
        agent: String,
        llm: FakeLlm,
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    async fn gateway() -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_hex(&SecretString::from("05".repeat(32))).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db"), &key).await.unwrap());
        let agent = ops::create_agent(
            store.as_ref(),
            &Actor::System,
            CreateAgent { owner_email: Some("alice@company.com".into()), ..Default::default() },
        )
        .await
        .unwrap();
        let t = IssuedToken::generate(TokenKind::User);
        ops::register_token(store.as_ref(), &Actor::System, &t, Some(agent.id.as_str()), None).await.unwrap();
        let llm = FakeLlm::start().await;
        let llm_settings = LlmSettings {
            max_retries: 2,
            retry_base_delay: std::time::Duration::from_millis(5),
            ..LlmSettings::new(llm.base_url(), Some(SecretString::from("k")))
        };
        let runtime = Arc::new(Runtime::new(
            store.clone(),
            RuntimeSettings::new(llm_settings, "fake/model"),
            ToolRegistry::with_defaults(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(AppState::with_runtime(store.clone(), runtime));
        tokio::spawn(
            async move { crewgate_server::serve(listener, app, std::future::pending()).await.unwrap() },
        );
        Gw {
            url,
            token: t.secret.expose_secret().to_owned(),
            agent: agent.id.to_string(),
            llm,
            store,
            _dir: dir,
        }
    }

    fn args(gw: &Gw, no_stream: bool) -> ChatArgs {
        ChatArgs {
            agent: None,
            session: None,
            url: gw.url.clone(),
            token: SecretString::from(gw.token.clone()),
            no_stream,
        }
    }

    async fn converse(args: &ChatArgs, input: &str) -> String {
        let mut out = Vec::new();
        chat_loop(args, input.as_bytes(), &mut out, false).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn streams_over_the_websocket_with_tool_activity_in_one_session() {
        let gw = gateway().await;
        gw.llm.push(Step::tool_call("current_time", json!({})));
        gw.llm.push(Step::text("It is noon."));
        let out =
            converse(&args(&gw, false), "what time is it?\n/session\nthanks\n/quit\nnever sent\n").await;
        assert!(out.contains("[tool] current_time({})\n[tool] current_time ok: {"), "{out}");
        assert!(out.contains("agent> It is noon.\n"), "{out}");
        assert!(out.contains("agent> echo: thanks\n"), "{out}");
        assert!(!out.contains("never sent"));
        let agent = crewgate_core::AgentId::parse(&gw.agent).unwrap();
        let sessions = gw.store.list_sessions(&agent).await.unwrap();
        assert_eq!(sessions.len(), 1, "both lines went to one session");
        assert!(out.contains(&format!("session: {}", sessions[0].id)), "{out}");
        assert_eq!(gw.llm.chat_requests().len(), 3);
    }

    #[tokio::test]
    async fn rest_mode_shows_provider_errors_and_goes_on() {
        let gw = gateway().await;
        for _ in 0..3 {
            gw.llm.push(Step::fail(500));
        }
        let out = converse(&args(&gw, true), "first\n/new\nsecond\n").await;
        assert!(out.contains("error: the LLM provider failed with HTTP 500 after 3 attempts"), "{out}");
        assert!(out.contains("agent> echo: second"), "{out}");
        let agent = crewgate_core::AgentId::parse(&gw.agent).unwrap();
        assert_eq!(gw.store.list_sessions(&agent).await.unwrap().len(), 2, "/new started another session");
    }

    #[tokio::test]
    async fn a_bad_token_is_a_clear_error() {
        let gw = gateway().await;
        let mut a = args(&gw, false);
        a.token = SecretString::from("cgu_000000000000000000000000000000000000000000000000");
        let err = chat_loop(&a, &b""[..], &mut Vec::new(), false).await.unwrap_err();
        assert!(err.to_string().contains("refused the token"), "{err:#}");
        a.url = "http://127.0.0.1:9".into();
        let err = chat_loop(&a, &b""[..], &mut Vec::new(), false).await.unwrap_err();
        assert!(format!("{err:#}").contains("is the gateway running?"), "{err:#}");
    }
}
