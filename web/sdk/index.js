// The chat client SDK. Plain ES modules, no dependencies: import what you need.
export { ChatClient, QUICK_REACTIONS } from './chat-client.js';
export { Connection } from './connection.js';
export { Session, SessionExpiredError } from './session.js';
export { RestClient, ApiError } from './rest.js';
export { MessageThread } from './thread.js';
export { Outbox } from './outbox.js';
export { ChatCache, CACHE_SCHEMA_VERSION, DEFAULT_CACHE_LIMIT, cacheDatabaseName } from './cache.js';
export { TypingSender, TypingRoster, describeTyping } from './typing.js';
export { Poller } from './poller.js';
export { Emitter } from './events.js';
export { systemClock, Timer } from './clock.js';
export { defaultTimings, resolveTimings } from './timings.js';
export {
  DecryptError,
  ENVELOPE_VERSION,
  BACKUP_VERSION,
  MIN_BACKUP_ITERATIONS,
  DEFAULT_BACKUP_ITERATIONS,
  MAX_BACKUP_ITERATIONS,
  toBase64Url,
  fromBase64Url,
  generateDeviceKeys,
  importPublicKey,
  fingerprint,
  safetyNumber,
  generateConversationKey,
  exportConversationKey,
  importConversationKey,
  wrapKey,
  unwrapKey,
  parseEnvelope,
  encryptMessage,
  decryptMessage,
  encryptBackup,
  decryptBackup,
} from './crypto.js';
export { openKeyStore, keyStoreDatabaseName, KEYSTORE_SCHEMA_VERSION } from './keystore.js';
