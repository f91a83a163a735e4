//! Inter-agent communication: agents message each other (`sessions_send`, `broadcast`) and run
//! background tasks (`sessions_spawn`, `sessions_list`, `session_status`, `session_cancel`).
//!
//! - Who may reach whom: the caller's `settings.subagents.allowAgents` (agent ids or `"*"`;
//!   absent or empty: workers `["orchestrator"]`, the orchestrator `["*"]`). Refusals (not
//!   allowed, unknown agent, hop limit, cycle) happen before any proposal and run nothing.
//! - Messages are writes: they go through the approval gate (the caller's owner decides; for the
//!   ownerless orchestrator, an admin). A delivery lands in the target's own inter-agent session
//!   for that caller ("From <caller>"), marked as coming from the agent, and runs the target's
//!   turn *without a sender*, so nothing in it can ever decide one of the target's proposals.
//! - Loop protection: every turn carries a [`Trace`] (id, hop, depth). A delivery adds a hop, a
//!   spawn adds a level of depth; a chain past `max_hops`, a spawn past `max_spawn_depth`, a
//!   waiting message into a conversation still busy with the same chain (a cycle that would wait
//!   for itself), and any model call past `max_trace_steps` of one trace are refused.
//! - Background runs (spawns and deliveries) have handles, a per-agent concurrency limit (extra
//!   ones queue), can be cancelled (the task is aborted), and post their result back.
//!
//! The run registry, the busy conversations and the step budgets live in this process.

mod tools;

pub use tools::TOOL_NAMES;
pub(crate) use tools::register as register_tools;

use crate::events::TurnEvent;
use crate::{Runtime, RuntimeError, TurnRequest, prompt};
use crewgate_core::{Agent, AgentId, AgentKind, Millis, UserStatus, now_millis};
use crewgate_store::{NewAudit, Session, Store};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Id of the orchestrator agent, the default target of workers.
pub const ORCHESTRATOR_ID: &str = "orchestrator";

const AGENT_MESSAGE: &str = include_str!("../../../../prompts/agent_message.md");
const BACKGROUND_TASK: &str = include_str!("../../../../prompts/background_task.md");

/// Finished runs kept per agent for `sessions_list` / `session_status`.
const KEEP_FINISHED_RUNS: usize = 200;
/// Characters of a run's task and result kept in its status.
const RUN_TEXT_CHARS: usize = 2_000;
/// Step budgets of traces idle this long are forgotten.
const BUDGET_IDLE: Duration = Duration::from_secs(3600);
/// Least time between two sweeps of idle step budgets.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long a delivery waits for the target to store the message before reporting "queued".
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Limits of inter-agent work (`RuntimeSettings::inter_agent`).
#[derive(Debug, Clone)]
pub struct InterAgentSettings {
    /// Most agent-to-agent deliveries in one chain (the fifth message of a ping-pong is refused).
    pub max_hops: u32,
    /// Most nested background runs (a spawned run spawning again is depth 2).
    pub max_spawn_depth: u32,
    /// Background runs of one agent that run at once; more wait in a queue.
    pub max_concurrent_spawns: usize,
    /// Background runs of one agent queued or running at once; more are refused.
    pub max_queued_spawns: usize,
    /// Most model calls of all turns of one trace together.
    pub max_trace_steps: u32,
    /// How long `sessions_send` with `wait` waits for the reply (then it is posted later).
    pub reply_wait: Duration,
    /// Deliveries of one broadcast started at once.
    pub fan_out: usize,
}

impl Default for InterAgentSettings {
    fn default() -> Self {
        Self {
            max_hops: 4,
            max_spawn_depth: 2,
            max_concurrent_spawns: 8,
            max_queued_spawns: 256,
            max_trace_steps: 256,
            reply_wait: Duration::from_secs(25),
            fan_out: 16,
        }
    }
}

/// Where a turn sits in a chain of agent work. A person's turn starts a trace (its id is the
/// turn id); every delivery and spawn it causes carries the id on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub id: String,
    /// Agent-to-agent deliveries between the start of the chain and this turn.
    pub hop: u32,
    /// Background-run nesting between the start of the chain and this turn.
    pub depth: u32,
}

impl Trace {
    /// The start of a chain.
    pub fn root(id: impl Into<String>) -> Self {
        Self { id: id.into(), hop: 0, depth: 0 }
    }

    /// The form stored as a proposal's `trace_id`: the id alone at the start of a chain, else
    /// `<id>/<hop>/<depth>`, so a write approved later continues the chain where it was.
    pub fn encode(&self) -> String {
        if self.hop == 0 && self.depth == 0 {
            self.id.clone()
        } else {
            format!("{}/{}/{}", self.id, self.hop, self.depth)
        }
    }

    /// Reads [`Trace::encode`]; anything else is the id of a chain's start.
    pub fn decode(s: &str) -> Self {
        let mut parts = s.rsplitn(3, '/');
        if let (Some(depth), Some(hop), Some(id)) = (parts.next(), parts.next(), parts.next())
            && let (Ok(depth), Ok(hop)) = (depth.parse::<u32>(), hop.parse::<u32>())
            && !id.is_empty()
        {
            return Self { id: id.to_owned(), hop, depth };
        }
        Self::root(s)
    }
}

/// The agents one agent may message or spawn on (`settings.subagents.allowAgents`). It may
/// always address itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowAgents {
    Any,
    Only(Vec<AgentId>),
}

impl AllowAgents {
    /// An agent's list. Absent or empty (the config file writes `[]` when the key is absent)
    /// means the default: workers `["orchestrator"]`, the orchestrator `["*"]`. To allow a
    /// worker no one, list only its own id.
    pub fn of(agent: &Agent) -> Self {
        let entries: Vec<&str> = match agent.settings.pointer("/subagents/allowAgents") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let entries: Vec<&str> = entries.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect();
        if entries.is_empty() {
            return match agent.kind {
                AgentKind::Orchestrator => AllowAgents::Any,
                AgentKind::Worker => AllowAgents::Only(AgentId::parse(ORCHESTRATOR_ID).into_iter().collect()),
            };
        }
        if entries.contains(&"*") {
            return AllowAgents::Any;
        }
        AllowAgents::Only(entries.into_iter().filter_map(|e| AgentId::parse(e).ok()).collect())
    }

    pub fn allows(&self, me: &AgentId, other: &AgentId) -> bool {
        other == me
            || match self {
                AllowAgents::Any => true,
                AllowAgents::Only(list) => list.contains(other),
            }
    }

    /// Whether anyone but `me` is allowed.
    pub fn reaches_others(&self, me: &AgentId) -> bool {
        match self {
            AllowAgents::Any => true,
            AllowAgents::Only(list) => list.iter().any(|a| a != me),
        }
    }

    fn describe(&self, me: &AgentId) -> String {
        match self {
            AllowAgents::Any => "any agent".into(),
            AllowAgents::Only(list) => {
                let others: Vec<&str> = list.iter().filter(|a| *a != me).map(AgentId::as_str).collect();
                if others.is_empty() { "no other agent".into() } else { others.join(", ") }
            }
        }
    }
}

/// What a background run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// `sessions_spawn`: a task in a new session of the same agent.
    Spawn,
    /// A message delivered to another agent (`sessions_send`, `broadcast`): its turn.
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Done | RunStatus::Failed | RunStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// A background run as `sessions_list` / `session_status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub handle: String,
    pub kind: RunKind,
    /// The agent that started it (only it sees and cancels it).
    pub started_by: AgentId,
    /// Where it was started; results are posted back there.
    #[serde(skip)]
    pub origin_session: String,
    /// The agent it runs on and the session it runs in.
    pub agent: AgentId,
    pub session: String,
    /// Start of the task or message.
    pub task: String,
    pub trace: String,
    pub status: RunStatus,
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// The reply (done) or why it failed, cut to 2000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InterAgentError {
    #[error("inter-agent messaging is not enabled on this gateway")]
    NotEnabled,
    /// Also for a run of another agent.
    #[error("no background run {0}; sessions_list shows yours")]
    RunNotFound(String),
    #[error("background run {handle} already ended ({status})")]
    RunEnded { handle: String, status: &'static str },
}

struct Run {
    info: RunInfo,
    abort: Option<tokio::task::AbortHandle>,
}

/// A conversation of the target agent that a delivery of one chain keeps busy.
type Edge = (String, AgentId, AgentId);

struct Budget {
    steps: u32,
    touched: Instant,
}

#[derive(Default)]
struct HubState {
    runs: HashMap<String, Run>,
    busy: HashMap<Edge, usize>,
    budgets: HashMap<String, Budget>,
    last_sweep: Option<Instant>,
    slots: HashMap<AgentId, Arc<Semaphore>>,
}

/// The runtime's inter-agent state. Tools hold it; it reaches the runtime through a weak
/// handle set by [`Runtime::enable_inter_agent`].
pub(crate) struct Hub {
    settings: InterAgentSettings,
    runtime: OnceLock<Weak<Runtime>>,
    state: Mutex<HubState>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Keeps a conversation marked busy for one chain while the delivery's turn runs.
struct BusyGuard {
    hub: Arc<Hub>,
    edge: Edge,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut s = self.hub.lock();
        if let Some(n) = s.busy.get_mut(&self.edge) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.busy.remove(&self.edge);
            }
        }
    }
}

/// How a delivery treats the target's reply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReplyMode {
    /// Wait this long for it; later replies are posted into the caller's session.
    Wait(Duration),
    /// Do not wait; post it into the caller's session when it comes.
    PostBack,
    /// Do not wait; leave it in the target's session (broadcast).
    Keep,
}

/// What a delivery achieved.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The target answered (or its turn failed after it got the message).
    Replied { handle: String, reply: Result<String, String> },
    /// Stored in the target's session; its turn goes on in the background.
    Delivered { handle: String },
    /// The target is busy in that conversation; the message is stored when it is free.
    Queued { handle: String },
}

impl Hub {
    pub(crate) fn new(settings: InterAgentSettings) -> Self {
        Self { settings, runtime: OnceLock::new(), state: Mutex::new(HubState::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every update is a few map operations that leave the maps consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn bind(&self, runtime: Weak<Runtime>) {
        let _already = self.runtime.set(runtime);
    }

    pub(crate) fn runtime(&self) -> Result<Arc<Runtime>, InterAgentError> {
        self.runtime.get().and_then(Weak::upgrade).ok_or(InterAgentError::NotEnabled)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.runtime().is_ok()
    }

    pub(crate) fn settings(&self) -> &InterAgentSettings {
        &self.settings
    }

    /// Counts one model call of `trace`; refuses it past `max_trace_steps`.
    pub(crate) fn charge_step(&self, trace: &Trace) -> Result<(), RuntimeError> {
        let max = self.settings.max_trace_steps.max(1);
        let mut s = self.lock();
        let now = Instant::now();
        // Forget idle traces, at most once a minute (every person's turn starts one).
        if s.budgets.len() > 1024 && s.last_sweep.is_none_or(|t| now.duration_since(t) > SWEEP_EVERY) {
            s.budgets.retain(|_, b| now.duration_since(b.touched) < BUDGET_IDLE);
            s.last_sweep = Some(now);
        }
        let b = s.budgets.entry(trace.id.clone()).or_insert(Budget { steps: 0, touched: now });
        b.touched = now;
        if b.steps >= max {
            return Err(RuntimeError::TraceStepLimit(max));
        }
        b.steps += 1;
        Ok(())
    }

    fn is_busy(&self, edge: &Edge) -> bool {
        self.lock().busy.contains_key(edge)
    }

    fn busy_guard(self: &Arc<Self>, edge: Edge) -> BusyGuard {
        *self.lock().busy.entry(edge.clone()).or_insert(0) += 1;
        BusyGuard { hub: self.clone(), edge }
    }

    fn slot(&self, agent: &AgentId) -> Arc<Semaphore> {
        let permits = self.settings.max_concurrent_spawns.max(1);
        self.lock().slots.entry(agent.clone()).or_insert_with(|| Arc::new(Semaphore::new(permits))).clone()
    }

    fn live_spawns(&self, agent: &AgentId) -> usize {
        self.lock()
            .runs
            .values()
            .filter(|r| {
                r.info.started_by == *agent && r.info.kind == RunKind::Spawn && !r.info.status.is_final()
            })
            .count()
    }

    fn insert_run(&self, info: RunInfo) {
        let mut s = self.lock();
        let agent = info.started_by.clone();
        s.runs.insert(info.handle.clone(), Run { info, abort: None });
        let mut finished: Vec<(Millis, String)> = s
            .runs
            .values()
            .filter(|r| r.info.started_by == agent && r.info.status.is_final())
            .map(|r| (r.info.finished_at.unwrap_or(0), r.info.handle.clone()))
            .collect();
        if finished.len() > KEEP_FINISHED_RUNS {
            finished.sort();
            for (_, h) in finished.iter().take(finished.len() - KEEP_FINISHED_RUNS) {
                s.runs.remove(h);
            }
        }
    }

    fn set_abort(&self, handle: &str, abort: tokio::task::AbortHandle) {
        let mut s = self.lock();
        match s.runs.get_mut(handle) {
            Some(r) if r.info.status == RunStatus::Cancelled => abort.abort(),
            Some(r) if !r.info.status.is_final() => r.abort = Some(abort),
            _ => {}
        }
    }

    fn mark_running(&self, handle: &str) {
        if let Some(r) = self.lock().runs.get_mut(handle)
            && r.info.status == RunStatus::Queued
        {
            r.info.status = RunStatus::Running;
        }
    }

    /// Records the end of a run; `false` when it was cancelled meanwhile (then nothing more
    /// may be reported).
    fn finish(&self, handle: &str, result: &Result<String, String>) -> bool {
        let mut s = self.lock();
        let Some(r) = s.runs.get_mut(handle) else { return false };
        if r.info.status.is_final() {
            return false;
        }
        let (status, text) = match result {
            Ok(t) => (RunStatus::Done, t),
            Err(e) => (RunStatus::Failed, e),
        };
        r.info.status = status;
        r.info.finished_at = Some(now_millis());
        r.info.result = Some(prompt::excerpt(text, RUN_TEXT_CHARS));
        r.abort = None;
        true
    }

    pub(crate) fn runs_of(&self, started_by: &AgentId) -> Vec<RunInfo> {
        let mut out: Vec<RunInfo> = self
            .lock()
            .runs
            .values()
            .filter(|r| r.info.started_by == *started_by)
            .map(|r| r.info.clone())
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.handle.cmp(&a.handle)));
        out
    }

    pub(crate) fn run_of(&self, started_by: &AgentId, handle: &str) -> Option<RunInfo> {
        self.lock()
            .runs
            .get(handle.trim())
            .filter(|r| r.info.started_by == *started_by)
            .map(|r| r.info.clone())
    }

    /// Stops a run: its task is aborted (a model call in flight is dropped) and nothing of it
    /// is posted anywhere.
    fn cancel_now(&self, started_by: &AgentId, handle: &str) -> Result<RunInfo, InterAgentError> {
        let mut s = self.lock();
        let Some(r) = s.runs.get_mut(handle.trim()).filter(|r| r.info.started_by == *started_by) else {
            return Err(InterAgentError::RunNotFound(handle.trim().to_owned()));
        };
        if r.info.status.is_final() {
            return Err(InterAgentError::RunEnded {
                handle: r.info.handle.clone(),
                status: r.info.status.as_str(),
            });
        }
        r.info.status = RunStatus::Cancelled;
        r.info.finished_at = Some(now_millis());
        if let Some(abort) = r.abort.take() {
            abort.abort();
        }
        Ok(r.info.clone())
    }
}

/// Appends an inter-agent audit entry (actor: the agent; user: its owner). The detail always
/// holds the trace.
pub(crate) async fn audit(store: &dyn Store, agent: &Agent, action: &str, trace: &Trace, mut detail: Value) {
    if let Value::Object(o) = &mut detail {
        o.insert("trace".into(), json!(trace.id));
        o.insert("hop".into(), json!(trace.hop));
        o.insert("depth".into(), json!(trace.depth));
    }
    let entry = NewAudit {
        actor: format!("agent:{}", agent.id),
        user_id: agent.owner.clone(),
        agent_id: Some(agent.id.clone()),
        action: action.to_owned(),
        detail,
    };
    if let Err(e) = store.append_audit(entry).await {
        tracing::error!(agent = %agent.id, action, error = %e, "could not audit inter-agent work");
    }
}

fn new_handle() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("run-{}", &id[16..])
}

/// Key of the one inter-agent session of a target for messages from `from`.
fn pair_key(from: &AgentId) -> String {
    let mut h = Sha256::new();
    h.update(b"crewgate inter-agent session v1\0");
    h.update(from.as_str().as_bytes());
    hex::encode(h.finalize())
}

/// Whether an agent can receive messages: a worker whose person is suspended or not yet active
/// cannot.
pub(crate) async fn is_active(store: &dyn Store, agent: &Agent) -> Result<bool, crewgate_store::StoreError> {
    Ok(match &agent.owner {
        None => true,
        Some(owner) => store.get_user(owner).await?.is_some_and(|u| u.status == UserStatus::Active),
    })
}

impl Hub {
    /// Delivers `message` from `from` into `to`'s inter-agent session for `from` and runs
    /// `to`'s turn (one hop further along `trace`), without a sender: nothing in it can decide
    /// a proposal. The caller checked the allow-list and limits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn deliver(
        self: &Arc<Self>,
        rt: &Arc<Runtime>,
        from: &Agent,
        origin_session: &str,
        to: &Agent,
        message: &str,
        trace: &Trace,
        mode: ReplyMode,
    ) -> Result<Delivery, String> {
        let title = format!("From {}", from.id);
        let session: Session = rt
            .store()
            .session_for_key(&to.id, &pair_key(&from.id), &title)
            .await
            .map_err(|e| format!("the store failed: {e}"))?;
        let content = AGENT_MESSAGE.trim_end().replace("{from}", from.id.as_str()) + "\n\n" + message.trim();
        let next = Trace { id: trace.id.clone(), hop: trace.hop + 1, depth: trace.depth };
        let handle = new_handle();
        self.insert_run(RunInfo {
            handle: handle.clone(),
            kind: RunKind::Message,
            started_by: from.id.clone(),
            origin_session: origin_session.to_owned(),
            agent: to.id.clone(),
            session: session.id.clone(),
            task: prompt::excerpt(message, RUN_TEXT_CHARS),
            trace: next.encode(),
            status: RunStatus::Running,
            created_at: now_millis(),
            finished_at: None,
            result: None,
        });
        audit(
            rt.store().as_ref(),
            from,
            "agents.send",
            &next,
            json!({"from": from.id, "to": to.id, "session": session.id, "handle": handle,
                   "wait": matches!(mode, ReplyMode::Wait(_))}),
        )
        .await;

        let busy = self.busy_guard((trace.id.clone(), from.id.clone(), to.id.clone()));
        let (ack_tx, ack_rx) = oneshot::channel::<Result<(), String>>();
        let (reply_tx, reply_rx) = oneshot::channel::<Result<String, String>>();
        let (hub, rt2, from2, to2) = (self.clone(), rt.clone(), from.clone(), to.clone());
        let (handle2, origin) = (handle.clone(), origin_session.to_owned());
        let post_back = !matches!(mode, ReplyMode::Keep);
        let task = tokio::spawn(async move {
            let _busy = busy;
            let (events, mut rx) = mpsc::unbounded_channel();
            let mut req = TurnRequest::new(to2.id.clone(), session.id.clone(), content);
            req.events = Some(events);
            req.trace = Some(next.clone());
            let watch = async move {
                let mut ack = Some(ack_tx);
                while let Some(ev) = rx.recv().await {
                    match ev {
                        TurnEvent::UserMessage { .. } => {
                            if let Some(a) = ack.take() {
                                let _gone = a.send(Ok(()));
                            }
                        }
                        TurnEvent::Error { message, .. } => {
                            if let Some(a) = ack.take() {
                                let _gone = a.send(Err(message));
                            }
                        }
                        _ => {}
                    }
                }
            };
            let (outcome, ()) = tokio::join!(rt2.run_turn(req), watch);
            let result = outcome.map(|o| o.reply.body).map_err(|e| e.to_string());
            if !hub.finish(&handle2, &result) {
                return;
            }
            audit(
                rt2.store().as_ref(),
                &to2,
                "agents.reply",
                &next,
                json!({"from": from2.id, "to": to2.id, "handle": handle2, "ok": result.is_ok()}),
            )
            .await;
            if let Err(result) = reply_tx.send(result)
                && post_back
            {
                let text = match result {
                    Ok(reply) => format!("📨 Reply from agent {} ({handle2}):\n\n{reply}", to2.id),
                    Err(e) => format!("📨 Agent {} could not answer your message ({handle2}): {e}", to2.id),
                };
                rt2.gate.post_notice(&from2.id, &origin, &text).await;
            }
        });
        self.set_abort(&handle, task.abort_handle());

        let ack_wait = match mode {
            ReplyMode::Wait(d) => d.min(ACK_WAIT),
            _ => ACK_WAIT,
        };
        let started = Instant::now();
        match tokio::time::timeout(ack_wait, ack_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(refused))) => return Err(refused),
            // The task ended without a word: cancelled.
            Ok(Err(_closed)) => return Err("the delivery was cancelled".into()),
            Err(_elapsed) => return Ok(Delivery::Queued { handle }),
        }
        match mode {
            ReplyMode::Wait(limit) => {
                let left = limit.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, reply_rx).await {
                    Ok(Ok(reply)) => Ok(Delivery::Replied { handle, reply }),
                    Ok(Err(_closed)) => Err("the delivery was cancelled".into()),
                    Err(_elapsed) => Ok(Delivery::Delivered { handle }),
                }
            }
            ReplyMode::PostBack | ReplyMode::Keep => Ok(Delivery::Delivered { handle }),
        }
    }

    /// Starts `task` as a background run in a new session of `agent` (one level deeper along
    /// `trace`); returns at once. The result is posted into `origin_session`.
    pub(crate) async fn spawn(
        self: &Arc<Self>,
        rt: &Arc<Runtime>,
        agent: &Agent,
        origin_session: &str,
        task: &str,
        trace: &Trace,
    ) -> Result<RunInfo, String> {
        let live = self.live_spawns(&agent.id);
        if live >= self.settings.max_queued_spawns {
            return Err(format!(
                "{live} background tasks are already queued or running (limit {}); wait for some to finish (sessions_list) and try again",
                self.settings.max_queued_spawns
            ));
        }
        let title = crate::clean_title(&format!("Task: {}", prompt::excerpt(task, 60)));
        let session = rt
            .store()
            .create_session(&agent.id, &title)
            .await
            .map_err(|e| format!("the store failed: {e}"))?;
        let next = Trace { id: trace.id.clone(), hop: trace.hop, depth: trace.depth + 1 };
        let handle = new_handle();
        let info = RunInfo {
            handle: handle.clone(),
            kind: RunKind::Spawn,
            started_by: agent.id.clone(),
            origin_session: origin_session.to_owned(),
            agent: agent.id.clone(),
            session: session.id.clone(),
            task: prompt::excerpt(task, RUN_TEXT_CHARS),
            trace: next.encode(),
            status: RunStatus::Queued,
            created_at: now_millis(),
            finished_at: None,
            result: None,
        };
        self.insert_run(info.clone());
        audit(
            rt.store().as_ref(),
            agent,
            "agents.spawn",
            &next,
            json!({"handle": handle, "session": session.id, "origin": origin_session}),
        )
        .await;
        let content = BACKGROUND_TASK.trim_end().to_owned() + "\n\n" + task.trim();
        let slot = self.slot(&agent.id);
        let (hub, rt2, agent2, origin) = (self.clone(), rt.clone(), agent.clone(), origin_session.to_owned());
        let handle2 = handle.clone();
        let join = tokio::spawn(async move {
            // The semaphore is never closed, so this waits for a free slot.
            let Ok(_permit) = slot.acquire_owned().await else { return };
            hub.mark_running(&handle2);
            let mut req = TurnRequest::new(agent2.id.clone(), session.id.clone(), content);
            req.trace = Some(next.clone());
            let result = rt2.run_turn(req).await.map(|o| o.reply.body).map_err(|e| e.to_string());
            if !hub.finish(&handle2, &result) {
                return;
            }
            audit(
                rt2.store().as_ref(),
                &agent2,
                "agents.spawn.finish",
                &next,
                json!({"handle": handle2, "ok": result.is_ok()}),
            )
            .await;
            let text = match result {
                Ok(reply) => format!("🧵 Background task {handle2} finished:\n\n{reply}"),
                Err(e) => format!("🧵 Background task {handle2} failed: {e}"),
            };
            rt2.gate.post_notice(&agent2.id, &origin, &text).await;
        });
        self.set_abort(&handle, join.abort_handle());
        Ok(self.run_of(&agent.id, &handle).unwrap_or(info))
    }

    /// Cancels a run of `agent` and audits it.
    pub(crate) async fn cancel(
        &self,
        store: &dyn Store,
        agent: &Agent,
        handle: &str,
    ) -> Result<RunInfo, InterAgentError> {
        let info = self.cancel_now(&agent.id, handle)?;
        audit(store, agent, "agents.cancel", &Trace::decode(&info.trace), json!({"handle": info.handle}))
            .await;
        Ok(info)
    }
}

// ------------------------------------------------------------------------------------------
// The runtime's inter-agent API

impl Runtime {
    /// A runtime behind an `Arc` with inter-agent messaging enabled (what the gateway runs).
    pub fn shared(
        store: Arc<dyn Store>,
        settings: crate::RuntimeSettings,
        tools: crate::ToolRegistry,
    ) -> Arc<Self> {
        let rt = Arc::new(Self::new(store, settings, tools));
        rt.enable_inter_agent();
        rt
    }

    /// Lets the inter-agent tools run turns of other agents and background runs. Until this is
    /// called they are not offered to any agent. Idempotent.
    pub fn enable_inter_agent(self: &Arc<Self>) {
        self.agents.bind(Arc::downgrade(self));
    }

    /// Background runs `started_by` started (newest first, finished ones while kept).
    pub fn background_runs(&self, started_by: &AgentId) -> Vec<RunInfo> {
        self.agents.runs_of(started_by)
    }

    /// One background run of `started_by`.
    pub fn background_run(&self, started_by: &AgentId, handle: &str) -> Option<RunInfo> {
        self.agents.run_of(started_by, handle)
    }

    /// Cancels a background run of `started_by`: its task is stopped and nothing of it is
    /// posted.
    pub async fn cancel_background_run(
        &self,
        started_by: &AgentId,
        handle: &str,
    ) -> Result<RunInfo, InterAgentError> {
        let agent = match self.store.get_agent(started_by).await {
            Ok(Some(a)) => a,
            _ => return Err(InterAgentError::RunNotFound(handle.to_owned())),
        };
        self.agents.cancel(self.store.as_ref(), &agent, handle).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn agent(id: &str, kind: AgentKind, settings: Value) -> Agent {
        Agent { id: AgentId::parse(id).unwrap(), kind, owner: None, name: id.into(), settings, created_at: 0 }
    }

    #[test]
    fn trace_round_trips() {
        let root = Trace::root("0190abc");
        assert_eq!(root.encode(), "0190abc");
        assert_eq!(Trace::decode("0190abc"), root);
        let t = Trace { id: "0190abc".into(), hop: 3, depth: 1 };
        assert_eq!(t.encode(), "0190abc/3/1");
        assert_eq!(Trace::decode(&t.encode()), t);
        assert_eq!(Trace::decode("a/b/c"), Trace::root("a/b/c"));
        assert_eq!(Trace::decode("/1/2"), Trace::root("/1/2"));
    }

    #[test]
    fn allow_lists_and_defaults() {
        let me = AgentId::parse("alice").unwrap();
        let orch = AgentId::parse("orchestrator").unwrap();
        let bob = AgentId::parse("bob").unwrap();
        let w = agent("alice", AgentKind::Worker, json!({}));
        assert_eq!(AllowAgents::of(&w), AllowAgents::Only(vec![orch.clone()]));
        let empty = agent("alice", AgentKind::Worker, json!({"subagents": {"allowAgents": []}}));
        assert_eq!(AllowAgents::of(&empty), AllowAgents::of(&w));
        let a = AllowAgents::of(&w);
        assert!(a.allows(&me, &orch) && a.allows(&me, &me) && !a.allows(&me, &bob));
        let o = agent("orchestrator", AgentKind::Orchestrator, json!({}));
        assert_eq!(AllowAgents::of(&o), AllowAgents::Any);
        let peers = agent("alice", AgentKind::Worker, json!({"subagents": {"allowAgents": ["bob"]}}));
        let p = AllowAgents::of(&peers);
        assert!(p.allows(&me, &bob) && !p.allows(&me, &orch));
        let star = agent("alice", AgentKind::Worker, json!({"subagents": {"allowAgents": "*"}}));
        assert_eq!(AllowAgents::of(&star), AllowAgents::Any);
        let alone = agent("alice", AgentKind::Worker, json!({"subagents": {"allowAgents": ["alice"]}}));
        assert!(!AllowAgents::of(&alone).reaches_others(&me));
    }
}
