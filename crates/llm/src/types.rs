//! Wire types of the OpenAI chat-completions API (the subset crewgate uses).
//!
//! Serialization follows what OpenAI-compatible servers accept; deserialization is lenient
//! about what real servers send (content as an array of parts, tool-call arguments as a JSON
//! object instead of a string, missing optional fields).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A `POST /chat/completions` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model id, e.g. `deepseek/deepseek-v3.2`.
    pub model: String,
    /// Conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call. Omitted from the body when empty (OpenAI rejects `[]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
    /// `auto` / `none` / `required` / a named function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Set by [`crate::LlmClient::stream`] / cleared by [`crate::LlmClient::complete`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Streaming options; the client asks for `include_usage` when this is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Upper bound of generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// End-user id forwarded to the provider (abuse tracking / session affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Provider-specific extra fields (`top_p`, `response_format`, …), sent as-is.
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request with a model and messages and everything else unset.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self { model: model.into(), messages, ..Self::default() }
    }

    /// Adds tool definitions.
    #[must_use]
    pub fn with_tools(mut self, tools: Vec<ToolDef>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the `user` field.
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask the server to send a final chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Author of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text content; `None` (sent as `null`) for an assistant message that only calls tools.
    #[serde(default, deserialize_with = "de_content")]
    pub content: Option<String>,
    /// Tool calls of an assistant message. Omitted when empty (OpenAI rejects `[]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "de_null_vec")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Optional participant / tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    fn plain(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: Some(content.into()), tool_calls: Vec::new(), tool_call_id: None, name: None }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::plain(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content)
    }

    /// An assistant text message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::plain(Role::Assistant, content)
    }

    /// An assistant message that calls tools (content `null`).
    pub fn assistant_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Self { role: Role::Assistant, content: None, tool_calls, tool_call_id: None, name: None }
    }

    /// A tool result answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
            name: None,
        }
    }

    /// The text content, or `""`.
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }
}

/// `tool_choice` of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    /// Force this function.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::None => s.serialize_str("none"),
            Self::Required => s.serialize_str("required"),
            Self::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => match s.as_str() {
                "auto" => Ok(Self::Auto),
                "none" => Ok(Self::None),
                "required" => Ok(Self::Required),
                other => Err(serde::de::Error::custom(format!("unknown tool_choice {other:?}"))),
            },
            _ => v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(|n| Self::Function(n.to_owned()))
                .ok_or_else(|| serde::de::Error::custom("tool_choice object without function.name")),
        }
    }
}

/// The only tool type of the chat-completions API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    #[default]
    Function,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    #[serde(rename = "type", default)]
    pub kind: ToolKind,
    pub function: FunctionDef,
}

impl ToolDef {
    /// A function tool with a JSON-Schema `parameters` object.
    pub fn function(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            kind: ToolKind::Function,
            function: FunctionDef { name: name.into(), description: Some(description.into()), parameters },
        }
    }
}

/// Name, description and JSON-Schema parameters of a function tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Value,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: ToolKind,
    pub function: FunctionCall,
}

impl ToolCall {
    /// A function call with already-serialized JSON arguments.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: ToolKind::Function,
            function: FunctionCall { name: name.into(), arguments: arguments.into() },
        }
    }

    /// Parses the arguments as JSON.
    pub fn arguments_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.function.arguments)
    }
}

/// Function name and its arguments as a JSON string (exactly as the model produced them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default, deserialize_with = "de_arguments")]
    pub arguments: String,
}

/// Token accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
}

/// A non-streaming `chat.completion` response (also produced by
/// [`crate::LlmClient::stream_collect`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl ChatResponse {
    /// `choices[0].message`.
    pub fn message(&self) -> Option<&Message> {
        self.choices.first().map(|c| &c.message)
    }

    /// `choices[0].finish_reason`.
    pub fn finish_reason(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.finish_reason.as_deref())
    }
}

/// One choice of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: Message,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// An entry of `GET /models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    #[serde(default)]
    pub owned_by: Option<String>,
    /// Everything else the provider sends (RedPill: `context_length`, `is_tee`, `pricing`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `null` → `None`, string → itself, array of parts → concatenated `text` parts.
fn de_content<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Array(parts) => {
            Ok(Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<String>()))
        }
        other => Err(serde::de::Error::custom(format!(
            "message content must be a string, null or an array of parts, got {other}"
        ))),
    }
}

fn de_null_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ToolCall>, D::Error> {
    Ok(Option::<Vec<ToolCall>>::deserialize(d)?.unwrap_or_default())
}

/// Arguments as a JSON string (standard) or as a JSON value (some servers) → string.
fn de_arguments<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn request_serializes_like_openai() {
        let req = ChatRequest::new(
            "m",
            vec![
                Message::user("hi"),
                Message::assistant_tool_calls(vec![ToolCall::new("c1", "f", "{}")]),
                Message::tool("c1", "r"),
            ],
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({"model":"m","messages":[
                {"role":"user","content":"hi"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","content":"r","tool_call_id":"c1"}
            ]})
        );
    }

    #[test]
    fn tool_choice_round_trip() {
        assert_eq!(serde_json::to_value(ToolChoice::Auto).unwrap(), json!("auto"));
        let named = serde_json::to_value(ToolChoice::Function("f".into())).unwrap();
        assert_eq!(named, json!({"type":"function","function":{"name":"f"}}));
        assert_eq!(serde_json::from_value::<ToolChoice>(named).unwrap(), ToolChoice::Function("f".into()));
    }

    #[test]
    fn lenient_response_parsing() {
        let v = json!({"choices":[{"message":{"role":"assistant",
            "content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],
            "tool_calls":[{"id":"x","function":{"name":"f","arguments":{"k":1}}}]},
            "finish_reason":"tool_calls"}]});
        let r: ChatResponse = serde_json::from_value(v).unwrap();
        let m = r.message().unwrap();
        assert_eq!(m.text(), "ab");
        assert_eq!(m.tool_calls[0].function.arguments, r#"{"k":1}"#);
        assert_eq!(r.finish_reason(), Some("tool_calls"));
    }
}
