//! One turn of the agent loop.

use crate::approvals::{self, ChatGate, Proposed, Sender};
use crate::events::{TurnEvent, TurnUsage};
use crate::prompt::{self, AgentProfile, MAX_SOUL_BYTES};
use crate::tools::{Effect, Tool, ToolContext, ToolRegistry};
use crate::{DEFAULT_SESSION_TITLE, Runtime, RuntimeError, store_error};
use crewgate_core::{Agent, AgentId, Proposal, ProposalState};
use crewgate_llm::{
    ChatRequest, LlmClient, Message as LlmMessage, StreamAccumulator, StreamEvent, ToolCall, ToolChoice,
};
use crewgate_store::{Message, MessageRole, NewMessage, Session, StoredToolCall};
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// Characters of a tool result shown in [`TurnEvent::ToolResult`].
const PREVIEW_CHARS: usize = 200;

/// A message for an agent's session.
#[derive(Debug)]
pub struct TurnRequest {
    pub agent: AgentId,
    pub session: String,
    pub content: String,
    /// Id of the turn in its events; a fresh UUID when `None`.
    pub turn_id: Option<String>,
    /// Receives this turn's events (in addition to the session's subscribers).
    pub events: Option<mpsc::UnboundedSender<TurnEvent>>,
    /// The authenticated person who wrote `content`. Only then can the message decide on a
    /// proposal (and only if they are the agent's owner, or an admin when allowed); `None`
    /// (other agents, internal callers) never decides anything.
    pub sender: Option<Sender>,
    /// Set for a turn caused by another agent or a background run: the chain it continues. Such
    /// a turn never has a sender (nothing in it can decide a proposal).
    pub(crate) trace: Option<crate::agents::Trace>,
    /// The agent and session as the caller just read them (to scope the request), so the turn
    /// does not read them again; ignored unless they are exactly `agent` and `session`.
    loaded: Option<(Agent, Session)>,
}

impl TurnRequest {
    pub fn new(agent: AgentId, session: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            agent,
            session: session.into(),
            content: content.into(),
            turn_id: None,
            events: None,
            sender: None,
            trace: None,
            loaded: None,
        }
    }

    /// Hands over the agent and session the caller already read (saves two store reads).
    #[must_use]
    pub fn with_loaded(mut self, agent: Agent, session: Session) -> Self {
        self.loaded = Some((agent, session));
        self
    }

    /// Marks the message as written by `sender` (see [`TurnRequest::sender`]).
    #[must_use]
    pub fn from_sender(mut self, sender: Sender) -> Self {
        self.sender = Some(sender);
        self
    }
}

/// A completed turn.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub turn: String,
    /// The person's message, as stored.
    pub user_message: Message,
    /// The final assistant message, as stored.
    pub reply: Message,
    /// Everything this turn stored, in order (person's message, tool rounds, reply).
    pub stored: Vec<Message>,
    pub usage: TurnUsage,
    /// Proposals this turn made (pending ones wait for the person's decision).
    pub proposals: Vec<Proposal>,
}

/// The first request a turn would send, for measuring prompt size.
#[derive(Debug, Clone)]
pub struct PromptPreview {
    pub request: ChatRequest,
    pub estimated_tokens: usize,
    pub system_tokens: usize,
    pub tools_tokens: usize,
}

/// Sends a turn's events to its caller and to the session's subscribers.
struct Emitter<'a> {
    runtime: &'a Runtime,
    sink: Option<mpsc::UnboundedSender<TurnEvent>>,
    session: String,
    turn: String,
    ended: std::sync::atomic::AtomicBool,
}

impl Drop for Emitter<'_> {
    /// A turn dropped half-way (its caller went away) still ends for the session's subscribers.
    fn drop(&mut self) {
        if !self.ended.load(std::sync::atomic::Ordering::Relaxed) {
            let (session, turn) = self.ids();
            self.emit(TurnEvent::Error {
                session,
                turn,
                code: "cancelled".into(),
                message: "the turn was cancelled because its client went away; send the message again".into(),
            });
        }
    }
}

impl Emitter<'_> {
    fn emit(&self, event: TurnEvent) {
        if event.is_terminal() {
            self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.runtime.bus.publish(&event);
        if let Some(sink) = &self.sink {
            // A caller that stopped listening does not stop the turn: its result is still stored.
            let _closed = sink.send(event);
        }
    }

    fn ids(&self) -> (String, String) {
        (self.session.clone(), self.turn.clone())
    }
}

/// An edit the person asked for: the model revises `target`.
struct Revision {
    target: Proposal,
    instructions: String,
    by: String,
    via: String,
}

/// What the approval gate learned during one turn.
#[derive(Default)]
struct TurnGate {
    /// Consumed by the first write proposal of the turn.
    revising: Option<Revision>,
    /// The edit target that was not replaced (the model made no new proposal).
    unrevised: Option<Proposal>,
    /// Pending proposals of this turn with the verb of their reply hint.
    pending: Vec<(Proposal, String)>,
    /// Every proposal of this turn, as last seen.
    all: Vec<Proposal>,
}

/// What a turn needs besides the runtime.
struct TurnContext<'a> {
    llm: &'a LlmClient,
    model: String,
    tool_ctx: ToolContext,
    /// The tools this agent is offered in this turn.
    tools: ToolRegistry,
    emitter: Emitter<'a>,
    gate: Mutex<TurnGate>,
}

impl TurnContext<'_> {
    fn gate(&self) -> std::sync::MutexGuard<'_, TurnGate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Runtime {
    /// Runs one turn: stores the message, lets the model answer (calling read tools as needed)
    /// and stores the answer. Waits while another turn of the session runs.
    ///
    /// `req.events` receives exactly one terminal event ([`TurnEvent::Final`] or
    /// [`TurnEvent::Error`]), also when the turn is refused before it starts (bad input, unknown
    /// session, no LLM configured). Session subscribers see turns from [`TurnEvent::TurnStarted`]
    /// on. A failure after the start stores an `error` message; the session stays usable.
    pub async fn run_turn(&self, mut req: TurnRequest) -> Result<TurnOutcome, RuntimeError> {
        let turn = req.turn_id.take().unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        let sink = req.events.clone();
        let session = req.session.clone();
        let mut started = false;
        let result = self.turn(req, &turn, &mut started).await;
        if let (Err(e), false, Some(sink)) = (&result, started, sink) {
            let _closed = sink.send(TurnEvent::Error {
                session,
                turn,
                code: e.code().to_owned(),
                message: e.to_string(),
            });
        }
        result
    }

    async fn turn(
        &self,
        req: TurnRequest,
        turn: &str,
        started: &mut bool,
    ) -> Result<TurnOutcome, RuntimeError> {
        let content = req.content.trim();
        if content.is_empty() {
            return Err(RuntimeError::InvalidInput("the message is empty".into()));
        }
        if content.chars().count() > self.settings.max_message_chars {
            return Err(RuntimeError::InvalidInput(format!(
                "the message is longer than {} characters; shorten it or send it in parts",
                self.settings.max_message_chars
            )));
        }
        let (agent, session) = match req.loaded {
            Some((a, s)) if a.id == req.agent && s.id == req.session && s.agent_id == a.id => (a, s),
            _ => {
                let agent = self.store.get_agent(&req.agent).await?.ok_or(RuntimeError::AgentNotFound)?;
                let session = self
                    .store
                    .get_session(&agent.id, &req.session)
                    .await?
                    .ok_or(RuntimeError::SessionNotFound)?;
                (agent, session)
            }
        };
        let llm = self.llm()?;
        let profile = AgentProfile::of(&agent);
        let model = profile.model.clone().unwrap_or_else(|| self.settings.default_model.clone());

        let lock = self.locks.get(&session.id);
        let _serialised = lock.lock().await;

        let emitter = Emitter {
            runtime: self,
            sink: req.events,
            session: session.id.clone(),
            turn: turn.to_owned(),
            ended: std::sync::atomic::AtomicBool::new(false),
        };
        *started = true;
        let (s, t) = emitter.ids();
        emitter.emit(TurnEvent::TurnStarted { session: s, turn: t });
        // A turn another agent (or a background run) caused continues its chain and has no
        // sender; a person's turn starts a chain named after itself.
        let (sender, trace) = match req.trace {
            Some(trace) => (None, trace),
            None => (req.sender, crate::agents::Trace::root(turn)),
        };
        let tool_ctx = ToolContext {
            agent: agent.clone(),
            session_id: session.id.clone(),
            store: self.store.clone(),
            idempotency_key: None,
            trace,
        };
        let tools = self.tools.available_to(&agent, self.store.as_ref()).await?;
        let ctx = TurnContext { llm, model, tool_ctx, tools, emitter, gate: Mutex::new(TurnGate::default()) };
        let mut usage = TurnUsage::default();
        let mut stored = Vec::new();
        let limit = self.settings.turn_timeout;
        let work = async {
            let user_message = self
                .store
                .append_messages(&agent.id, &session.id, &[NewMessage::text(MessageRole::User, content)])
                .await
                .map_err(store_error)?
                .pop()
                .ok_or(RuntimeError::SessionNotFound)?;
            stored.push(user_message.clone());
            let (s, t) = ctx.emitter.ids();
            ctx.emitter.emit(TurnEvent::UserMessage { session: s, turn: t, message: user_message.clone() });
            self.auto_title(&agent.id, &session, content).await;
            // The gateway reads the person's own message for a decision before the model does.
            let reply = match self.gate.chat_gate(&agent, &session.id, sender.as_ref(), content).await? {
                ChatGate::Pass => self.steps(&ctx, &agent, &profile, &mut usage, &mut stored).await?,
                ChatGate::Answer(text) => self.gateway_reply(&ctx, &agent, text, &mut stored).await?,
                ChatGate::Revise { target, instructions, by, via } => {
                    ctx.gate().revising = Some(Revision { target: *target, instructions, by, via });
                    self.steps(&ctx, &agent, &profile, &mut usage, &mut stored).await?
                }
            };
            Ok::<_, RuntimeError>((user_message, reply))
        };
        let result = match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_elapsed) => Err(RuntimeError::TurnTimeout(limit)),
        };
        match result {
            Ok((user_message, reply)) => {
                let (s, t) = ctx.emitter.ids();
                ctx.emitter.emit(TurnEvent::Final { session: s, turn: t, message: reply.clone(), usage });
                let proposals = std::mem::take(&mut ctx.gate().all);
                Ok(TurnOutcome { turn: turn.to_owned(), user_message, reply, stored, usage, proposals })
            }
            Err(e) => {
                tracing::warn!(agent = %agent.id, session = %session.id, error = %e, "turn failed");
                if !matches!(e, RuntimeError::SessionNotFound) {
                    let note = NewMessage::text(MessageRole::Error, e.to_string());
                    if let Err(store_err) = self.store.append_messages(&agent.id, &session.id, &[note]).await
                    {
                        tracing::warn!(error = %store_err, "could not record the failed turn");
                    }
                }
                let (s, t) = ctx.emitter.ids();
                ctx.emitter.emit(TurnEvent::Error {
                    session: s,
                    turn: t,
                    code: e.code().to_owned(),
                    message: e.to_string(),
                });
                Err(e)
            }
        }
    }

    /// The request the first step of a turn would send for `text` in a fresh session of `agent`.
    pub async fn preview_prompt(&self, agent: &AgentId, text: &str) -> Result<PromptPreview, RuntimeError> {
        let agent = self.store.get_agent(agent).await?.ok_or(RuntimeError::AgentNotFound)?;
        let profile = AgentProfile::of(&agent);
        let system = self.system_message(&agent, &profile).await?;
        let system_tokens = prompt::estimate_tokens(&system);
        let model = profile.model.clone().unwrap_or_else(|| self.settings.default_model.clone());
        let tools = self.tools.available_to(&agent, self.store.as_ref()).await?;
        let request = ChatRequest::new(model, vec![LlmMessage::system(system), LlmMessage::user(text)])
            .with_tools(tools.definitions());
        let tools_tokens = if request.tools.is_empty() {
            0
        } else {
            serde_json::to_string(&request.tools).map_or(0, |s| prompt::estimate_tokens(&s))
        };
        let estimated_tokens = prompt::estimate_request_tokens(&request);
        Ok(PromptPreview { request, estimated_tokens, system_tokens, tools_tokens })
    }

    async fn steps(
        &self,
        ctx: &TurnContext<'_>,
        agent: &Agent,
        profile: &AgentProfile,
        usage: &mut TurnUsage,
        stored: &mut Vec<Message>,
    ) -> Result<Message, RuntimeError> {
        let session = &ctx.tool_ctx.session_id;
        let mut messages = vec![LlmMessage::system(self.system_message(agent, profile).await?)];
        let limit = self.settings.history_max_messages.max(1);
        let recent = self.store.recent_messages(&agent.id, session, limit).await?;
        let older_exist = i64::try_from(recent.len()).unwrap_or(i64::MAX) >= limit;
        let (history, stats) = prompt::history(&recent, self.settings.history_budget_tokens, older_exist);
        tracing::debug!(session = %session, sent = stats.sent_messages, dropped = stats.dropped_messages, "history");
        messages.extend(history);
        if let Some(note) = ctx.gate().revising.as_ref().map(revision_note) {
            messages.push(LlmMessage::system(note));
        }

        let tools = ctx.tools.definitions();
        let max_steps = self.settings.max_steps.max(1);
        for step in 1..=max_steps {
            let last = step == max_steps;
            let mut req = ChatRequest::new(&ctx.model, messages.clone()).with_user(session.as_str());
            if !tools.is_empty() {
                req.tools = tools.clone();
                // On the last step the model must answer in words.
                req.tool_choice = last.then_some(ToolChoice::None);
            }
            self.agents.charge_step(&ctx.tool_ctx.trace)?;
            let answer = self.call_model(ctx, &req).await?;
            usage.llm_calls += 1;
            if let Some(u) = answer.usage {
                usage.prompt_tokens += u64::from(u.prompt_tokens);
                usage.completion_tokens += u64::from(u.completion_tokens);
            }
            if answer.tool_calls.is_empty() {
                let text = self.with_proposals(ctx, answer.text);
                let reply = self
                    .store
                    .append_messages(&agent.id, session, &[NewMessage::text(MessageRole::Assistant, text)])
                    .await
                    .map_err(store_error)?
                    .pop()
                    .ok_or(RuntimeError::SessionNotFound)?;
                stored.push(reply.clone());
                return Ok(reply);
            }
            if last {
                break;
            }
            let calls = unique_call_ids(answer.tool_calls, step);
            let mut round = Vec::with_capacity(calls.len() + 1);
            round.push(NewMessage {
                role: MessageRole::Assistant,
                body: answer.text.clone(),
                tool_calls: calls
                    .iter()
                    .map(|c| StoredToolCall {
                        id: c.id.clone(),
                        name: c.function.name.clone(),
                        arguments: c.function.arguments.clone(),
                    })
                    .collect(),
                tool_call_id: None,
                tool_name: None,
            });
            let mut results = Vec::with_capacity(calls.len());
            for call in &calls {
                let (s, t) = ctx.emitter.ids();
                ctx.emitter.emit(TurnEvent::ToolCall {
                    session: s,
                    turn: t,
                    call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    arguments: call.function.arguments.clone(),
                });
                let (ok, content) = self.run_tool(ctx, call).await;
                let (s, t) = ctx.emitter.ids();
                ctx.emitter.emit(TurnEvent::ToolResult {
                    session: s,
                    turn: t,
                    call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    ok,
                    preview: prompt::excerpt(&content, PREVIEW_CHARS),
                });
                round.push(NewMessage {
                    role: MessageRole::Tool,
                    body: content.clone(),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                    tool_name: Some(call.function.name.clone()),
                });
                results.push(LlmMessage::tool(&call.id, content));
            }
            // The call and its results are stored together, so history never holds a call
            // without its results (providers reject that).
            let written =
                self.store.append_messages(&agent.id, session, &round).await.map_err(store_error)?;
            stored.extend(written);
            let mut assistant = LlmMessage::assistant_tool_calls(calls);
            if !answer.text.is_empty() {
                assistant.content = Some(answer.text);
            }
            messages.push(assistant);
            messages.extend(results);
        }
        Err(RuntimeError::StepLimit(max_steps))
    }

    /// One streamed model call; text deltas are forwarded as they arrive.
    async fn call_model(
        &self,
        ctx: &TurnContext<'_>,
        req: &ChatRequest,
    ) -> Result<ModelAnswer, RuntimeError> {
        let mut stream = ctx.llm.stream(req).await?;
        let mut acc = StreamAccumulator::new();
        while let Some(event) = stream.next().await {
            let event = event?;
            if let StreamEvent::TextDelta(text) = &event {
                let (s, t) = ctx.emitter.ids();
                ctx.emitter.emit(TurnEvent::Delta { session: s, turn: t, text: text.clone() });
            }
            acc.push(&event);
        }
        let message = acc.message();
        Ok(ModelAnswer {
            text: message.text().to_owned(),
            tool_calls: message.tool_calls,
            usage: acc.usage(),
        })
    }

    /// Runs one tool call; returns whether it succeeded and what goes back to the model. Every
    /// failure becomes a message the model can act on; nothing here fails the turn. Every call
    /// is audited.
    async fn run_tool(&self, ctx: &TurnContext<'_>, call: &ToolCall) -> (bool, String) {
        let name = call.function.name.as_str();
        let (effect, (ok, text)) = match ctx.tools.get(name) {
            None => (
                "unknown",
                (
                    false,
                    format!(
                        "error: there is no tool {name:?}; available tools: {}",
                        ctx.tools.names().join(", ")
                    ),
                ),
            ),
            Some(tool) => {
                let write = tool.manifest().effect == Effect::Write;
                (
                    if write { "write" } else { "read" },
                    self.run_known_tool(ctx, tool.clone(), call, write).await,
                )
            }
        };
        self.gate.audit_tool_call(&ctx.tool_ctx, name, &call.id, effect, ok).await;
        (ok, text)
    }

    async fn run_known_tool(
        &self,
        ctx: &TurnContext<'_>,
        tool: Arc<dyn Tool>,
        call: &ToolCall,
        write: bool,
    ) -> (bool, String) {
        let name = call.function.name.as_str();
        let raw = call.function.arguments.trim();
        let args = if raw.is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            match serde_json::from_str::<Value>(raw) {
                Ok(v) => v,
                Err(e) => {
                    return (
                        false,
                        format!("error: the arguments of {name} are not valid JSON ({e}); nothing was run"),
                    );
                }
            }
        };
        if let Err(why) = tool.validate(&args) {
            return (false, format!("error: {why}; nothing was run"));
        }
        if let Err(why) = tool.admit(&ctx.tool_ctx, &args).await {
            return (false, format!("error: {why}"));
        }
        if write {
            // A write never runs from the model's call: it becomes a proposal.
            return self.propose_write(ctx, &tool, args).await;
        }
        let limit = self.settings.tool_timeout;
        let (ok, text) = match tokio::time::timeout(limit, tool.call(&ctx.tool_ctx, args)).await {
            Ok(Ok(Value::String(s))) => (true, s),
            Ok(Ok(v)) => (true, v.to_string()),
            Ok(Err(e)) => (false, format!("error: {e}")),
            Err(_elapsed) => (false, format!("error: {name} did not answer within {} s", limit.as_secs())),
        };
        (ok, self.clip_tool_result(text))
    }

    /// Turns the model's write call into a proposal (or runs it under a grant) and says so.
    async fn propose_write(
        &self,
        ctx: &TurnContext<'_>,
        tool: &Arc<dyn Tool>,
        args: Value,
    ) -> (bool, String) {
        let verb = tool.describe_write(&args).verb;
        let trace = ctx.tool_ctx.trace.encode();
        let proposed = match self.gate.propose(&ctx.tool_ctx, tool, args, &trace).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(agent = %ctx.tool_ctx.agent.id, error = %e, "a proposal could not be stored");
                return (false, format!("error: the proposal could not be stored ({e}); nothing was done"));
            }
        };
        let p = match &proposed {
            Proposed::Pending(p) | Proposed::Auto { proposal: p, .. } => p.clone(),
        };
        let (s, t) = ctx.emitter.ids();
        ctx.emitter.emit(TurnEvent::Proposal { session: s, turn: t, proposal: Box::new(p.clone()) });
        let revision = ctx.gate().revising.take();
        if let Some(r) = revision {
            match self.gate.supersede(&r.target, &p, &r.by, &r.via, &r.instructions).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(proposal = %r.target.id, "the edited proposal was decided meanwhile")
                }
                Err(e) => {
                    tracing::error!(proposal = %r.target.id, error = %e, "could not supersede the edited proposal")
                }
            }
        }
        ctx.gate().all.push(p.clone());
        match proposed {
            Proposed::Pending(p) => {
                let n = p.number;
                ctx.gate().pending.push((p, verb));
                (
                    true,
                    format!(
                        "Proposal #{n} is waiting for the person's approval; nothing has been done yet. The gateway shows them exactly what will happen, and only they can answer (approved, edit: …, or no). Tell them in one short sentence what you proposed; never say it was done."
                    ),
                )
            }
            Proposed::Auto { grant_id, proposal } => {
                let ok = proposal.state == ProposalState::Done;
                let result = proposal.result.as_ref().map_or_else(String::new, Value::to_string);
                let text = if ok {
                    format!(
                        "Done without asking, under the person's autonomy grant {grant_id}. Result: {result}"
                    )
                } else {
                    format!(
                        "error: it ran without asking under autonomy grant {grant_id} but did not succeed: {}",
                        approvals::outcome_text(&proposal)
                    )
                };
                (ok, self.clip_tool_result(text))
            }
        }
    }

    /// Appends what the person must see under the model's reply: each new pending proposal as
    /// the gateway rendered it from the arguments (the model's prose may misdescribe it), and a
    /// note when an edit produced no new proposal.
    fn with_proposals(&self, ctx: &TurnContext<'_>, text: String) -> String {
        let mut extra = String::new();
        {
            let mut g = ctx.gate();
            let several = g.pending.len() > 1;
            for (p, verb) in &g.pending {
                extra.push_str("\n\n");
                extra.push_str(&approvals::pending_block(p, verb, several));
            }
            g.pending.clear();
            if let Some(r) = g.revising.take() {
                g.unrevised = Some(r.target);
            }
            if let Some(t) = &g.unrevised {
                extra.push_str(&format!(
                    "\n\n_No revised proposal was made; #{n} is unchanged and still waiting (approved #{n}, edit #{n}: …, or no #{n})._",
                    n = t.number
                ));
            }
        }
        if extra.is_empty() {
            return text;
        }
        let extra = if text.trim().is_empty() { extra.trim_start().to_owned() } else { extra };
        let (s, t) = ctx.emitter.ids();
        ctx.emitter.emit(TurnEvent::Delta { session: s, turn: t, text: extra.clone() });
        text + &extra
    }

    /// The gateway's own answer to a decision message (the model is not called).
    async fn gateway_reply(
        &self,
        ctx: &TurnContext<'_>,
        agent: &Agent,
        text: String,
        stored: &mut Vec<Message>,
    ) -> Result<Message, RuntimeError> {
        let (s, t) = ctx.emitter.ids();
        ctx.emitter.emit(TurnEvent::Delta { session: s, turn: t, text: text.clone() });
        let reply = self
            .store
            .append_messages(
                &agent.id,
                &ctx.tool_ctx.session_id,
                &[NewMessage::text(MessageRole::Assistant, text)],
            )
            .await
            .map_err(store_error)?
            .pop()
            .ok_or(RuntimeError::SessionNotFound)?;
        stored.push(reply.clone());
        Ok(reply)
    }

    fn clip_tool_result(&self, text: String) -> String {
        let max = self.settings.max_tool_result_chars;
        if text.chars().count() <= max {
            return text;
        }
        let mut out: String = text.chars().take(max).collect();
        out.push_str(&format!(" […result cut at {max} characters]"));
        out
    }

    /// Base instructions, persona (identity settings, workspace SOUL.md) and context.
    async fn system_message(&self, agent: &Agent, profile: &AgentProfile) -> Result<String, RuntimeError> {
        let owner = match &agent.owner {
            Some(id) => self.store.get_user(id).await?,
            None => None,
        };
        let soul = match &profile.workspace {
            Some(dir) => read_soul(dir).await,
            None => None,
        };
        let today = crate::time::date(crewgate_core::now_millis());
        Ok(prompt::system_prompt(agent, profile, owner.as_ref(), soul.as_deref(), &today))
    }

    /// Names an unnamed session after its first message.
    async fn auto_title(&self, agent: &AgentId, session: &Session, content: &str) {
        if session.title != DEFAULT_SESSION_TITLE {
            return;
        }
        let first_line = content.lines().find(|l| !l.trim().is_empty()).unwrap_or(content);
        let title = prompt::excerpt(first_line, 60);
        if let Err(e) = self.store.rename_session(agent, &session.id, &title).await {
            tracing::debug!(error = %e, "could not title the session");
        }
    }
}

struct ModelAnswer {
    text: String,
    tool_calls: Vec<ToolCall>,
    usage: Option<crewgate_llm::Usage>,
}

/// What the model is told when the person asked to change a proposal.
fn revision_note(r: &Revision) -> String {
    let args = prompt::excerpt(&r.target.args.to_string(), 4000);
    format!(
        "The person asked to change proposal #{n} ({tool}) before approving it. Their instructions: {instr:?}. Its arguments were: {args}. Call {tool} again now with revised arguments; the gateway replaces #{n} with your new proposal and asks the person again. Nothing has been done yet.",
        n = r.target.number,
        tool = r.target.tool,
        instr = r.instructions,
    )
}

/// Gives every call a non-empty id unique within the turn (some servers send none or repeat
/// them), so each result can be matched to its call.
fn unique_call_ids(calls: Vec<ToolCall>, step: u32) -> Vec<ToolCall> {
    let mut seen = HashSet::new();
    calls
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            if c.id.trim().is_empty() || !seen.insert(c.id.clone()) {
                c.id = format!("call_s{step}_{n}");
                seen.insert(c.id.clone());
            }
            c
        })
        .collect()
}

/// `<workspace>/SOUL.md`, if present and readable (bounded; a missing file is normal).
async fn read_soul(workspace: &str) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let path = std::path::Path::new(workspace).join("SOUL.md");
    let file = tokio::fs::File::open(&path).await.ok()?;
    let mut buf = Vec::new();
    if let Err(e) = file.take(MAX_SOUL_BYTES).read_to_end(&mut buf).await {
        tracing::warn!(path = %path.display(), error = %e, "cannot read SOUL.md");
        return None;
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}
