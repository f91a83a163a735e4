#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every file in `fixtures/bad/` with the exact message it must produce (positions computed by
//! hand from the fixture, not copied from the output).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crewgate_config::{Config, ConfigError};

struct Case {
    fixture: &'static str,
    env: &'static [(&'static str, &'static str)],
    expected: &'static str,
}

const CASES: &[Case] = &[
    Case {
        fixture: "syntax_missing_comma",
        env: &[],
        expected: "crewgate.jsonc:3:18: syntax error: expected comma",
    },
    Case {
        fixture: "syntax_unterminated_object",
        env: &[],
        expected: "crewgate.jsonc:1:1: syntax error: unterminated object",
    },
    Case {
        fixture: "empty",
        env: &[],
        expected: "crewgate.jsonc:1:1: the config is empty — write {} to use every default, or run `crewgate init` for a starter file",
    },
    Case {
        fixture: "root_not_object",
        env: &[],
        expected: "crewgate.jsonc:1:1: the top level must be an object, found an array",
    },
    Case {
        fixture: "unknown_key",
        env: &[],
        expected: "crewgate.jsonc:7:5: gateway.auth.tokn: unknown key — expected one of: token, userTokens",
    },
    Case {
        fixture: "unknown_openclaw_agent_key",
        env: &[],
        expected: "crewgate.jsonc:4:23: agents.list[0].sandbox: unknown key — expected one of: id, name, default, \
                   workspace, identity, model, owner, kind, subagents, skills, autonomy",
    },
    Case {
        fixture: "wrong_type_port",
        env: &[],
        expected: "crewgate.jsonc:2:24: gateway.port: expected a port number (1-65535), found a string",
    },
    Case {
        fixture: "wrong_type_object",
        env: &[],
        expected: "crewgate.jsonc:2:10: llm: expected an object, found a string",
    },
    Case {
        fixture: "wrong_type_bool",
        env: &[],
        expected: "crewgate.jsonc:3:20: onboarding.selfService: expected true or false, found a string",
    },
    Case {
        fixture: "port_out_of_range",
        env: &[],
        expected: "crewgate.jsonc:3:13: gateway.port: port 70000 is out of range — use 1-65535",
    },
    Case {
        fixture: "missing_env",
        env: &[],
        expected: "crewgate.jsonc:3:16: llm.apiKey: environment variable REDPILL_API_KEY is not set — set it or write ${REDPILL_API_KEY:-default}",
    },
    Case {
        fixture: "missing_env_many",
        env: &[],
        expected: "crewgate.jsonc:3:25: llm.baseUrl: environment variable LLM_HOST is not set — set it or write ${LLM_HOST:-default}\n\
                   crewgate.jsonc:4:16: llm.apiKey: environment variable REDPILL_API_KEY is not set — set it or write ${REDPILL_API_KEY:-default}",
    },
    Case {
        fixture: "unterminated_env_ref",
        env: &[],
        expected: "crewgate.jsonc:3:27: gateway.publicUrl: unterminated \"${\" — close it with \"}\", or write \"$$\" for a literal \"$\"",
    },
    Case {
        fixture: "duplicate_agent_id",
        env: &[],
        expected: "crewgate.jsonc:6:15: agents.list[2].id: duplicate agent id \"alice-company-com\" — first defined at line 4",
    },
    Case {
        fixture: "invalid_agent_id",
        env: &[],
        expected: "crewgate.jsonc:4:15: agents.list[0].id: invalid agent id \"Alice_Bot\" — use 1-64 characters of a-z, \
                   0-9 and '-', starting with a letter or digit",
    },
    Case {
        fixture: "missing_agent_id",
        env: &[],
        expected: "crewgate.jsonc:4:7: agents.list[0]: missing key \"id\"",
    },
    Case {
        fixture: "bad_agent_kind",
        env: &[],
        expected: "crewgate.jsonc:4:39: agents.list[0].kind: unknown value \"orchestratr\" — expected one of: orchestrator, worker",
    },
    Case {
        fixture: "user_token_unknown_agent",
        env: &[("ALICE_TOKEN", "cgu_alice"), ("BOB_TOKEN", "cgu_bob")],
        expected: "crewgate.jsonc:6:38: gateway.auth.userTokens.${BOB_TOKEN}.agentId: unknown agent id \"bob-company-com\" \
                   — declare it in agents.list (declared: alice-company-com, orchestrator)",
    },
    Case {
        fixture: "user_token_plaintext_unknown_agent",
        env: &[],
        expected: "crewgate.jsonc:5:49: gateway.auth.userTokens.<token>: unknown agent id \"carol-company-com\" \
                   — declare it in agents.list (no agents are declared)",
    },
    Case {
        fixture: "user_token_is_admin_token",
        env: &[("ADMIN_TOKEN", "cga_same"), ("ALICE_TOKEN", "cga_same")],
        expected: "crewgate.jsonc:6:9: gateway.auth.userTokens.${ALICE_TOKEN}: this token is also the admin token \
                   — give every person their own token",
    },
    Case {
        fixture: "unknown_skill",
        env: &[],
        expected: "crewgate.jsonc:4:7: skills.installed.steipete/gogg: unknown skill id \"steipete/gogg\" — expected one of: \
                   steipete/gog, gog, steipete/notion, notion, kesslerio/attio-crm, attio-crm",
    },
    Case {
        fixture: "duplicate_skill",
        env: &[],
        expected: "crewgate.jsonc:5:7: skills.installed.gog: skill gog is listed twice — first as \"steipete/gog\" at line 4",
    },
    Case {
        fixture: "autonomy_level_out_of_range",
        env: &[],
        expected: "crewgate.jsonc:6:32: agents.list[0].autonomy.level: autonomy level 5 is out of range — use 1, 2 or 3",
    },
    Case {
        fixture: "bad_grant_expiry",
        env: &[],
        expected: "crewgate.jsonc:8:80: agents.list[0].autonomy.grants[1].expiresAt: invalid timestamp \"next week\" \
                   — use RFC 3339, e.g. 2026-12-31T23:59:59Z",
    },
    Case {
        fixture: "bad_bind",
        env: &[],
        expected: "crewgate.jsonc:3:13: gateway.bind: invalid bind address \"localhostt\" — use an IP address such as \
                   127.0.0.1, 0.0.0.0 or ::, or \"loopback\" / \"lan\"",
    },
    Case {
        fixture: "bad_public_url_scheme",
        env: &[],
        expected: "crewgate.jsonc:3:18: gateway.publicUrl: unsupported URL scheme \"ftp\" — use an absolute http:// or https:// URL",
    },
    Case {
        fixture: "bad_public_url_relative",
        env: &[],
        expected: "crewgate.jsonc:3:18: gateway.publicUrl: invalid URL: relative URL without a base — use an absolute \
                   http:// or https:// URL",
    },
    Case {
        fixture: "duplicate_json_key",
        env: &[],
        expected: "crewgate.jsonc:5:5: gateway.port: duplicate key — first defined at line 3",
    },
    Case {
        fixture: "empty_s3_bucket",
        env: &[],
        expected: "crewgate.jsonc:5:17: backup.s3.bucket: must not be empty",
    },
    Case {
        fixture: "bad_allowed_domain",
        env: &[],
        expected: "crewgate.jsonc:3:39: onboarding.allowedDomains[1]: invalid domain \"not a domain\" — write a domain \
                   such as company.com",
    },
];

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

fn parse_fixture(case: &Case) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(fixture_dir().join(format!("{}.jsonc", case.fixture))).unwrap();
    let env: BTreeMap<String, String> = case.env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    Config::parse(&text, "crewgate.jsonc", &env)
}

#[test]
fn every_bad_fixture_fails_with_its_exact_message() {
    let mut failures = Vec::new();
    for case in CASES {
        match parse_fixture(case) {
            Ok(_) => failures.push(format!("{}: parsed without error", case.fixture)),
            Err(err) => {
                let got = err.to_string();
                if got != case.expected {
                    failures.push(format!(
                        "{}:\n  expected: {}\n  got:      {}",
                        case.fixture, case.expected, got
                    ));
                }
                assert!(matches!(err, ConfigError::Invalid(_)), "{}", case.fixture);
                assert_eq!(err.diagnostics().len(), case.expected.lines().count(), "{}", case.fixture);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_file_has_a_case() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonc"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = CASES.iter().map(|c| c.fixture.to_owned()).collect();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 12);
}

#[test]
fn messages_never_contain_secrets() {
    for case in CASES {
        let text = parse_fixture(case).err().unwrap().to_string();
        assert!(!text.contains("cgu_"), "{}: {text}", case.fixture);
        assert!(!text.contains("cga_"), "{}: {text}", case.fixture);
    }
}

#[test]
fn diagnostics_expose_their_parts() {
    let case = CASES.iter().find(|c| c.fixture == "unknown_key").unwrap();
    let err = parse_fixture(case).err().unwrap();
    let d = &err.diagnostics()[0];
    assert_eq!((d.file.as_str(), d.line, d.column), ("crewgate.jsonc", 7, 5));
    assert_eq!(d.path, "gateway.auth.tokn");
    assert_eq!(d.message, "unknown key");
    assert_eq!(d.hint.as_deref(), Some("expected one of: token, userTokens"));
}
