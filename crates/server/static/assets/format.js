// Formatting helpers: times, states, and readable renderings of structured values (never raw JSON).

import { h } from './dom.js';

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const tf = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

/** "3 minutes ago", "in 2 days". */
export function relative(ms) {
  if (!ms) return '';
  const diff = ms - Date.now();
  const abs = Math.abs(diff);
  const units = [
    ['year', 365 * 864e5],
    ['month', 30 * 864e5],
    ['week', 7 * 864e5],
    ['day', 864e5],
    ['hour', 36e5],
    ['minute', 6e4],
  ];
  for (const [unit, size] of units) {
    if (abs >= size) return rtf.format(Math.round(diff / size), unit);
  }
  return diff < 0 ? 'just now' : 'in a moment';
}

export function dateTime(ms) {
  return ms ? dtf.format(new Date(ms)) : '—';
}

export function timeOnly(ms) {
  return ms ? tf.format(new Date(ms)) : '';
}

/** A <time> element showing relative time with the full date as tooltip. */
export function timeEl(ms, cls) {
  if (!ms) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: new Date(ms).toISOString(), title: dateTime(ms), class: cls }, relative(ms));
}

export function duration(secs) {
  const s = Math.floor(secs);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

export const STATE_LABEL = {
  pending: 'Waiting for you',
  approved: 'Approved',
  executing: 'Running',
  done: 'Done',
  failed: 'Failed',
  rejected: 'Rejected',
  superseded: 'Replaced by an edit',
  expired: 'Expired',
  unknown: 'Check manually',
};

const STATE_TONE = {
  pending: 'warn',
  approved: 'info',
  executing: 'info',
  done: 'ok',
  failed: 'bad',
  rejected: 'muted',
  superseded: 'muted',
  expired: 'muted',
  unknown: 'bad',
  active: 'ok',
  invited: 'info',
  suspended: 'bad',
  revoked: 'muted',
  admin: 'accent',
  member: 'muted',
  orchestrator: 'accent',
  worker: 'muted',
  user: 'muted',
};

export function badge(value, label) {
  const v = String(value ?? '');
  return h('span', { class: ['badge', `tone-${STATE_TONE[v] || 'muted'}`], 'data-state': v }, label ?? STATE_LABEL[v] ?? v);
}

/** "gmail_send" → "Gmail send". */
export function humanize(name) {
  const s = String(name ?? '').replace(/[_.]+/g, ' ').trim();
  return s ? s[0].toUpperCase() + s.slice(1) : '';
}

/** Short readable text of any JSON value (for tables and chips). */
export function valueText(v, max = 200) {
  let s;
  if (v === null || v === undefined) s = '—';
  else if (typeof v === 'string') s = v;
  else if (typeof v === 'number' || typeof v === 'boolean') s = String(v);
  else if (Array.isArray(v)) s = v.map((x) => valueText(x, max)).join(', ');
  else
    s = Object.entries(v)
      .map(([k, x]) => `${humanize(k)}: ${valueText(x, max)}`)
      .join(' · ');
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/**
 * A definition list of an object's fields (nested objects become nested lists). Long strings keep
 * their line breaks.
 */
export function fieldList(obj, { skip = [], cls = 'fields' } = {}) {
  const dl = h('dl', { class: cls });
  for (const [k, v] of Object.entries(obj || {})) {
    if (skip.includes(k) || v === null || v === undefined || v === '') continue;
    let dd;
    if (v && typeof v === 'object' && !Array.isArray(v)) dd = h('dd', null, fieldList(v, { cls: 'fields nested' }));
    else if (Array.isArray(v) && v.some((x) => x && typeof x === 'object')) dd = h('dd', null, v.map((x) => (x && typeof x === 'object' ? fieldList(x, { cls: 'fields nested' }) : h('div', null, valueText(x)))));
    else dd = h('dd', { class: typeof v === 'string' && v.includes('\n') ? 'pre' : null }, valueText(v, 100000));
    dl.append(h('dt', null, humanize(k)), dd);
  }
  return dl;
}

/** Parses a JSON string if it is one; otherwise returns the text. */
export function maybeJson(text) {
  if (typeof text !== 'string') return text;
  const t = text.trim();
  if (!(t.startsWith('{') || t.startsWith('['))) return text;
  try {
    return JSON.parse(t);
  } catch {
    return text;
  }
}
