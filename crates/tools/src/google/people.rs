//! Google People: search contacts and "other contacts" (people the user interacted with).

use serde_json::{Value, json};

use super::{Api, Session};
use crate::ToolOutput;
use crate::args;
use crate::error::ToolError;
use crate::trim::fit;

const CONTACT_MASK: &str = "names,emailAddresses,phoneNumbers,organizations";
// otherContacts only allows these fields in readMask.
const OTHER_MASK: &str = "names,emailAddresses,phoneNumbers";

fn person(p: &Value, source: &str) -> Value {
    let list = |k: &str, f: &str| -> Vec<Value> {
        p[k].as_array()
            .map(|l| l.iter().filter_map(|x| x[f].as_str()).map(|s| json!(s)).collect())
            .unwrap_or_default()
    };
    json!({
        "name": p["names"][0]["displayName"],
        "emails": list("emailAddresses", "value"),
        "phones": list("phoneNumbers", "value"),
        "organization": p["organizations"][0]["name"],
        "source": source,
    })
}

pub(super) async fn search(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let query = args::req(a, "query").to_owned();
    let size = args::u64_or(a, "max_results", 10).to_string();
    let mut results = Vec::new();
    for (path, mask, source) in [
        ("/v1/people:searchContacts", CONTACT_MASK, "contacts"),
        ("/v1/otherContacts:search", OTHER_MASK, "other contacts"),
    ] {
        // "Before searching, clients should send a warmup request with an empty query to
        // update the cache" (People API); without it results can be stale or empty.
        g.get(Api::People, path, &[("query", String::new()), ("readMask", mask.into())]).await?;
        let r = g
            .get(
                Api::People,
                path,
                &[("query", query.clone()), ("readMask", mask.into()), ("pageSize", size.clone())],
            )
            .await?;
        if let Some(list) = r["results"].as_array() {
            results.extend(list.iter().map(|x| person(&x["person"], source)));
        }
    }
    let out = json!({ "contacts": results });
    Ok(ToolOutput::new(fit(out, g.budget(), Some("contacts"), "use a longer prefix")))
}
