// Small formatting helpers for the UI: initials, avatar colours, times.

/** Up to two initials of a name ("Ada Lovelace" -> "AL", "bob" -> "B"). @param {string} name */
export function initials(name) {
  const words = String(name || '?')
    .trim()
    .split(/[\s._@-]+/)
    .filter(Boolean);
  if (words.length === 0) return '?';
  const first = [...words[0]][0] ?? '?';
  const second = words.length > 1 ? ([...words[words.length - 1]][0] ?? '') : '';
  return (first + second).toUpperCase();
}

const AVATAR_COLORS = ['#6366f1', '#0ea5e9', '#10b981', '#f59e0b', '#ef4444', '#ec4899', '#8b5cf6', '#14b8a6', '#f97316', '#3b82f6'];

/** A stable colour for an id. @param {string} id */
export function avatarColor(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) | 0;
  return AVATAR_COLORS[Math.abs(hash) % AVATAR_COLORS.length];
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** @param {Date} a @param {Date} b */
function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/**
 * Compact time for the conversation list: "now", "5m", "3h", "Yesterday", "Mon", "12 Mar".
 * @param {string|null|undefined} iso @param {number} [now]
 */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return '';
  const t = new Date(iso);
  const diff = now - t.getTime();
  if (diff < MINUTE) return 'now';
  if (diff < HOUR) return `${Math.floor(diff / MINUTE)}m`;
  const today = new Date(now);
  if (sameDay(t, today)) return `${Math.floor(diff / HOUR)}h`;
  const yesterday = new Date(now - DAY);
  if (sameDay(t, yesterday)) return 'Yesterday';
  if (diff < 6 * DAY) return t.toLocaleDateString(undefined, { weekday: 'short' });
  if (t.getFullYear() === today.getFullYear()) return t.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
  return t.toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
}

/** "14:05" style clock time. @param {string|null|undefined} iso */
export function clockTime(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** Day separator label: "Today", "Yesterday", "Monday 3 March". @param {string} iso @param {number} [now] */
export function dayLabel(iso, now = Date.now()) {
  const t = new Date(iso);
  if (sameDay(t, new Date(now))) return 'Today';
  if (sameDay(t, new Date(now - DAY))) return 'Yesterday';
  const sameYear = t.getFullYear() === new Date(now).getFullYear();
  return t.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long', ...(sameYear ? {} : { year: 'numeric' }) });
}

/** Local calendar day key of a time. @param {string} iso */
export function dayKey(iso) {
  const t = new Date(iso);
  return `${t.getFullYear()}-${t.getMonth() + 1}-${t.getDate()}`;
}

/**
 * Presence line for a chat header: "Online", "Away", "Last seen 5 minutes ago", "Offline".
 * @param {{status: string, last_seen: string|null}} p @param {number} [now]
 */
export function presenceText(p, now = Date.now()) {
  if (p.status === 'unknown') {
    // Disconnected: what we last knew, said as such.
    if (p.last_known === 'online') return 'Last known: online';
    if (p.last_known === 'away') return 'Last known: away';
    return p.last_seen ? presenceText({ status: 'offline', last_seen: p.last_seen }, now) : '';
  }
  if (p.status === 'online') return 'Online';
  if (p.status === 'away') return 'Away';
  if (!p.last_seen) return 'Offline';
  const t = new Date(p.last_seen);
  const diff = now - t.getTime();
  if (diff < MINUTE) return 'Last seen just now';
  if (diff < HOUR) {
    const m = Math.floor(diff / MINUTE);
    return `Last seen ${m} minute${m === 1 ? '' : 's'} ago`;
  }
  if (sameDay(t, new Date(now))) return `Last seen today at ${clockTime(p.last_seen)}`;
  if (sameDay(t, new Date(now - DAY))) return `Last seen yesterday at ${clockTime(p.last_seen)}`;
  return `Last seen ${t.toLocaleDateString(undefined, { day: 'numeric', month: 'short' })}`;
}
