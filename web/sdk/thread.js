// The messages of one conversation as this client holds them: deduplicated by id and by seq,
// ordered by seq, with the sender's own unacknowledged messages after them, and a cursor that
// says up to which seq nothing is missing. A message past the cursor means a gap to fetch.

/**
 * A message as the SDK holds it: the server's fields, plus `key` (stable across the optimistic
 * copy and the acknowledged one, for rendering) and, while unacknowledged, `local: true` and
 * `status` `'sending'` or `'failed'`.
 * @typedef {import('./rest.js').Message & {key: string, local?: boolean, error?: string}} HeldMessage
 */

export class MessageThread {
  /**
   * @param {string} conversationId
   * @param {string|null} meId  the signed-in user (to recognise the echo of our own sends)
   */
  constructor(conversationId, meId) {
    this.conversationId = conversationId;
    this.meId = meId;
    /** Every seq <= cursor is known: held, or older history not loaded. */
    this.cursor = 0;
    /** @type {Map<number, HeldMessage>} */
    this.bySeq = new Map();
    /** @type {Map<string, HeldMessage>} */
    this.byId = new Map();
    /** Our own messages not acknowledged yet, by temp_id, in the order they were written. @type {Map<string, HeldMessage>} */
    this.pending = new Map();
    /** The first message of the conversation is held (no older history to page in). */
    this.reachedStart = false;
    /** A page of the newest history was loaded (the view was opened at least once). */
    this.loaded = false;
    /** @type {HeldMessage[]|null} */
    this._sorted = null;
  }

  /** Highest seq held (0 when none). */
  get maxSeq() {
    let max = 0;
    for (const seq of this.bySeq.keys()) if (seq > max) max = seq;
    return max;
  }

  /** @returns {HeldMessage|null} */
  oldest() {
    let best = null;
    for (const m of this.bySeq.values()) if (!best || m.seq < best.seq) best = m;
    return best;
  }

  /** @returns {HeldMessage|null} */
  newest() {
    let best = null;
    for (const m of this.bySeq.values()) if (!best || m.seq > best.seq) best = m;
    return best;
  }

  /** Older history exists that is not held. */
  get hasOlder() {
    if (this.reachedStart) return false;
    const oldest = this.oldest();
    return oldest ? oldest.seq > 1 : this.cursor > 0;
  }

  /**
   * What is missing between the cursor and the newest seq known, if anything.
   * @param {number} [knownLastSeq] the server's last_seq when known
   * @returns {{afterSeq: number, upTo: number}|null}
   */
  gap(knownLastSeq = 0) {
    const upTo = Math.max(this.maxSeq, knownLastSeq);
    return upTo > this.cursor ? { afterSeq: this.cursor, upTo } : null;
  }

  /**
   * The server says the conversation reached `lastSeq`. With nothing held there is nothing to
   * keep contiguous: the cursor simply moves (history is paged in when the view opens).
   * With messages held, a higher seq is a gap. Returns true when messages are now missing.
   * @param {number} lastSeq
   */
  noteLastSeq(lastSeq) {
    if (!(lastSeq > this.cursor)) return false;
    if (this.bySeq.size === 0) {
      this.cursor = lastSeq;
      return false;
    }
    return true;
  }

  /**
   * Take a message from the server (live, sync replay, history, polling). Duplicates, by id or
   * by seq, are merged and reported as not added.
   * @param {import('./rest.js').Message} msg
   * @returns {{added: boolean, message: HeldMessage, gap: boolean}}
   */
  ingest(msg) {
    const existing = this.byId.get(msg.id) ?? this.bySeq.get(msg.seq);
    if (existing) {
      if (existing.id === msg.id) {
        if (typeof msg.change_seq === 'number') {
          mergeCopy(existing, msg, this.meId);
          if (msg.status) existing.status = msg.status;
        } else {
          // A copy without change numbers (an older server): take newer facts as they come.
          for (const k of ['content', 'edited_at', 'deleted_at', 'status']) {
            const v = /** @type {any} */ (msg)[k];
            if (v !== undefined && v !== null) /** @type {any} */ (existing)[k] = v;
          }
          if (msg.deleted_at === null && existing.deleted_at) existing.deleted_at = null;
        }
        this._sorted = null;
      }
      this._resolvePendingEcho(msg);
      return { added: false, message: existing, gap: this.maxSeq > this.cursor };
    }
    /** @type {HeldMessage} */
    let held;
    const pending = msg.temp_id && msg.sender_id === this.meId ? this.pending.get(msg.temp_id) : undefined;
    if (pending) {
      this.pending.delete(/** @type {string} */ (msg.temp_id));
      held = Object.assign(pending, msg, { key: pending.key, local: false, error: undefined });
      delete held.local;
      delete held.error;
    } else {
      held = { ...msg, key: `i:${msg.id}` };
    }
    if (Array.isArray(held.reactions)) held.reactions = withMe(held.reactions, [], this.meId, null);
    this.bySeq.set(held.seq, held);
    this.byId.set(held.id, held);
    if (held.seq === 1) this.reachedStart = true;
    if (held.seq === this.cursor + 1) {
      this.cursor = held.seq;
      while (this.bySeq.has(this.cursor + 1)) this.cursor++;
    }
    this._sorted = null;
    return { added: true, message: held, gap: this.maxSeq > this.cursor };
  }

  /** The server echoed a message we hold under its id while our optimistic copy still waits. @param {import('./rest.js').Message} msg */
  _resolvePendingEcho(msg) {
    if (msg.temp_id && msg.sender_id === this.meId && this.pending.has(msg.temp_id)) {
      this.pending.delete(msg.temp_id);
      this._sorted = null;
    }
  }

  /** @param {HeldMessage} local */
  addPending(local) {
    this.pending.set(/** @type {string} */ (local.temp_id), local);
    this._sorted = null;
  }

  /** @param {string} tempId */
  removePending(tempId) {
    if (this.pending.delete(tempId)) this._sorted = null;
  }

  /** Something about a held message changed (status, error): re-render it. */
  touch() {
    this._sorted = null;
  }

  /** Forget every held server message (the pending ones stay). */
  clearHistory() {
    this.bySeq.clear();
    this.byId.clear();
    this.reachedStart = false;
    this.loaded = false;
    this._sorted = null;
  }

  /** Held messages by seq, then our unacknowledged ones in the order they were written. @returns {HeldMessage[]} */
  list() {
    if (!this._sorted) {
      const held = [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
      this._sorted = held.concat([...this.pending.values()]);
    }
    return this._sorted;
  }
}

/**
 * Take a server copy of a message we hold when it is newer (a higher `change_seq`): its
 * content, edit, deletion and reactions. The reply preview is the server's view now, taken from
 * any copy that has one. Returns true when the lifecycle state changed.
 * @param {import('./rest.js').Message} held
 * @param {import('./rest.js').Message} copy
 * @param {string|null} meId
 */
export function mergeCopy(held, copy, meId) {
  const ours = held.change_seq ?? 0;
  const theirs = copy.change_seq ?? 0;
  if (copy.reply_preview !== undefined) held.reply_preview = copy.reply_preview;
  if (theirs < ours) return false;
  // Its files as the server has them now (fresh signed links; none once deleted).
  if (Array.isArray(copy.attachments)) held.attachments = copy.attachments;
  if (theirs === ours) {
    // The same state: only fill in `me` where our copy lacks it.
    if (Array.isArray(copy.reactions) && Array.isArray(held.reactions)) {
      for (const r of held.reactions) {
        const c = copy.reactions.find((x) => x.emoji === r.emoji);
        if (r.me === undefined && typeof c?.me === 'boolean') r.me = c.me;
      }
    }
    return false;
  }
  held.change_seq = theirs;
  held.content = copy.content ?? '';
  held.edited_at = copy.edited_at ?? null;
  held.deleted_at = copy.deleted_at ?? null;
  held.deleted_by = copy.deleted_by ?? null;
  if (Array.isArray(copy.reactions)) held.reactions = withMe(copy.reactions, held.reactions ?? [], meId, null);
  if (held.deleted_at) held.reactions = [];
  return true;
}

/**
 * Reactions with our own `me` on each: the server's when it says (REST, sync replay), from a
 * `reaction` frame of ours (`mine`), from `user_ids` when they are complete, else what we knew.
 * @param {import('./rest.js').Reaction[]} next
 * @param {import('./rest.js').Reaction[]} prev
 * @param {string|null} meId
 * @param {{emoji: string, added: boolean}|null} mine
 * @returns {import('./rest.js').Reaction[]}
 */
export function withMe(next, prev, meId, mine) {
  return next
    .filter((r) => r && typeof r.emoji === 'string' && r.count > 0)
    .map((r) => {
      const userIds = Array.isArray(r.user_ids) ? r.user_ids : [];
      let me = r.me;
      if (typeof me !== 'boolean') {
        if (mine && mine.emoji === r.emoji) me = mine.added;
        else if (meId && userIds.includes(meId)) me = true;
        else if (r.count <= userIds.length) me = false;
        else me = prev.find((p) => p.emoji === r.emoji)?.me ?? false;
      }
      return { emoji: r.emoji, count: r.count, user_ids: userIds, me };
    });
}
