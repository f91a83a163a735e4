//! Per-session coordination inside one process: a lock that serialises turns of a session, and a
//! broadcast bus that lets several clients watch a session's turns.

use crate::events::TurnEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::broadcast;

/// Events buffered per subscriber before it is told it lagged (deltas are small and frequent).
const BUS_CAPACITY: usize = 1024;
/// Map size above which dead entries are swept on insert.
const SWEEP_ABOVE: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked (every update is a single insert/remove).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One async mutex per session, created on demand and dropped when no turn holds or awaits it.
#[derive(Debug, Default)]
pub(crate) struct SessionLocks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl SessionLocks {
    pub(crate) fn get(&self, session: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.map);
        if let Some(existing) = map.get(session).and_then(Weak::upgrade) {
            return existing;
        }
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let fresh = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(session.to_owned(), Arc::downgrade(&fresh));
        fresh
    }
}

/// Broadcast channels by session id, plus one per agent that carries only proposal events (so
/// an approvals inbox hears about proposals of sessions it never opened); a channel exists only
/// while someone subscribed.
#[derive(Debug, Default)]
pub(crate) struct SessionBus {
    map: Mutex<HashMap<String, broadcast::Sender<TurnEvent>>>,
    proposals: Mutex<HashMap<String, broadcast::Sender<TurnEvent>>>,
}

fn subscribe_in(
    map: &Mutex<HashMap<String, broadcast::Sender<TurnEvent>>>,
    key: &str,
) -> broadcast::Receiver<TurnEvent> {
    let mut map = lock(map);
    if map.len() > SWEEP_ABOVE {
        map.retain(|_, s| s.receiver_count() > 0);
    }
    map.entry(key.to_owned()).or_insert_with(|| broadcast::channel(BUS_CAPACITY).0).subscribe()
}

fn publish_in(map: &Mutex<HashMap<String, broadcast::Sender<TurnEvent>>>, key: &str, event: &TurnEvent) {
    let mut map = lock(map);
    let Some(sender) = map.get(key) else { return };
    if sender.receiver_count() == 0 {
        map.remove(key);
        return;
    }
    // An error only means every receiver went away in between.
    let _gone = sender.send(event.clone());
}

impl SessionBus {
    pub(crate) fn subscribe(&self, session: &str) -> broadcast::Receiver<TurnEvent> {
        subscribe_in(&self.map, session)
    }

    /// Proposal events of every session of `agent`.
    pub(crate) fn subscribe_proposals(&self, agent: &str) -> broadcast::Receiver<TurnEvent> {
        subscribe_in(&self.proposals, agent)
    }

    pub(crate) fn publish(&self, event: &TurnEvent) {
        publish_in(&self.map, event.session(), event);
        if let TurnEvent::Proposal { proposal, .. } = event {
            publish_in(&self.proposals, proposal.agent_id.as_str(), event);
        }
    }
}
