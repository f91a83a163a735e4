// Chat: the session list, the conversation with streamed replies, tool activity, and proposal
// cards inline. Model output is rendered only through the safe Markdown renderer.

import { h, replace, icon, spinner, errorBox, toast, confirmDialog, modal } from './dom.js';
import * as api from './api.js';
import * as live from './live.js';
import { renderMarkdown } from './markdown.js';
import { relative, timeOnly, humanize, maybeJson, fieldList, valueText } from './format.js';
import { proposalCard, loadProposals } from './approvals.js';

const TOOL_VERBS = {
  current_time: 'Checked the time',
  list_my_sessions: 'Looked at your chats',
  gmail_search: 'Searched Gmail',
  gmail_read: 'Read an e-mail',
  calendar_list_events: 'Checked the calendar',
  calendar_freebusy: 'Checked availability',
  drive_search: 'Searched Drive',
  drive_read: 'Read a Drive file',
  docs_read: 'Read a document',
  sheets_read: 'Read a spreadsheet',
  contacts_search: 'Searched contacts',
  notion_search: 'Searched Notion',
  notion_read: 'Read a Notion page',
};

function toolLabel(name) {
  if (TOOL_VERBS[name]) return TOOL_VERBS[name];
  if (name.startsWith('attio_')) return `CRM: ${humanize(name.slice(6))}`;
  return `Used ${humanize(name)}`;
}

/** "5 results" when the (possibly cut) result says how many; else null. */
function resultCount(preview) {
  const v = maybeJson(preview);
  if (Array.isArray(v)) return `${v.length} result${v.length === 1 ? '' : 's'}`;
  if (v && typeof v === 'object') {
    for (const k of ['results', 'messages', 'events', 'items', 'files', 'sessions', 'contacts', 'records', 'pages']) {
      if (Array.isArray(v[k])) return `${v[k].length} result${v[k].length === 1 ? '' : 's'}`;
    }
    return null;
  }
  const m = /"(?:results|messages|events|items|files|sessions)"\s*:\s*\[/.exec(String(preview));
  return m ? 'results' : null;
}

function argsSummary(argsText) {
  const v = maybeJson(argsText);
  if (v && typeof v === 'object' && Object.keys(v).length) return valueText(v, 120);
  return '';
}

function activityChip(name, argsText) {
  const status = h('span', { class: 'activity-status' }, 'running…');
  const detail = h('div', { class: 'activity-detail', hidden: true });
  const summary = argsSummary(argsText);
  const toggle = h(
    'button',
    {
      class: 'activity-head',
      type: 'button',
      'aria-expanded': 'false',
      onclick: () => {
        const open = detail.hidden;
        detail.hidden = !open;
        toggle.setAttribute('aria-expanded', String(open));
      },
    },
    icon('tool'),
    h('span', { class: 'activity-label' }, toolLabel(name)),
    summary ? h('span', { class: 'activity-args' }, summary) : null,
    status,
  );
  const el = h('div', { class: 'activity', 'data-tool': name, 'data-state': 'running' }, toggle, detail);
  return {
    el,
    result(ok, preview) {
      el.dataset.state = ok ? 'ok' : 'failed';
      const count = ok ? resultCount(preview) : null;
      status.textContent = ok ? (count ? `· ${count}` : '· done') : '· failed';
      const v = maybeJson(preview);
      replace(
        detail,
        v && typeof v === 'object' ? fieldList(Array.isArray(v) ? { results: v } : v) : h('p', { class: 'pre small' }, String(preview || '').slice(0, 2000)),
      );
    },
  };
}

function bubble(role, body, at) {
  const content = h('div', { class: 'bubble-body' });
  if (role === 'user') content.append(h('p', { class: 'pre' }, body));
  else content.append(renderMarkdown(body));
  return h(
    'div',
    { class: ['msg', `msg-${role}`], 'data-role': role },
    h('div', { class: 'bubble' }, content),
    at ? h('div', { class: 'msg-meta' }, timeOnly(at)) : null,
  );
}

export function mount(main, ctx, params) {
  const agent = ctx.agentId;
  const agentQ = `agent=${api.q(agent)}`;
  const st = {
    sessions: [],
    current: params[0] && params[0] !== 'new' ? params[0] : null,
    wantNew: params[0] === 'new',
    turns: new Map(), // turn id → view state
    pendingByRequest: new Map(), // request_id → optimistic view
    busy: false,
    cards: new Map(), // proposal id → card
    disposed: false,
  };
  const offs = [];

  const list = h('ul', { class: 'session-list', 'aria-label': 'Chats' });
  const aside = h(
    'aside',
    { class: 'sessions', 'aria-label': 'Conversations' },
    h(
      'div',
      { class: 'sessions-head' },
      h('h2', null, 'Chats'),
      h('button', { class: 'btn btn-primary btn-small', type: 'button', title: 'New chat (Alt+N)', onclick: () => ctx.navigate('chat', 'new'), 'data-testid': 'new-chat' }, icon('plus'), 'New'),
    ),
    list,
  );
  const title = h('h1', { class: 'conv-title' }, 'New chat');
  const headActions = h('div', { class: 'conv-actions' });
  const messages = h('div', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation', 'data-testid': 'messages' });
  const input = h('textarea', {
    class: 'composer-input',
    rows: '1',
    placeholder: 'Message your agent…',
    'aria-label': 'Message',
    'data-shortcut-focus': true,
    'data-testid': 'composer',
  });
  const sendBtn = h('button', { class: 'btn btn-primary composer-send', type: 'submit', 'aria-label': 'Send', 'data-testid': 'send' }, icon('send'), h('span', { class: 'hide-sm' }, 'Send'));
  const composer = h(
    'form',
    { class: 'composer', onsubmit: (e) => { e.preventDefault(); submit(); } },
    input,
    sendBtn,
  );
  const hint = h('p', { class: 'composer-hint muted' }, 'Enter to send · Shift+Enter for a new line. Nothing is sent or changed outside crewgate without your approval.');
  const drawerBtn = h('button', { class: 'btn btn-ghost btn-small show-sm', type: 'button', 'aria-label': 'Show chats', onclick: () => root.classList.toggle('drawer-open') }, icon('menu'), 'Chats');
  const conv = h(
    'section',
    { class: 'conversation', 'aria-label': 'Conversation' },
    h(
      'header',
      { class: 'conv-head' },
      drawerBtn,
      title,
      headActions,
      h('button', { class: 'btn btn-ghost btn-small show-sm', type: 'button', 'aria-label': 'New chat', title: 'New chat', onclick: () => ctx.navigate('chat', 'new'), 'data-testid': 'new-chat-sm' }, icon('plus')),
    ),
    messages,
    h('div', { class: 'composer-wrap' }, composer, hint),
  );
  const root = h('div', { class: 'chat' }, aside, conv);
  main.append(root);

  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  input.addEventListener('input', autosize);
  function autosize() {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  }

  function setBusy(b) {
    st.busy = b;
    sendBtn.disabled = b;
    sendBtn.classList.toggle('is-busy', b);
  }

  function scrollDown(force) {
    const near = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 160;
    if (force || near) messages.scrollTop = messages.scrollHeight;
  }

  // ---- sessions -------------------------------------------------------------------------

  function renderSessions() {
    if (!st.sessions.length) {
      replace(list, h('li', { class: 'session-empty muted' }, 'No chats yet.'));
      return;
    }
    replace(
      list,
      st.sessions.map((s) =>
        h(
          'li',
          null,
          h(
            'a',
            {
              href: `#/chat/${encodeURIComponent(s.id)}`,
              class: 'session-link',
              'aria-current': s.id === st.current ? 'page' : null,
              'data-session': s.id,
              onclick: () => root.classList.remove('drawer-open'),
            },
            h('span', { class: 'session-title' }, s.title || 'Untitled chat'),
            h('span', { class: 'session-time muted' }, relative(s.updated_at)),
          ),
        ),
      ),
    );
  }

  async function loadSessions() {
    const sessions = await api.get(`/sessions?${agentQ}`);
    st.sessions = (sessions || []).sort((a, b) => b.updated_at - a.updated_at);
    renderSessions();
    const cur = st.sessions.find((x) => x.id === st.current);
    if (cur && !st.disposed) title.textContent = cur.title || 'Untitled chat';
    return st.sessions;
  }

  function upsertSession(s) {
    const i = st.sessions.findIndex((x) => x.id === s.id);
    if (i >= 0) st.sessions[i] = { ...st.sessions[i], ...s };
    else st.sessions.unshift(s);
    st.sessions.sort((a, b) => b.updated_at - a.updated_at);
    renderSessions();
  }

  function renderHeadActions() {
    if (!st.current) {
      replace(headActions);
      return;
    }
    replace(
      headActions,
      h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: renameSession, title: 'Rename this chat' }, icon('edit'), h('span', { class: 'hide-sm' }, 'Rename')),
      h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: deleteSession, title: 'Delete this chat' }, icon('trash'), h('span', { class: 'hide-sm' }, 'Delete')),
    );
  }

  async function renameSession() {
    const s = st.sessions.find((x) => x.id === st.current);
    const name = await modal('Rename chat', (close) => {
      const field = h('input', { type: 'text', value: s ? s.title : '', 'aria-label': 'Chat name', maxlength: '120' });
      setTimeout(() => field.select(), 0);
      return h(
        'form',
        { onsubmit: (e) => { e.preventDefault(); close(field.value.trim()); } },
        field,
        h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'button', onclick: () => close() }, 'Cancel'), h('button', { class: 'btn btn-primary', type: 'submit' }, 'Rename')),
      );
    });
    if (!name) return;
    try {
      const updated = await api.api('PATCH', `/sessions/${api.q(st.current)}?${agentQ}`, { title: name });
      upsertSession(updated);
      title.textContent = updated.title;
    } catch (e) {
      toast(e.message, 'bad');
    }
  }

  async function deleteSession() {
    const ok = await confirmDialog('Delete this chat?', 'The conversation is removed for good. Proposals it created stay in your approvals history.', 'Delete', true);
    if (!ok) return;
    try {
      await api.del(`/sessions/${api.q(st.current)}?${agentQ}`);
      st.sessions = st.sessions.filter((x) => x.id !== st.current);
      toast('Chat deleted.');
      ctx.navigate('chat', 'new');
    } catch (e) {
      toast(e.message, 'bad');
    }
  }

  // ---- transcript -----------------------------------------------------------------------

  function emptyConversation() {
    const suggestions = ['What can you help me with?', 'What time is it?', 'Draft a short e-mail to the team about Friday’s demo'];
    return h(
      'div',
      { class: 'conv-empty' },
      h('div', { class: 'conv-empty-mark', 'aria-hidden': 'true' }, icon('chat')),
      h('h2', null, `Ask ${ctx.agent?.name || 'your agent'} anything`),
      h('p', { class: 'muted' }, 'It can read what you have connected. Anything that would send, create or change something outside crewgate waits for your approval first.'),
      h(
        'div',
        { class: 'suggestions' },
        suggestions.map((s) =>
          h('button', { class: 'chip', type: 'button', onclick: () => { input.value = s; autosize(); input.focus(); } }, s),
        ),
      ),
    );
  }

  function renderTranscript(msgs) {
    const nodes = [];
    const chips = new Map();
    for (const m of msgs) {
      if (m.role === 'user') nodes.push(bubble('user', m.body, m.created_at));
      else if (m.role === 'assistant') {
        if (m.body && m.body.trim()) nodes.push(bubble('assistant', m.body, m.created_at));
        for (const c of m.tool_calls || []) {
          const chip = activityChip(c.name, c.arguments);
          chips.set(c.id, chip);
          nodes.push(chip.el);
        }
      } else if (m.role === 'tool') {
        const chip = chips.get(m.tool_call_id);
        if (chip) {
          const failed = /^(error|tool error|invalid)/i.test(m.body || '');
          chip.result(!failed, m.body);
        }
      } else if (m.role === 'error') {
        nodes.push(errorNote(m.body));
      } else if (m.body && m.body.trim()) {
        const b = bubble('assistant', m.body, m.created_at);
        b.classList.add('msg-notice');
        nodes.push(b);
      }
    }
    for (const c of chips.values()) if (c.el.dataset.state === 'running') c.el.dataset.state = 'ok';
    return nodes;
  }

  function errorNote(text) {
    return h('div', { class: 'msg msg-error', role: 'alert' }, h('div', { class: 'bubble' }, h('strong', null, 'The agent could not answer. '), text));
  }

  async function openSession() {
    renderSessions();
    renderHeadActions();
    st.turns.clear();
    st.cards.clear();
    if (!st.current) {
      title.textContent = 'New chat';
      replace(messages, emptyConversation());
      return;
    }
    const s = st.sessions.find((x) => x.id === st.current);
    title.textContent = s ? s.title || 'Untitled chat' : 'Chat';
    replace(messages, spinner('Loading conversation…'));
    try {
      const msgs = await api.get(`/sessions/${api.q(st.current)}/messages?${agentQ}`);
      if (st.disposed) return;
      replace(messages, msgs.length ? renderTranscript(msgs) : emptyConversation());
      live.subscribe(st.current, agent);
      scrollDown(true);
      // Pending proposals of this chat, at the end.
      const pending = await loadProposals(agent, 'pending').catch(() => []);
      for (const p of pending || []) if (p.session_id === st.current) showProposal(p);
      scrollDown(true);
    } catch (e) {
      if (e.status === 404) {
        replace(messages, h('div', { class: 'conv-empty' }, h('h2', null, 'Chat not found'), h('p', { class: 'muted' }, 'It may have been deleted.'), h('a', { class: 'btn', href: '#/chat/new' }, 'Start a new chat')));
        st.current = null;
        renderHeadActions();
      } else {
        replace(messages, errorBox(e, openSession));
      }
    }
  }

  // ---- live turns -----------------------------------------------------------------------

  function turnView(turn) {
    let t = st.turns.get(turn);
    if (!t) {
      t = { userEl: null, segment: null, text: '', chips: new Map(), thinking: null, raf: 0 };
      st.turns.set(turn, t);
    }
    return t;
  }

  function clearEmpty() {
    const e = messages.querySelector('.conv-empty');
    if (e) e.remove();
  }

  function thinking() {
    return h('div', { class: 'msg msg-assistant thinking', 'aria-label': 'The agent is thinking' }, h('div', { class: 'bubble' }, h('span', { class: 'dots' }, h('i'), h('i'), h('i'))));
  }

  function ensureSegment(t) {
    if (t.thinking) {
      t.thinking.remove();
      t.thinking = null;
    }
    if (!t.segment) {
      t.segment = bubble('assistant', '');
      t.segment.classList.add('streaming');
      t.segment.dataset.testid = 'streaming';
      t.text = '';
      messages.append(t.segment);
    }
    return t.segment;
  }

  function paint(t) {
    if (t.raf) return;
    t.raf = requestAnimationFrame(() => {
      t.raf = 0;
      if (!t.segment) return;
      const body = t.segment.querySelector('.bubble-body');
      replace(body, renderMarkdown(t.text));
      scrollDown();
    });
  }

  function onEvent(ev) {
    if (ev.type === 'session' && ev.session && st.pendingByRequest.has(ev.request_id)) {
      // A new chat was created for our message.
      st.current = ev.session.id;
      ctx.setHashQuietly('chat', st.current);
      upsertSession(ev.session);
      title.textContent = ev.session.title || 'New chat';
      renderHeadActions();
      live.subscribe(st.current, agent);
      return;
    }
    if (ev.type === 'accepted' && st.pendingByRequest.has(ev.request_id)) {
      const pending = st.pendingByRequest.get(ev.request_id);
      st.pendingByRequest.delete(ev.request_id);
      const t = turnView(ev.turn);
      t.userEl = pending.userEl;
      t.thinking = pending.thinking;
      t.mine = true;
      return;
    }
    if (ev.type === 'error' && ev.request_id && st.pendingByRequest.has(ev.request_id)) {
      const pending = st.pendingByRequest.get(ev.request_id);
      st.pendingByRequest.delete(ev.request_id);
      if (pending.thinking) pending.thinking.remove();
      messages.append(errorNote(ev.message));
      setBusy(false);
      return;
    }
    if (ev.type === 'notice') {
      // The gateway's own message into this chat (an expired proposal, an outcome after a restart).
      if (ev.session === st.current && ev.message) {
        clearEmpty();
        const b = bubble('assistant', ev.message.body, ev.message.created_at);
        b.classList.add('msg-notice');
        messages.append(b);
        scrollDown();
      }
      return;
    }
    if (!ev.session || ev.session !== st.current || !ev.turn) return;
    const t = turnView(ev.turn);
    switch (ev.type) {
      case 'turn_started':
        if (!t.thinking && !t.segment) {
          clearEmpty();
          t.thinking = thinking();
          messages.append(t.thinking);
          scrollDown();
        }
        break;
      case 'user_message':
        clearEmpty();
        if (t.userEl) {
          t.userEl.classList.remove('sending');
        } else {
          t.userEl = bubble('user', ev.message.body, ev.message.created_at);
          if (t.thinking) messages.insertBefore(t.userEl, t.thinking);
          else messages.append(t.userEl);
        }
        scrollDown(true);
        break;
      case 'delta':
        ensureSegment(t);
        t.text += ev.text;
        paint(t);
        break;
      case 'tool_call': {
        if (t.thinking) {
          t.thinking.remove();
          t.thinking = null;
        }
        if (t.segment) {
          t.segment.classList.remove('streaming');
          if (!t.text.trim()) t.segment.remove();
          t.segment = null;
        }
        const chip = activityChip(ev.name, ev.arguments);
        t.chips.set(ev.call_id, chip);
        messages.append(chip.el);
        t.thinking = thinking();
        messages.append(t.thinking);
        scrollDown();
        break;
      }
      case 'tool_result': {
        const chip = t.chips.get(ev.call_id);
        if (chip) chip.result(ev.ok, ev.preview);
        break;
      }
      case 'final': {
        if (t.raf) cancelAnimationFrame(t.raf);
        t.raf = 0;
        const body = ev.message && ev.message.body ? ev.message.body : t.text;
        if (body.trim() || t.segment) {
          const seg = ensureSegment(t);
          replace(seg.querySelector('.bubble-body'), renderMarkdown(body));
          seg.classList.remove('streaming');
          delete seg.dataset.testid;
          seg.dataset.final = 'true';
          seg.append(h('div', { class: 'msg-meta' }, timeOnly(ev.message?.created_at || Date.now())));
        }
        if (t.thinking) t.thinking.remove();
        st.turns.delete(ev.turn);
        if (t.mine) setBusy(false);
        scrollDown();
        loadSessions().catch(() => {});
        break;
      }
      case 'error':
        if (t.raf) cancelAnimationFrame(t.raf);
        if (t.thinking) t.thinking.remove();
        if (t.segment) t.segment.classList.remove('streaming');
        messages.append(errorNote(ev.message));
        st.turns.delete(ev.turn);
        if (t.mine) setBusy(false);
        scrollDown();
        break;
      default:
        break;
    }
  }
  offs.push(live.on('*', onEvent));

  function showProposal(p) {
    const existing = st.cards.get(p.id);
    if (existing) {
      existing.update(p);
      return;
    }
    if (p.session_id !== st.current) return;
    clearEmpty();
    const card = proposalCard(p, ctx, { compact: true });
    st.cards.set(p.id, card);
    messages.append(card.el);
    scrollDown();
  }
  offs.push(live.on('proposal', (ev) => ev.proposal && showProposal(ev.proposal)));

  // ---- sending --------------------------------------------------------------------------

  async function submit() {
    const content = input.value.trim();
    if (!content || st.busy) return;
    clearEmpty();
    const userEl = bubble('user', content);
    userEl.classList.add('sending');
    messages.append(userEl);
    const think = thinking();
    messages.append(think);
    scrollDown(true);
    input.value = '';
    autosize();
    setBusy(true);
    const msg = { type: 'send', content, agent };
    if (st.current) msg.session = st.current;
    const rid = live.send(msg);
    if (rid !== null) {
      st.pendingByRequest.set(rid, { userEl, thinking: think });
      return;
    }
    // No live connection: the same turn over REST (no streaming).
    try {
      if (!st.current) {
        const s = await api.post(`/sessions?${agentQ}`, {});
        st.current = s.id;
        ctx.setHashQuietly('chat', s.id);
        upsertSession(s);
        renderHeadActions();
      }
      const r = await api.post(`/sessions/${api.q(st.current)}/messages?${agentQ}`, { content });
      think.remove();
      userEl.remove();
      for (const n of renderTranscript(r.messages || [])) messages.append(n);
      loadSessions().catch(() => {});
    } catch (e) {
      think.remove();
      userEl.classList.remove('sending');
      messages.append(errorNote(e.message));
    } finally {
      setBusy(false);
      scrollDown(true);
    }
  }

  // ---- start ----------------------------------------------------------------------------

  (async () => {
    replace(list, h('li', null, spinner()));
    try {
      await loadSessions();
    } catch (e) {
      replace(list, h('li', null, errorBox(e, () => loadSessions())));
    }
    if (st.disposed) return;
    if (!st.current && !st.wantNew && st.sessions.length) {
      st.current = st.sessions[0].id;
      ctx.setHashQuietly('chat', st.current);
    }
    await openSession();
    if (window.matchMedia('(min-width: 760px)').matches) input.focus();
  })();

  return () => {
    st.disposed = true;
    offs.forEach((f) => f());
    if (st.current) live.unsubscribe(st.current);
  };
}
