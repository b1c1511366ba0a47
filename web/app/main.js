// Entry point of the web client: one ChatClient (the SDK) for the page, and either the sign-in
// screen or the chat.

import { ChatClient } from '../sdk/chat-client.js';
import { AuthView } from './auth-view.js';
import { ChatApp } from './chat-app.js';

const root = /** @type {HTMLElement} */ (document.getElementById('app'));
// Embedders may set window.CHAT_CONFIG = { baseUrl, timings } before this module loads.
const config = /** @type {any} */ (window).CHAT_CONFIG ?? {};
const client = new ChatClient({ baseUrl: config.baseUrl, timings: config.timings });

/** @type {ChatApp|null} */
let chat = null;

/** @param {string} [notice] */
function showAuth(notice) {
  chat?.destroy();
  chat = null;
  root.className = 'auth-root';
  const view = new AuthView(client, { notice, onSignedIn: showChat });
  root.replaceChildren(view.el);
  view.focus();
}

function showChat() {
  root.className = 'chat-root';
  chat = new ChatApp(client, { onSignedOut: () => showAuth() });
  root.replaceChildren(chat.el);
  chat.start();
}

client.on('session_expired', () => showAuth('Your session has expired. Please sign in again.'));

if (client.isAuthenticated) showChat();
else showAuth();

// For debugging from the console and for end-to-end tests.
/** @type {any} */ (window).chatClient = client;
