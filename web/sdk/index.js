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
