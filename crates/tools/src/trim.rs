//! Fitting a result into the model's budget. Tool results go back to the model on every later
//! turn, so a 2 MB mailbox listing must not reach it. We trim in two steps: drop trailing items
//! of the result list (with an "N more results" hint), then shorten the longest strings.

use serde_json::{Value, json};

/// Cuts `s` to at most `max` characters at a char boundary, saying how much was left out.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_owned();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}… [{} more characters]", total - max)
}

fn size(v: &Value) -> usize {
    serde_json::to_string(v).map(|s| s.len()).unwrap_or(usize::MAX)
}

/// Fits `value` into `budget` bytes of JSON. `list_key` names the array of results whose
/// tail may be dropped; `more_hint` is how the model gets more (e.g. "use page_token").
pub(crate) fn fit(mut value: Value, budget: usize, list_key: Option<&str>, more_hint: &str) -> Value {
    if size(&value) <= budget {
        return value;
    }
    if let Some(key) = list_key
        && let Some(Value::Array(items)) = value.get_mut(key)
    {
        let total = items.len();
        let sizes: Vec<usize> = items.iter().map(|i| size(i) + 1).collect();
        let taken = std::mem::take(items);
        let rest = size(&value) + 200; // the envelope plus room for the hint
        let mut used = rest;
        let mut keep = 0;
        for s in &sizes {
            // Keep at least one item; strings inside it get shortened below if needed.
            if keep > 0 && used + s > budget {
                break;
            }
            used += s;
            keep += 1;
        }
        if let Some(Value::Array(items)) = value.get_mut(key) {
            items.extend(taken.into_iter().take(keep));
        }
        let dropped = total - keep;
        if dropped > 0
            && let Some(o) = value.as_object_mut()
        {
            o.insert(
                "more_results".into(),
                json!(format!("{dropped} more results not shown (output size limit); {more_hint}")),
            );
        }
    }
    // Halve the longest strings until it fits (or they are short).
    let mut cap = 4000usize;
    while size(&value) > budget && cap >= 50 {
        shorten_strings(&mut value, cap);
        cap /= 2;
    }
    value
}

fn shorten_strings(v: &mut Value, cap: usize) {
    match v {
        Value::String(s) if s.chars().count() > cap => *s = cut(s, cap),
        Value::Array(a) => a.iter_mut().for_each(|x| shorten_strings(x, cap)),
        Value::Object(o) => o
            .iter_mut()
            .filter(|(k, _)| k.as_str() != "more_results")
            .for_each(|(_, x)| shorten_strings(x, cap)),
        _ => {}
    }
}

/// A window of a long text: `offset` characters skipped, at most `max` kept, with a hint how to
/// read on.
pub(crate) fn window(text: &str, offset: usize, max: usize) -> (String, Option<String>) {
    let total = text.chars().count();
    let part: String = text.chars().skip(offset).take(max).collect();
    let end = offset + part.chars().count();
    let hint = (end < total)
        .then(|| format!("{} more characters: call again with offset {end} to continue", total - end));
    (part, hint)
}

/// Characters of text that fit the budget as a JSON string (escapes and multi-byte characters
/// take more than one byte).
pub(crate) fn text_room(budget: usize, text: &str) -> usize {
    let room = budget.saturating_sub(600);
    if text.is_ascii() { room * 3 / 4 } else { room / 3 }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn drops_tail_with_hint() {
        let items: Vec<Value> = (0..100).map(|i| json!({"id": i, "text": "x".repeat(100)})).collect();
        let v = fit(json!({"results": items}), 2000, Some("results"), "narrow the query");
        assert!(size(&v) <= 2000, "{}", size(&v));
        let kept = v["results"].as_array().unwrap().len();
        assert!(kept > 5 && kept < 100);
        assert_eq!(
            v["more_results"],
            format!("{} more results not shown (output size limit); narrow the query", 100 - kept)
        );
    }

    #[test]
    fn shortens_long_strings() {
        let v = fit(json!({"body": "é".repeat(50_000)}), 3000, None, "");
        assert!(size(&v) <= 3000);
        assert!(v["body"].as_str().unwrap().contains("more characters]"));
    }

    #[test]
    fn windows() {
        let (p, h) = window("abcdef", 2, 3);
        assert_eq!(p, "cde");
        assert_eq!(h.unwrap(), "1 more characters: call again with offset 5 to continue");
        assert_eq!(window("abc", 0, 10).1, None);
    }
}
