// The live channel: one WebSocket to /api/v1/ws, authenticated by the session cookie (same origin;
// no token ever goes into a URL or a subprotocol here). Reconnects with backoff; listeners get
// every event by its `type` ("delta", "final", "proposal", …) and "*" gets all of them.

const listeners = new Map();
let ws = null;
let wanted = false;
let attempt = 0;
let timer = null;
let nextRequest = 1;
let status = 'offline';
const subscribed = new Map(); // session id → {agent, count} (re-sent after a reconnect)

function emit(type, ev) {
  for (const fn of listeners.get(type) || []) {
    try {
      fn(ev);
    } catch (e) {
      console.error('live listener failed', e);
    }
  }
}

function setStatus(s, detail) {
  status = s;
  emit('status', { status: s, detail });
}

export function liveStatus() {
  return status;
}

/** Adds a listener; returns a function that removes it. */
export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

export function connect() {
  wanted = true;
  if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`;
  setStatus(attempt === 0 ? 'connecting' : 'reconnecting');
  let sock;
  try {
    sock = new WebSocket(url, ['crewgate.v1']);
  } catch {
    scheduleReconnect();
    return;
  }
  ws = sock;
  sock.addEventListener('message', (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!ev || typeof ev.type !== 'string') return;
    if (ev.type === 'ready') {
      attempt = 0;
      setStatus('online');
      for (const [session, s] of subscribed) send({ type: 'subscribe', session, agent: s.agent });
    }
    emit(ev.type, ev);
    emit('*', ev);
  });
  sock.addEventListener('close', (e) => {
    if (ws !== sock) return;
    ws = null;
    if (e.code === 4401) {
      wanted = false;
      setStatus('offline', 'unauthorized');
      emit('unauthorized', {});
      return;
    }
    if (wanted) scheduleReconnect();
    else setStatus('offline');
  });
}

function scheduleReconnect() {
  setStatus('reconnecting');
  clearTimeout(timer);
  const delay = Math.min(15000, 500 * 2 ** Math.min(attempt, 5)) * (0.75 + Math.random() * 0.5);
  attempt += 1;
  timer = setTimeout(() => {
    if (wanted) connect();
  }, delay);
}

export function disconnect() {
  wanted = false;
  clearTimeout(timer);
  subscribed.clear();
  if (ws) {
    const s = ws;
    ws = null;
    s.close(1000, 'bye');
  }
  setStatus('offline');
}

export function isOpen() {
  return !!ws && ws.readyState === WebSocket.OPEN && status === 'online';
}

/** Sends a message; returns its request_id, or null when the socket is not open. */
export function send(msg) {
  if (!isOpen()) return null;
  const request_id = nextRequest++;
  ws.send(JSON.stringify({ ...msg, request_id }));
  return request_id;
}

/**
 * Receives the events of a session's turns started elsewhere (another tab, the API) and its
 * proposal changes. Reference-counted: several views may hold the same session.
 */
export function subscribe(session, agent) {
  const s = subscribed.get(session);
  if (s) {
    s.count += 1;
    return;
  }
  subscribed.set(session, { agent, count: 1 });
  send({ type: 'subscribe', session, agent });
}

export function unsubscribe(session) {
  const s = subscribed.get(session);
  if (!s) return;
  s.count -= 1;
  if (s.count > 0) return;
  subscribed.delete(session);
  send({ type: 'unsubscribe', session });
}
