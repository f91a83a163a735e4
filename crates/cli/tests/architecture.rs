//! Keeps the crate dependency direction honest (DESIGN.md §2): a crate may depend only on crates
//! of a lower layer; `crewgate-core` depends on none of ours; `crewgate-testkit` is never a normal
//! dependency. Fails on any new edge that points the wrong way, and on a crate with no layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

fn layer(name: &str) -> Option<u8> {
    Some(match name {
        "crewgate-core" => 0,
        "crewgate-config" | "crewgate-llm" | "crewgate-store" => 1,
        "crewgate-backup" | "crewgate-tools" => 2,
        "crewgate-runtime" => 3,
        "crewgate-server" => 4,
        "crewgate" => 5,
        "crewgate-testkit" => 6,
        "crewgate-bench" => 7,
        "xtask" => 8,
        _ => return None,
    })
}

fn manifests() -> BTreeMap<String, toml::Table> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = BTreeMap::new();
    for dir in ["crates", "."] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path().join("Cargo.toml");
            if dir == "."
                && !path.parent().unwrap().ends_with("xtask")
                && !path.parent().unwrap().ends_with("bench")
            {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let table: toml::Table = text.parse().unwrap();
            let Some(name) = table.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()) else {
                continue;
            };
            out.insert(name.to_owned(), table);
        }
    }
    out
}

fn ours(section: Option<&toml::Value>) -> Vec<String> {
    section
        .and_then(|s| s.as_table())
        .map(|t| t.keys().filter(|k| k.starts_with("crewgate")).cloned().collect())
        .unwrap_or_default()
}

#[test]
fn dependencies_point_down_the_layers() {
    let all = manifests();
    assert!(all.len() >= 6, "expected the workspace crates, found {:?}", all.keys());
    let mut problems = Vec::new();
    for (name, table) in &all {
        let Some(own) = layer(name) else {
            problems.push(format!("{name} has no layer: add it to tests/architecture.rs and DESIGN.md §2"));
            continue;
        };
        for dep in ours(table.get("dependencies")) {
            // The bench harness drives the fakes; nothing that ships may.
            let testkit_ok = dep != "crewgate-testkit" || name == "crewgate-bench";
            match layer(&dep) {
                Some(l) if l < own && testkit_ok => {}
                _ => problems.push(format!("{name} (layer {own}) must not depend on {dep}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn core_depends_on_nothing_of_ours() {
    let all = manifests();
    let core = &all["crewgate-core"];
    assert!(ours(core.get("dependencies")).is_empty());
    assert!(ours(core.get("dev-dependencies")).is_empty());
}
