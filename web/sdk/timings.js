// Every timing rule of the client in one place (seed 001's ACs, seed 004's retry schedule).
// All are overridable through `new ChatClient({ timings: {...} })`.

/**
 * @typedef {object} Timings
 * @property {number[]} backoffMs        delays before reconnect attempts 1..n; after the last one fails: `failed`
 * @property {number} connectTimeoutMs   an attempt that got no `hello` in this time counts as failed
 * @property {number} pingIntervalMs     heartbeat `ping` period while connected
 * @property {number} pongTimeoutMs      no answer to a ping in this time: drop the socket and reconnect
 * @property {number} failedProbeMs      while `failed` (polling), try the WebSocket again this often (0 = never)
 * @property {number} pollMessagesMs     fallback: messages of the open conversation (`?after_seq=`)
 * @property {number} pollConversationsMs fallback: the conversation list
 * @property {number} pollUnreadMs       fallback: unread counts
 * @property {number} lightPollMs        while connected: light refresh of the list and unread (AC-26/27)
 * @property {number[]} sendRetryMs      waits for an ack before each resend of a message
 * @property {number} sendFinalAckMs     wait for an ack after the last resend, then `failed`
 * @property {number} typingRefreshMs    send `is_typing:true` at most this often while typing
 * @property {number} typingIdleMs       send `is_typing:false` after this long without input
 * @property {number} typingHideMs       hide someone's typing indicator after this long without news
 * @property {number} tokenRenewMarginMs renew the access token this long before it expires (at most half its life)
 * @property {number} tokenMinValidityMs refresh before connecting/calling when the token has less left than this
 * @property {number} requestTimeoutMs   abort a REST call after this long
 * @property {number} readCoalesceMs     gather read marks for this long before sending one
 * @property {number} cacheWriteMs       gather changes for the local cache this long, then write them in one transaction
 * @property {number} editWindowMs       own messages can be edited this long after they were sent (the server's `limits.edit_window_secs`)
 * @property {number} cacheOpenTimeoutMs an IndexedDB that has not opened in this time is given up (no cache)
 */

/** @type {Timings} */
export const defaultTimings = Object.freeze({
  backoffMs: [1000, 2000, 4000, 8000, 16000],
  connectTimeoutMs: 10000,
  pingIntervalMs: 30000,
  pongTimeoutMs: 5000,
  failedProbeMs: 60000,
  pollMessagesMs: 5000,
  pollConversationsMs: 15000,
  pollUnreadMs: 30000,
  lightPollMs: 60000,
  sendRetryMs: [1000, 2000, 4000],
  sendFinalAckMs: 5000,
  typingRefreshMs: 3000,
  typingIdleMs: 3000,
  typingHideMs: 4000,
  tokenRenewMarginMs: 60000,
  tokenMinValidityMs: 10000,
  requestTimeoutMs: 15000,
  readCoalesceMs: 150,
  cacheWriteMs: 250,
  editWindowMs: 48 * 3600_000,
  cacheOpenTimeoutMs: 3000,
});

/**
 * @param {Partial<Timings>} [overrides]
 * @returns {Timings}
 */
export function resolveTimings(overrides = {}) {
  return { ...defaultTimings, ...overrides };
}
