#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crewgate_config::{
    AgentConfig, AgentSelector, Config, ConfigError, DEFAULT_LLM_BASE_URL, DEFAULT_MODEL, STARTER_CONFIG,
    SkillId,
};
use crewgate_core::AgentKind;
use secrecy::ExposeSecret;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn parse(text: &str, pairs: &[(&str, &str)]) -> Config {
    match Config::parse(text, "crewgate.jsonc", &env(pairs)) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

fn parse_err(text: &str, pairs: &[(&str, &str)]) -> String {
    match Config::parse(text, "crewgate.jsonc", &env(pairs)) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => e.to_string(),
    }
}

fn warnings(c: &Config) -> Vec<String> {
    c.warnings.iter().map(ToString::to_string).collect()
}

const FULL: &str = r#"{
  // everything, in the documented shape
  "gateway": {
    "port": 8080,
    "bind": "lan",
    "publicUrl": "https://${APP_ID}-8080.${GATEWAY_DOMAIN}/",
    "auth": {
      "token": "${ADMIN_TOKEN}",
      "userTokens": {
        "${ALICE_TOKEN}": { "agentId": "alice-company-com" },
        "${BOB_TOKEN}": "bob-company-com",
        "${CAROL_TOKEN:-}": "bob-company-com",
      },
    },
  },
  "llm": {
    "baseUrl": "${LLM_BASE_URL:-https://api.redpill.ai/v1}",
    "apiKey": "${REDPILL_API_KEY}",
    "model": { "primary": "moonshotai/kimi-k2.5", "fallbacks": ["deepseek/deepseek-v3.2"] },
    "timeoutSecs": 30,
  },
  "agents": {
    "list": [
      {
        "id": "orchestrator",
        "name": "Ops",
        "default": true,
        "identity": { "name": "Orchestrator", "personality": "calm", "emoji": "🧭" },
        "subagents": { "allowAgents": ["*"] },
      },
      {
        "id": "alice-company-com",
        "owner": "Alice@Company.com",
        "kind": "worker",
        "model": "z-ai/glm-4.7-flash",
        "workspace": "alice",
        "skills": ["steipete/gog", "notion"],
        "subagents": { "allowAgents": ["bob-company-com"] },
        "autonomy": {
          "level": 2,
          "grants": [
            "calendar.create",
            { "action": "gmail.send", "match": { "to": "*@company.com" },
              "expiresAt": "2026-12-31T23:59:59Z", "dailyCap": 20 },
          ],
        },
      },
      { "id": "bob-company-com", "owner": "bob@company.com" },
    ],
  },
  "skills": {
    "installed": {
      "steipete/gog": { "config": { "clientId": "${GOOGLE_CLIENT_ID}", "clientSecret": "${GOOGLE_CLIENT_SECRET}" } },
      "notion": { "enabled": true, "config": { "apiKey": "${NOTION_API_KEY}" } },
      "kesslerio/attio-crm": { "enabled": false },
    },
  },
  "integrations": {
    "google": { "apiBase": "http://127.0.0.1:9100", "tokenUrl": "http://127.0.0.1:9100/token" },
    "notion": { "apiBase": "http://127.0.0.1:9200/v1/" },
    "smtp": { "host": "smtp.company.com", "password": "${SMTP_PASSWORD}", "from": "crewgate@company.com" },
  },
  "onboarding": { "allowedDomains": ["Company.com"], "selfService": true, "inviteTtlHours": 24 },
  "backup": {
    "s3": { "endpoint": "http://127.0.0.1:9000", "bucket": "crew", "pathStyle": true,
            "accessKeyId": "minio", "secretAccessKey": "${S3_SECRET}" },
    "intervalMs": 500,
  },
}"#;

const FULL_ENV: &[(&str, &str)] = &[
    ("APP_ID", "abc123"),
    ("GATEWAY_DOMAIN", "dstack-prod5.phala.network"),
    ("ADMIN_TOKEN", "cga_admin_secret"),
    ("ALICE_TOKEN", "cgu_alice_secret"),
    ("BOB_TOKEN", "cgu_bob_secret"),
    ("REDPILL_API_KEY", "rp_secret"),
    ("GOOGLE_CLIENT_ID", "client.apps.googleusercontent.com"),
    ("GOOGLE_CLIENT_SECRET", "gcs_secret"),
    ("NOTION_API_KEY", "ntn_secret"),
    ("SMTP_PASSWORD", "smtp_secret"),
    ("S3_SECRET", "s3_secret"),
];

#[test]
fn empty_object_gives_the_documented_defaults() {
    for c in [parse("{}", &[]), Config::default()] {
        assert_eq!(c.gateway.port, 18789);
        assert_eq!(c.gateway.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.gateway.socket_addr().to_string(), "127.0.0.1:18789");
        assert!(c.gateway.public_url.is_none() && c.gateway.auth.token.is_none());
        assert!(c.gateway.auth.user_tokens.is_empty());
        assert_eq!(c.llm.base_url.as_str(), DEFAULT_LLM_BASE_URL);
        assert_eq!(c.llm.model.primary, DEFAULT_MODEL);
        assert_eq!(c.llm.timeout_secs, 120);
        assert!(c.agents.list.is_empty() && c.default_agent().is_none());
        assert!(c.skills.installed.enabled().is_empty());
        assert!(c.integrations.google.api_base.is_none());
        assert_eq!(c.integrations.google.auth_url.as_str(), "https://accounts.google.com/o/oauth2/v2/auth");
        assert_eq!(c.integrations.google.token_url.as_str(), "https://oauth2.googleapis.com/token");
        assert_eq!(c.integrations.notion.api_base.as_str(), "https://api.notion.com/v1");
        assert_eq!(c.integrations.attio.api_base.as_str(), "https://api.attio.com/v2");
        assert!(c.integrations.smtp.is_none());
        assert_eq!(c.onboarding.invite_ttl_hours, 168);
        assert!(!c.onboarding.self_service && !c.onboarding.require_admin_approval);
        assert!(c.backup.s3.is_none());
        assert_eq!((c.backup.interval_ms, c.backup.retain_generations), (1000, 3));
        assert!(c.warnings.is_empty());
    }
}

#[test]
fn full_config_parses_into_typed_values() {
    let c = parse(FULL, FULL_ENV);
    let g = &c.gateway;
    assert_eq!(g.socket_addr().to_string(), "0.0.0.0:8080");
    assert_eq!(g.public_url.as_ref().unwrap().as_str(), "https://abc123-8080.dstack-prod5.phala.network");
    assert_eq!(g.auth.token.as_ref().unwrap().expose_secret(), "cga_admin_secret");
    // CAROL_TOKEN is unset and defaults to "": that entry is off.
    let tokens: Vec<(&str, &str)> =
        g.auth.user_tokens.iter().map(|t| (t.token.expose_secret(), t.agent_id.as_str())).collect();
    assert_eq!(tokens, [("cgu_alice_secret", "alice-company-com"), ("cgu_bob_secret", "bob-company-com")]);

    assert_eq!(c.llm.base_url.join("/chat/completions"), "https://api.redpill.ai/v1/chat/completions");
    assert_eq!(c.llm.api_key.as_ref().unwrap().expose_secret(), "rp_secret");
    assert_eq!(
        c.llm.model.candidates().collect::<Vec<_>>(),
        ["moonshotai/kimi-k2.5", "deepseek/deepseek-v3.2"]
    );
    assert_eq!(c.llm.timeout().as_secs(), 30);

    let orch = c.default_agent().unwrap();
    assert_eq!(orch.id.as_str(), "orchestrator");
    assert_eq!(orch.display_name(), "Ops");
    assert_eq!(orch.effective_kind(), AgentKind::Orchestrator);
    assert_eq!(orch.identity.emoji.as_deref(), Some("🧭"));
    assert_eq!(orch.subagents.allow_agents, [AgentSelector::Any]);

    let alice = c.agent("alice-company-com").unwrap();
    assert_eq!(alice.owner.as_ref().unwrap().as_str(), "alice@company.com");
    assert_eq!(alice.effective_kind(), AgentKind::Worker);
    assert_eq!(alice.model.as_ref().unwrap().primary, "z-ai/glm-4.7-flash");
    assert_eq!(alice.skills.as_deref(), Some(&[SkillId::Gog, SkillId::Notion][..]));
    assert!(alice.may_use_skill(SkillId::Gog) && !alice.may_use_skill(SkillId::AttioCrm));
    let bob = c.agent("bob-company-com").unwrap();
    assert!(alice.allows_agent(&bob.id) && !bob.allows_agent(&alice.id) && bob.allows_agent(&bob.id));
    assert_eq!(bob.effective_kind(), AgentKind::Worker);
    assert!(bob.may_use_skill(SkillId::AttioCrm));

    let autonomy = &alice.autonomy;
    assert_eq!(autonomy.level.get(), 2);
    assert_eq!(autonomy.grants[0].action, "calendar.create");
    assert!(autonomy.grants[0].match_args.is_empty() && autonomy.grants[0].expires_at.is_none());
    let send = &autonomy.grants[1];
    assert_eq!(send.action, "gmail.send");
    assert_eq!(send.match_args.get("to").map(String::as_str), Some("*@company.com"));
    assert_eq!(send.expires_at.as_ref().unwrap().millis, 1_798_761_599_000);
    assert_eq!(send.daily_cap, Some(20));
    assert_eq!(orch.autonomy.level.get(), 1);

    assert_eq!(c.skills.installed.enabled(), [SkillId::Gog, SkillId::Notion]);
    assert!(!c.skill_enabled(SkillId::AttioCrm));
    let gog = c.skills.installed.gog.as_ref().unwrap();
    assert_eq!(gog.config.client_id.as_deref(), Some("client.apps.googleusercontent.com"));
    assert_eq!(gog.config.client_secret.as_ref().unwrap().expose_secret(), "gcs_secret");

    let i = &c.integrations;
    assert_eq!(i.google.api_base.as_ref().unwrap().as_str(), "http://127.0.0.1:9100");
    assert_eq!(i.google.token_url.as_str(), "http://127.0.0.1:9100/token");
    assert_eq!(i.google.auth_url.as_str(), "https://accounts.google.com/o/oauth2/v2/auth");
    assert_eq!(i.notion.api_base.as_str(), "http://127.0.0.1:9200/v1");
    let smtp = i.smtp.as_ref().unwrap();
    assert_eq!((smtp.host.as_str(), smtp.port, smtp.starttls), ("smtp.company.com", 587, true));
    assert_eq!(smtp.from.as_str(), "crewgate@company.com");

    assert_eq!(c.onboarding.allowed_domains, ["company.com"]);
    assert!(c.onboarding.domain_allowed(alice.owner.as_ref().unwrap()));
    assert_eq!(c.onboarding.invite_ttl().as_secs(), 24 * 3600);
    let s3 = c.backup.s3.as_ref().unwrap();
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str(), s3.path_style), ("crew", "crewgate/", true));
    assert_eq!(s3.secret_access_key.as_ref().unwrap().expose_secret(), "s3_secret");
    assert_eq!(c.backup.interval().as_millis(), 500);
    assert_eq!(c.backup.retain_generations, 3);
    assert!(c.warnings.is_empty(), "{:?}", warnings(&c));
}

#[test]
fn debug_output_never_shows_secrets() {
    let c = parse(FULL, FULL_ENV);
    let debug = format!("{c:?}");
    for (_, value) in FULL_ENV.iter().filter(|(k, _)| {
        k.contains("TOKEN") || k.contains("SECRET") || k.contains("KEY") || k.contains("PASSWORD")
    }) {
        assert!(!debug.contains(value), "{value} leaked in Debug");
    }
    assert!(debug.contains("REDACTED"));
}

#[test]
fn agent_config_round_trips_through_json() {
    let c = parse(FULL, FULL_ENV);
    for agent in &c.agents.list {
        let json = serde_json::to_value(agent).unwrap();
        let back: AgentConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, agent, "{json}");
    }
    let json = serde_json::to_value(c.agent("alice-company-com").unwrap()).unwrap();
    assert_eq!(json["autonomy"]["grants"][1]["expiresAt"], "2026-12-31T23:59:59Z");
    assert_eq!(json["skills"], serde_json::json!(["gog", "notion"]));
    assert_eq!(json["subagents"]["allowAgents"], serde_json::json!(["bob-company-com"]));
}

#[test]
fn expansion_in_context() {
    let text = r#"{ "agents": { "list": [ {
        "id": "${AGENT:-main}",
        "workspace": "${WS}",
        "name": "${NAME:-Main agent}",
        "identity": { "personality": "costs $$5, not $${PRICE}", "theme": "${THEME:-}" },
    } ] } }"#;
    // WS is set but empty: fine for ${WS}, and an empty optional string means "not set".
    // NAME is empty: ${NAME:-…} takes the default.
    let c = parse(text, &[("WS", ""), ("NAME", "")]);
    let a = &c.agents.list[0];
    assert_eq!(a.id.as_str(), "main");
    assert_eq!(a.workspace, None);
    assert_eq!(a.name.as_deref(), Some("Main agent"));
    assert_eq!(a.identity.personality.as_deref(), Some("costs $5, not ${PRICE}"));
    assert_eq!(a.identity.theme, None);
    let c = parse(text, &[("WS", "/srv/ws"), ("AGENT", "ops")]);
    assert_eq!(c.agents.list[0].workspace.as_deref(), Some("/srv/ws"));
    assert_eq!(c.agents.list[0].id.as_str(), "ops");
    // An expanded value is validated like a literal one, at the string's position.
    assert_eq!(
        parse_err(text, &[("WS", ""), ("AGENT", "Not Valid")]),
        "crewgate.jsonc:2:15: agents.list[0].id: invalid agent id \"Not Valid\" — use 1-64 characters of a-z, \
         0-9 and '-', starting with a letter or digit"
    );
}

#[test]
fn more_value_errors() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"gateway": {"port": -1}}"#,
            "crewgate.jsonc:1:22: gateway.port: port -1 is out of range — use 1-65535",
        ),
        (
            r#"{"gateway": {"port": 0}}"#,
            "crewgate.jsonc:1:22: gateway.port: port 0 is out of range — use 1-65535",
        ),
        (
            r#"{"gateway": {"port": 1.5}}"#,
            "crewgate.jsonc:1:22: gateway.port: expected a port number (1-65535), found the number 1.5",
        ),
        (r#"{"llm": {"timeoutSecs": 0}}"#, "crewgate.jsonc:1:25: llm.timeoutSecs: must be at least 1"),
        (
            r#"{"onboarding": {"inviteTtlHours": 5000000000}}"#,
            "crewgate.jsonc:1:35: onboarding.inviteTtlHours: expected an integer from 0 to 4294967295, found the number 5000000000",
        ),
        (
            r#"{"agents": {"list": {}}}"#,
            "crewgate.jsonc:1:21: agents.list: expected an array, found an object",
        ),
        (r#"{"llm": {"model": ""}}"#, "crewgate.jsonc:1:19: llm.model: must not be empty"),
        (
            r#"{"llm": {"model": {"primary": "a", "fallback": []}}}"#,
            "crewgate.jsonc:1:36: llm.model.fallback: unknown key — expected one of: primary, fallbacks",
        ),
        (
            r#"{"llm": {"model": 5}}"#,
            "crewgate.jsonc:1:19: llm.model: expected a model name or an object with primary and fallbacks, found the number 5",
        ),
        (
            r#"{"agents": {"list": [{"id": "a", "owner": "alice"}]}}"#,
            "crewgate.jsonc:1:43: agents.list[0].owner: invalid e-mail address \"alice\" — write it as name@company.com",
        ),
        (
            r#"{"agents": {"list": [{"id": "a", "subagents": {"allowAgents": ["B"]}}]}}"#,
            "crewgate.jsonc:1:64: agents.list[0].subagents.allowAgents[0]: invalid agent id \"B\" — use 1-64 \
             characters of a-z, 0-9 and '-', starting with a letter or digit",
        ),
        (
            r#"{"agents": {"list": [{"id": "a", "skills": ["slack"]}]}}"#,
            "crewgate.jsonc:1:45: agents.list[0].skills[0]: unknown skill id \"slack\" — expected one of: \
             steipete/gog, gog, steipete/notion, notion, kesslerio/attio-crm, attio-crm",
        ),
        (
            r#"{"agents": {"list": [{"id": "a", "autonomy": {"grants": [{"match": {}}]}}]}}"#,
            "crewgate.jsonc:1:58: agents.list[0].autonomy.grants[0]: missing key \"action\"",
        ),
        (
            r#"{"gateway": {"auth": {"userTokens": {"cgu_x": 7}}}}"#,
            "crewgate.jsonc:1:47: gateway.auth.userTokens.<token>: expected an agent id or an object with agentId, found the number 7",
        ),
        (
            r#"{"integrations": {"smtp": {"host": "h"}}}"#,
            "crewgate.jsonc:1:27: integrations.smtp: missing key \"from\"",
        ),
        (
            r#"{"gateway": {"publicUrl": "https://"}}"#,
            "crewgate.jsonc:1:27: gateway.publicUrl: invalid URL: empty host — use an absolute http:// or https:// URL",
        ),
    ];
    // Swapped key and value: the token must not be echoed.
    assert_eq!(
        parse_err(r#"{"gateway": {"auth": {"userTokens": {"alice-company-com": "cgu_0123"}}}}"#, &[]),
        "crewgate.jsonc:1:59: gateway.auth.userTokens.<token>: invalid agent id (the value looks like a token) \
         — in userTokens the key is the token and the value the agent id"
    );
    for (text, expected) in cases {
        assert_eq!(parse_err(text, &[]), *expected, "{text}");
    }
}

#[test]
fn cross_field_errors_are_all_reported_in_file_order() {
    let text = r#"{
  "gateway": { "auth": { "userTokens": { "${A}": "ghost", "${B}": "main" } } },
  "agents": { "list": [ { "id": "main" }, { "id": "main" } ] }
}"#;
    assert_eq!(
        parse_err(text, &[("A", "cgu_1"), ("B", "cgu_1")]),
        "crewgate.jsonc:2:50: gateway.auth.userTokens.${A}: unknown agent id \"ghost\" — declare it in agents.list (declared: main)\n\
         crewgate.jsonc:2:59: gateway.auth.userTokens.${B}: the same token is listed twice — first at line 2\n\
         crewgate.jsonc:3:51: agents.list[1].id: duplicate agent id \"main\" — first defined at line 3"
    );
}

#[test]
fn warnings_point_at_the_offending_values() {
    let text = r#"{
  "gateway": {
    "publicUrl": "http://crewgate.company.com",
    "auth": { "token": "cga_plain", "userTokens": { "cgu_plain": "worker-a" } }
  },
  "llm": { "apiKey": "rp_plain" },
  "agents": { "list": [
    { "id": "main", "default": true },
    { "id": "worker-a", "default": true, "owner": "a@elsewhere.org" }
  ] },
  "skills": { "installed": { "gog": { "config": { "clientId": "x" } }, "attio-crm": { "config": { "apiKey": "k" } } } },
  "onboarding": { "selfService": true }
}"#;
    let c = parse(text, &[]);
    assert_eq!(
        warnings(&c),
        [
            "crewgate.jsonc:3:18: gateway.publicUrl: publicUrl is not https — dashboard session cookies are Secure-only, so browsers drop them over plain http",
            "crewgate.jsonc:4:24: gateway.auth.token: plaintext token in config — it will be hashed on import; prefer ${ENV}",
            "crewgate.jsonc:4:53: gateway.auth.userTokens.<token>: plaintext token in config — it will be hashed on import; prefer ${ENV}",
            "crewgate.jsonc:6:22: llm.apiKey: plaintext secret in config — prefer ${ENV}",
            "crewgate.jsonc:9:36: agents.list[1].default: another agent is already the default — the first one wins: \"main\"",
            "crewgate.jsonc:11:30: skills.installed.gog: skill gog is enabled but config.clientSecret is not set — its tools will fail until then; set it or write \"enabled\": false",
            "crewgate.jsonc:11:109: skills.installed.attio-crm.config.apiKey: plaintext secret in config — prefer ${ENV}",
            "crewgate.jsonc:12:34: onboarding.selfService: self-service onboarding is open to any Google account — set onboarding.allowedDomains or requireAdminApproval",
        ]
    );
    assert_eq!(c.default_agent().unwrap().id.as_str(), "main");
    assert!(!warnings(&c).iter().any(|w| w.contains("cgu_plain") || w.contains("cga_plain")));

    let c = parse(
        r#"{"onboarding": {"allowedDomains": ["company.com"]}, "agents": {"list": [{"id": "a", "owner": "a@other.com"}]}}"#,
        &[],
    );
    assert_eq!(
        warnings(&c),
        [
            "crewgate.jsonc:1:94: agents.list[0].owner: owner is outside onboarding.allowedDomains — this person could not \
          sign in with Google to approve; fix the address or the domain list"
        ]
    );
}

#[test]
fn default_agent_is_first_default_else_first() {
    let c = parse(r#"{"agents": {"list": [{"id": "a"}, {"id": "b"}]}}"#, &[]);
    assert_eq!(c.default_agent().unwrap().id.as_str(), "a");
    let c = parse(r#"{"agents": {"list": [{"id": "a"}, {"id": "b", "default": true}]}}"#, &[]);
    assert_eq!(c.default_agent().unwrap().id.as_str(), "b");
}

#[test]
fn jsonc_conveniences_bom_and_crlf() {
    let c = parse("\u{feff}// c\r\n{\r\n  gateway: { /* b */ port: 9000, },\r\n}\r\n", &[]);
    assert_eq!(c.gateway.port, 9000);
    assert_eq!(
        parse_err("\u{feff}{\r\n  \"gateway\": {\r\n    \"port\": \"x\"\r\n  }\r\n}", &[]),
        "crewgate.jsonc:3:13: gateway.port: expected a port number (1-65535), found a string"
    );
    // Null is "not set" for optional values.
    let c = parse(r#"{"gateway": {"publicUrl": null}, "llm": {"apiKey": null}}"#, &[]);
    assert!(c.gateway.public_url.is_none() && c.llm.api_key.is_none());
}

#[test]
fn starter_config_parses_with_nothing_set() {
    let c = parse(STARTER_CONFIG, &[]);
    assert_eq!(c.gateway.socket_addr().to_string(), "127.0.0.1:18789");
    assert!(c.gateway.public_url.is_none() && c.gateway.auth.token.is_none() && c.llm.api_key.is_none());
    assert_eq!(c.llm.base_url.as_str(), DEFAULT_LLM_BASE_URL);
    assert_eq!(c.llm.model.primary, DEFAULT_MODEL);
    let orch = c.default_agent().unwrap();
    assert_eq!((orch.id.as_str(), orch.effective_kind()), ("orchestrator", AgentKind::Orchestrator));
    assert_eq!(c.skills.installed.enabled(), SkillId::ALL);
    assert!(c.backup.s3.is_none());
    // The only findings are the credentials the operator still has to provide.
    let w = warnings(&c);
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(w[0].contains("skills.installed.steipete/gog: skill gog is enabled but config.clientId and config.clientSecret are not set"));
    assert!(
        w[1].contains(
            "skills.installed.steipete/notion: skill notion is enabled but config.apiKey is not set"
        )
    );
    assert!(w[2].contains(
        "skills.installed.kesslerio/attio-crm: skill attio-crm is enabled but config.apiKey is not set"
    ));
}

#[test]
fn starter_config_with_its_variables_set_is_clean() {
    let c = parse(
        STARTER_CONFIG,
        &[
            ("PUBLIC_URL", "https://abc-18789.dstack.phala.network"),
            ("ADMIN_TOKEN", "cga_x"),
            ("REDPILL_API_KEY", "rp_x"),
            ("LLM_BASE_URL", "https://tee.redpill.ai/v1"),
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("NOTION_API_KEY", "n"),
            ("ATTIO_API_KEY", "a"),
        ],
    );
    assert!(c.warnings.is_empty(), "{:#?}", warnings(&c));
    assert_eq!(c.llm.base_url.as_str(), "https://tee.redpill.ai/v1");
    assert_eq!(c.gateway.public_url.unwrap().as_str(), "https://abc-18789.dstack.phala.network");
}

#[test]
fn load_names_the_file_and_keeps_io_causes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crewgate.jsonc");
    std::fs::write(&path, "{\n  \"gateway\": { \"prot\": 1 }\n}\n").unwrap();
    let err = Config::load(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:16: gateway.prot: unknown key — expected one of: port, bind, publicUrl, auth",
            path.display()
        )
    );

    std::fs::write(&path, "{ \"gateway\": { \"port\": 9999 } }").unwrap();
    assert_eq!(Config::load(&path).unwrap().gateway.port, 9999);

    let missing = dir.path().join("nope.jsonc");
    let err = Config::load(&missing).err().unwrap();
    assert_eq!(err.to_string(), format!("{}: cannot read config file", missing.display()));
    let ConfigError::Read { source, .. } = &err else { panic!("{err:?}") };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(std::error::Error::source(&err).is_some());
    assert!(err.diagnostics().is_empty());
}
