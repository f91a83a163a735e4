//! Streaming chunks → [`StreamEvent`]s, and [`StreamAccumulator`] that rebuilds the final message.

use std::collections::{BTreeMap, VecDeque};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{LlmError, ProviderError};
use crate::sse::SseEvent;
use crate::types::{ChatResponse, Choice, Message, Role, ToolCall, Usage};

/// One increment of a streamed completion.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// More assistant text.
    TextDelta(String),
    /// A piece of tool call number `index`. `id` and `name` usually come once (in the first piece)
    /// but some servers repeat them in every piece; `arguments_fragment` is to be concatenated.
    ToolCallDelta { index: u32, id: Option<String>, name: Option<String>, arguments_fragment: String },
    /// The completion is over (always the last event of a successful stream).
    Done { finish_reason: Option<String>, usage: Option<Usage> },
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallChunk>>,
    /// Legacy single function call (some servers send it *beside* `tool_calls` as a duplicate).
    #[serde(default)]
    function_call: Option<FunctionChunk>,
}

#[derive(Debug, Deserialize)]
struct ToolCallChunk {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionChunk>,
}

#[derive(Debug, Deserialize)]
struct FunctionChunk {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

impl FunctionChunk {
    fn arguments(&self) -> String {
        match &self.arguments {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut e: String = s.chars().take(MAX).collect();
        e.push('…');
        e
    }
}

/// Turns SSE events of a chat-completions stream into [`StreamEvent`]s.
#[derive(Debug, Default)]
pub(crate) struct ChunkDecoder {
    pub(crate) id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) created: Option<u64>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl ChunkDecoder {
    /// `true` once `[DONE]` was seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes one SSE event, appending the resulting stream events.
    pub(crate) fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), LlmError> {
        if self.done {
            return Ok(());
        }
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            out.push_back(StreamEvent::Done { finish_reason: self.finish_reason.clone(), usage: self.usage });
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        match serde_json::from_str::<Value>(data) {
            Ok(v) => self.on_json(v, ev.event.as_deref(), out),
            Err(e) if ev.event.as_deref() == Some("error") => {
                tracing::debug!(error = %e, "non-JSON SSE error event");
                Err(LlmError::Provider {
                    provider: ProviderError { message: excerpt(data), kind: None, code: None },
                })
            }
            Err(e) if data.contains('\n') => {
                // Some servers forget the blank line between events, so two `data:` lines get
                // joined into one event: decode line by line.
                tracing::debug!(error = %e, "multi-line SSE data, decoding line by line");
                for line in data.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    self.on_event(&SseEvent { event: ev.event.clone(), data: line.to_owned() }, out)?;
                }
                Ok(())
            }
            Err(e) => Err(LlmError::InvalidStream {
                detail: format!("a chunk is not JSON: {}", excerpt(data)),
                source: Some(Box::new(e)),
            }),
        }
    }

    fn on_json(
        &mut self,
        v: Value,
        event: Option<&str>,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), LlmError> {
        if v.get("error").is_some() || event == Some("error") {
            let provider = ProviderError::from_json(&v).unwrap_or_else(|| ProviderError {
                message: excerpt(&v.to_string()),
                kind: None,
                code: None,
            });
            return Err(LlmError::Provider { provider });
        }
        let chunk: Chunk = serde_json::from_value(v).map_err(|e| LlmError::InvalidStream {
            detail: "a chunk does not have the chat.completion.chunk shape".into(),
            source: Some(Box::new(e)),
        })?;
        if self.id.is_none() {
            self.id = non_empty(chunk.id.as_ref());
        }
        if self.model.is_none() {
            self.model = non_empty(chunk.model.as_ref());
        }
        if self.created.is_none() {
            self.created = chunk.created;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        // Only the first choice (we never ask for n > 1).
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(StreamEvent::TextDelta(text));
                }
                let tool_calls = delta.tool_calls.unwrap_or_default();
                let has_tool_calls = !tool_calls.is_empty();
                for (pos, tc) in tool_calls.into_iter().enumerate() {
                    let index = tc.index.unwrap_or_else(|| u32::try_from(pos).unwrap_or(u32::MAX));
                    let (name, arguments_fragment) = match &tc.function {
                        Some(f) => (non_empty(f.name.as_ref()), f.arguments()),
                        None => (None, String::new()),
                    };
                    out.push_back(StreamEvent::ToolCallDelta {
                        index,
                        id: non_empty(tc.id.as_ref()),
                        name,
                        arguments_fragment,
                    });
                }
                // A legacy `function_call` is only used when there are no `tool_calls`; beside
                // them it is a duplicate (llama-cpp-python) and must not be counted twice.
                if let (false, Some(f)) = (has_tool_calls, delta.function_call) {
                    out.push_back(StreamEvent::ToolCallDelta {
                        index: 0,
                        id: None,
                        name: non_empty(f.name.as_ref()),
                        arguments_fragment: f.arguments(),
                    });
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }

    /// The body ended. Tolerates a missing `[DONE]` when a `finish_reason` was seen.
    pub(crate) fn on_eof(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), LlmError> {
        if self.done {
            return Ok(());
        }
        if self.finish_reason.is_none() {
            return Err(LlmError::InvalidStream {
                detail: "the stream ended before the model finished".into(),
                source: None,
            });
        }
        self.done = true;
        out.push_back(StreamEvent::Done { finish_reason: self.finish_reason.clone(), usage: self.usage });
        Ok(())
    }
}

/// Converts a complete response into the events a stream would have produced
/// (for servers that answer a streaming request with a plain JSON completion).
pub(crate) fn events_of_response(resp: &ChatResponse) -> VecDeque<StreamEvent> {
    let mut out = VecDeque::new();
    if let Some(choice) = resp.choices.first() {
        let text = choice.message.text();
        if !text.is_empty() {
            out.push_back(StreamEvent::TextDelta(text.to_owned()));
        }
        for (pos, tc) in choice.message.tool_calls.iter().enumerate() {
            out.push_back(StreamEvent::ToolCallDelta {
                index: u32::try_from(pos).unwrap_or(u32::MAX),
                id: Some(tc.id.clone()),
                name: Some(tc.function.name.clone()),
                arguments_fragment: tc.function.arguments.clone(),
            });
        }
    }
    out.push_back(StreamEvent::Done {
        finish_reason: resp.finish_reason().map(str::to_owned),
        usage: resp.usage,
    });
    out
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// Rebuilds the final assistant message from [`StreamEvent`]s: text concatenated, tool calls
/// accumulated by `index` (id and name taken once, only arguments concatenated).
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    text: String,
    calls: BTreeMap<u32, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event.
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::TextDelta(t) => self.text.push_str(t),
            StreamEvent::ToolCallDelta { index, id, name, arguments_fragment } => {
                let call = self.calls.entry(*index).or_default();
                if call.id.is_none() {
                    call.id.clone_from(id);
                }
                if call.name.is_none() {
                    call.name.clone_from(name);
                }
                call.arguments.push_str(arguments_fragment);
            }
            StreamEvent::Done { finish_reason, usage } => {
                self.finish_reason.clone_from(finish_reason);
                self.usage = *usage;
                self.done = true;
            }
        }
    }

    /// Whether [`StreamEvent::Done`] was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The assistant message. Tool calls without an id get `call_<index>`; empty arguments
    /// become `{}`.
    pub fn message(&self) -> Message {
        let tool_calls: Vec<ToolCall> = self
            .calls
            .iter()
            .map(|(index, c)| {
                ToolCall::new(
                    c.id.clone().unwrap_or_else(|| format!("call_{index}")),
                    c.name.clone().unwrap_or_default(),
                    if c.arguments.trim().is_empty() { "{}".to_owned() } else { c.arguments.clone() },
                )
            })
            .collect();
        Message {
            role: Role::Assistant,
            content: if self.text.is_empty() && !tool_calls.is_empty() {
                None
            } else {
                Some(self.text.clone())
            },
            tool_calls,
            tool_call_id: None,
            name: None,
        }
    }

    /// `finish_reason` of the `Done` event.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// Usage of the `Done` event.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// A `chat.completion` equivalent of the stream.
    pub fn into_response(self, id: String, model: String, created: u64) -> ChatResponse {
        ChatResponse {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: self.message(),
                finish_reason: self.finish_reason.clone(),
            }],
            usage: self.usage,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn run(datas: &[Value]) -> (Vec<StreamEvent>, Result<(), LlmError>) {
        let mut d = ChunkDecoder::default();
        let mut out = VecDeque::new();
        for v in datas {
            let ev = SseEvent {
                event: None,
                data: match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            };
            if let Err(e) = d.on_event(&ev, &mut out) {
                return (out.into(), Err(e));
            }
        }
        let r = d.on_eof(&mut out);
        (out.into(), r)
    }

    #[test]
    fn quirky_llama_cpp_tool_call_deltas_accumulate_once() {
        let delta = |args: &str| {
            json!({"choices":[{"index":0,"delta":{
                "tool_calls":[{"index":0,"id":"call_x","type":"function","function":{"name":"get_weather","arguments":args}}],
                "function_call":{"name":"get_weather","arguments":args}}}]})
        };
        let (events, r) = run(&[
            json!({"choices":[{"index":0,"delta":{"role":"assistant"}}]}),
            delta("{\"ci"),
            delta("ty\": \"Pa"),
            delta("ris\"}"),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}),
            json!("[DONE]"),
        ]);
        r.unwrap();
        assert_eq!(events.len(), 4, "{events:?}");
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        let m = acc.message();
        assert_eq!(m.content, None);
        assert_eq!(m.tool_calls, vec![ToolCall::new("call_x", "get_weather", "{\"city\": \"Paris\"}")]);
        assert_eq!(acc.finish_reason(), Some("tool_calls"));
        assert_eq!(acc.usage().unwrap().total_tokens, 7);
    }

    #[test]
    fn legacy_function_call_alone_is_a_tool_call() {
        let (events, r) = run(&[
            json!({"choices":[{"delta":{"function_call":{"name":"f","arguments":"{\"a\""}}}]}),
            json!({"choices":[{"delta":{"function_call":{"arguments":":1}"}}}]}),
            json!({"choices":[{"delta":{},"finish_reason":"function_call"}]}),
        ]);
        r.unwrap();
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        assert!(acc.is_done(), "missing [DONE] tolerated after finish_reason");
        assert_eq!(acc.message().tool_calls, vec![ToolCall::new("call_0", "f", "{\"a\":1}")]);
    }

    #[test]
    fn parallel_tool_calls_by_index() {
        let (events, r) = run(&[
            json!({"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":""}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"x\":2}"}}]}}]}),
            json!({"choices":[{"delta":{},"finish_reason":"tool_calls"}]}),
            json!("[DONE]"),
        ]);
        r.unwrap();
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        assert_eq!(
            acc.message().tool_calls,
            vec![ToolCall::new("a", "f", "{}"), ToolCall::new("b", "g", "{\"x\":2}")]
        );
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let (_, r) = run(&[json!({"choices":[{"delta":{"content":"par"}}]})]);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("provider sent an invalid stream"), "{e}");
        assert!(e.to_string().contains("ended before the model finished"), "{e}");
    }

    #[test]
    fn garbage_and_error_chunks() {
        let (_, r) = run(&[json!("{not json")]);
        let e = r.unwrap_err();
        assert!(matches!(e, LlmError::InvalidStream { source: Some(_), .. }), "{e:?}");
        let (_, r) = run(&[json!({"error":{"message":"overloaded","type":"upstream_error"}})]);
        assert_eq!(
            r.unwrap_err().to_string(),
            "the LLM provider reported an error: \"overloaded\" (upstream_error)"
        );
    }

    #[test]
    fn joined_data_lines_are_split() {
        let (events, r) = run(&[json!(
            "{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n{\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}"
        )]);
        r.unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("a".into()),
                StreamEvent::TextDelta("b".into()),
                StreamEvent::Done { finish_reason: Some("stop".into()), usage: None }
            ]
        );
    }
}
