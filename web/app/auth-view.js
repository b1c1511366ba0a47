// Sign in / create account.

import { h, icon } from './dom.js';

export class AuthView {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {{onSignedIn: () => void, notice?: string}} opts
   */
  constructor(client, { onSignedIn, notice }) {
    this.client = client;
    this.onSignedIn = onSignedIn;
    /** @type {'login'|'register'} */
    this.mode = 'login';

    this.error = h('p', { class: 'form-error', role: 'alert' });

    this.nameField = field('auth-name', 'Display name', { type: 'text', autocomplete: 'name', maxlength: '64', placeholder: 'How others see you' });
    this.emailField = field('auth-email', 'Email', { type: 'email', autocomplete: 'email', required: true, placeholder: 'you@example.com' });
    this.passwordField = field('auth-password', 'Password', { type: 'password', autocomplete: 'current-password', required: true, minlength: '8', placeholder: 'At least 8 characters' });

    this.submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit' }, 'Sign in');
    this.tabLogin = h('button', { type: 'button', role: 'tab', class: 'tab', id: 'tab-login', 'aria-controls': 'auth-form', 'on:click': () => this.setMode('login') }, 'Sign in');
    this.tabRegister = h('button', { type: 'button', role: 'tab', class: 'tab', id: 'tab-register', 'aria-controls': 'auth-form', 'on:click': () => this.setMode('register') }, 'Create account');

    this.form = h(
      'form',
      { class: 'auth-form', id: 'auth-form', role: 'tabpanel', novalidate: true, 'on:submit': (/** @type {Event} */ e) => this.onSubmit(e) },
      this.nameField.wrap,
      this.emailField.wrap,
      this.passwordField.wrap,
      this.error,
      this.submit,
    );

    this.el = h(
      'div',
      { class: 'auth-screen' },
      h(
        'div',
        { class: 'auth-card' },
        h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, icon('chat', { size: 22 })), h('span', { class: 'brand-name' }, 'Chat')),
        h('h1', { class: 'auth-title' }, 'Conversations that keep up with you'),
        h('p', { class: 'auth-subtitle' }, 'Messages arrive instantly, with typing, presence and read receipts.'),
        h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Sign in or create an account' }, this.tabLogin, this.tabRegister),
        this.form,
      ),
    );
    this.setMode('login');
    if (notice) this.error.textContent = notice;
  }

  /** @param {'login'|'register'} mode */
  setMode(mode) {
    this.mode = mode;
    const register = mode === 'register';
    this.tabLogin.setAttribute('aria-selected', String(!register));
    this.tabRegister.setAttribute('aria-selected', String(register));
    this.form.setAttribute('aria-labelledby', register ? 'tab-register' : 'tab-login');
    this.nameField.wrap.hidden = !register;
    this.nameField.input.required = register;
    this.passwordField.input.autocomplete = register ? 'new-password' : 'current-password';
    this.submit.textContent = register ? 'Create account' : 'Sign in';
    this.error.textContent = '';
  }

  focus() {
    (this.mode === 'register' ? this.nameField.input : this.emailField.input).focus();
  }

  /** @param {Event} e */
  async onSubmit(e) {
    e.preventDefault();
    const email = this.emailField.input.value.trim();
    const password = this.passwordField.input.value;
    const displayName = this.nameField.input.value.trim();
    const problem =
      (this.mode === 'register' && !displayName && 'Please enter a display name.') ||
      (!email && 'Please enter your email.') ||
      (!/^[^\s@]+@[^\s@]+$/.test(email) && 'That email address does not look right.') ||
      (!password && 'Please enter your password.') ||
      (this.mode === 'register' && password.length < 8 && 'Use at least 8 characters for your password.') ||
      '';
    if (problem) {
      this.error.textContent = problem;
      return;
    }
    this.error.textContent = '';
    this.submit.disabled = true;
    this.submit.classList.add('is-busy');
    try {
      if (this.mode === 'register') await this.client.register({ email, password, display_name: displayName });
      else await this.client.login({ email, password });
      this.onSignedIn();
    } catch (err) {
      const e2 = /** @type {any} */ (err);
      this.error.textContent =
        e2?.status === 401
          ? 'Wrong email or password.'
          : e2?.status === 409
            ? 'An account with this email already exists. Sign in instead?'
            : e2?.status === 0
              ? 'Cannot reach the server. Check your connection and try again.'
              : e2?.message || 'Something went wrong. Please try again.';
    } finally {
      this.submit.disabled = false;
      this.submit.classList.remove('is-busy');
    }
  }
}

/**
 * @param {string} id
 * @param {string} label
 * @param {Record<string, any>} attrs
 */
function field(id, label, attrs) {
  const input = /** @type {HTMLInputElement} */ (h('input', { id, name: id, class: 'input', ...attrs }));
  const wrap = h('div', { class: 'field' }, h('label', { for: id, class: 'label' }, label), input);
  return { wrap, input };
}
