// tessera web UI. Fills the server-rendered skeletons from the JSON API the CLI uses, with the
// session cookie, the CSRF token from GET /auth/session and the browser's own Origin.
// Rules kept here: text from the server goes into the page only as text (textContent, never
// HTML); a secret is shown once in one read-only field and cleared when the page is left; no
// secret ever goes into a URL, the history, storage or the console.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const screen = document.body.dataset.screen;
  let csrf = null;
  let me = null;

  // ---- DOM helpers --------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }
  const code = (t) => el('code', { text: t });
  const say = (text) => {
    const s = $('status');
    if (!s) return;
    s.textContent = text;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { s.textContent = ''; }, 5000);
  };
  const showError = (id, text) => {
    const p = $(id);
    if (!p) return;
    p.textContent = text || '';
    p.hidden = !text;
  };

  // ---- time ---------------------------------------------------------------------------------
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }
  function span(ms) {
    const s = Math.abs(ms) / 1000;
    if (s < 90) return Math.round(s) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    if (s < 172800) return Math.round(s / 3600) + ' h';
    if (s < 86400 * 365 * 2) return Math.round(s / 86400) + ' days';
    return Math.round(s / (86400 * 365)) + ' years';
  }
  function timeLeft(iso) {
    if (!iso) return 'never expires';
    const ms = new Date(iso) - Date.now();
    return ms >= 0 ? span(ms) + ' left' : 'expired ' + span(ms) + ' ago';
  }

  // ---- the API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || (status ? 'the server answered ' + status : 'no answer'));
      this.status = status;
      this.code = body && body.code;
    }
  }
  function toSignIn() {
    location.replace('/ui/');
  }
  // One request; a 401 on a signed-in screen means the session ended: back to Sign in.
  async function api(method, path, body, opts) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, { error: 'The server cannot be reached; check that `tessera serve` is running.' });
    }
    const text = await r.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!r.ok) {
      if (r.status === 401 && !(opts && opts.quiet401) && screen !== 'signin') toSignIn();
      throw new ApiError(r.status, data);
    }
    return data;
  }
  const list = (data, key) => (Array.isArray(data) ? data : (data && Array.isArray(data[key]) ? data[key] : []));
  const scopesOf = (x) => (Array.isArray(x.scopes) ? x.scopes : (typeof x.scopes === 'string' ? x.scopes.split(/[\s,]+/).filter(Boolean) : []));
  function isAdmin(who) {
    if (!who) return false;
    if (who.admin === true) return true;
    const s = scopesOf(who);
    return s.includes('admin') || s.some((x) => x.startsWith('admin:users:'));
  }

  // ---- confirmation dialog (keyboard: Tab between the buttons, Escape cancels) ---------------
  function confirmDialog(text, okLabel) {
    const d = $('confirm');
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    const back = document.activeElement;
    return new Promise((resolve) => {
      const done = (answer) => {
        $('confirm-ok').onclick = null;
        $('confirm-cancel').onclick = null;
        d.oncancel = null;
        if (d.open) d.close();
        if (back && back.focus) back.focus();
        resolve(answer);
      };
      $('confirm-ok').onclick = () => done(true);
      $('confirm-cancel').onclick = () => done(false);
      d.oncancel = (e) => { e.preventDefault(); done(false); };
      d.showModal();
      $('confirm-cancel').focus();
    });
  }

  // ---- session ------------------------------------------------------------------------------
  async function loadSession() {
    const s = await api('GET', '/auth/session');
    me = s || {};
    csrf = me.csrf_token || null;
    const who = $('who');
    if (who) who.textContent = me.subject || me.username || '';
    const nav = $('nav-users');
    if (nav) nav.hidden = !isAdmin(me);
    const out = $('signout');
    if (out) {
      out.addEventListener('click', async () => {
        try { await api('DELETE', '/auth/session'); } catch (_) { /* ended already */ }
        toSignIn();
      });
    }
  }

  // ---- Sign in ------------------------------------------------------------------------------
  function signIn(ready) {
    const form = $('signin-form');
    // Already signed in: go to the Tokens screen.
    api('GET', '/auth/session', undefined, { quiet401: true })
      .then(() => location.replace('/ui/tokens'))
      .catch(() => { $('username').focus(); ready(); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const username = $('username').value;
      const pw = $('password');
      const password = pw.value;
      pw.value = '';
      showError('signin-error', '');
      $('signin').disabled = true;
      try {
        await api('POST', '/auth/session', { username, password });
        location.replace('/ui/tokens');
      } catch (err) {
        // One message for an unknown user and a wrong password, as the server gives.
        let msg = 'The username or password is wrong.';
        if (err.status === 429) msg = 'Too many failed attempts. Wait a minute, then try again.';
        else if (err.status === 0 || err.status >= 500) msg = err.message;
        showError('signin-error', msg);
        $('signin').disabled = false;
        pw.focus();
      }
    });
  }

  // ---- the secret, shown once ---------------------------------------------------------------
  function showSecret(name, secret) {
    $('secret-label').textContent = 'Secret of ' + name;
    $('secret').value = secret;
    $('copy-status').textContent = '';
    $('secret-panel').hidden = false;
    $('secret-h').focus();
  }
  function clearSecret() {
    const s = $('secret');
    if (s) s.value = '';
    const p = $('secret-panel');
    if (p) p.hidden = true;
  }
  async function copySecret() {
    const field = $('secret');
    try {
      await navigator.clipboard.writeText(field.value);
      $('copy-status').textContent = 'Copied to the clipboard.';
    } catch (_) {
      field.focus();
      field.select();
      const ok = document.execCommand && document.execCommand('copy');
      $('copy-status').textContent = ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C (or ⌘C) to copy.';
    }
  }

  // ---- Tokens -------------------------------------------------------------------------------
  function stateOf(x) {
    if (x.state) return String(x.state);
    if (x.revoked) return 'revoked';
    if (x.disabled) return 'disabled';
    if (x.expires_at && new Date(x.expires_at) < Date.now()) return 'expired';
    return 'active';
  }
  const expiryCell = (x, st) => [fmtTime(x.expires_at), el('br'),
    el('span', { class: 'hint', text: st === 'active' || st === 'disabled' || st === 'expired' ? timeLeft(x.expires_at) : st })];
  const stateBadge = (st) => el('span', { class: 'state state-' + st, text: st });
  function lastUsed(x) {
    const at = x.last_used_at || x.last_used;
    if (!at) return 'never';
    const from = x.last_used_from || x.last_addresses || x.last_ips || x.addresses;
    const where = Array.isArray(from) ? from.join(', ') : from;
    return fmtTime(at) + (where ? ' from ' + where : '');
  }
  function table(caption, heads, rows) {
    return el('table', {},
      el('caption', { text: caption }),
      el('thead', {}, el('tr', {}, heads.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows.map((cells) => el('tr', {}, cells.map((c, i) => el('td', { 'data-label': heads[i] }, el('div', {}, c)))))));
  }
  function scopeList(x) {
    const s = scopesOf(x);
    return s.length ? s.map((v, i) => [i ? ', ' : '', code(v)]) : 'none';
  }
  function actionButton(label, onClick, danger) {
    return el('button', { type: 'button', class: danger ? 'danger' : 'secondary', onclick: onClick }, label);
  }

  async function loadTokens() {
    const [tokens, keys] = await Promise.allSettled([api('GET', '/auth/tokens'), api('GET', '/auth/keys?owner=' + encodeURIComponent(me.subject || ''))]);
    renderTokens(tokens);
    renderKeys(keys);
  }
  function failed(box, result) {
    box.replaceChildren(el('p', { class: 'error', text: 'Cannot list them: ' + result.reason.message }));
  }
  function renderTokens(result) {
    const box = $('tokens-list');
    if (result.status !== 'fulfilled') return failed(box, result);
    const mine = list(result.value, 'tokens').filter((t) => !me.subject || !t.subject || t.subject === me.subject);
    if (!mine.length) return box.replaceChildren(el('p', { class: 'hint', text: 'You have no tokens yet.' }));
    mine.sort((a, b) => String(b.issued_at).localeCompare(String(a.issued_at)));
    box.replaceChildren(table('Your tokens, newest first', ['Id', 'Scopes', 'State', 'Issued', 'Expires', 'Actions'],
      mine.map((t) => {
        const st = stateOf(t);
        const kind = [t.single_use ? 'single use' : null, t.parent ? 'derived' : null].filter(Boolean).join(', ');
        return [[code(t.jti), kind ? [el('br'), el('span', { class: 'hint', text: kind })] : null], scopeList(t), stateBadge(st),
          fmtTime(t.issued_at), expiryCell(t, st),
          el('div', { class: 'actions' }, st === 'active' ? actionButton('Revoke', () => revokeToken(t, t.jti), true) : null)];
      })));
  }
  function renderKeys(result) {
    const box = $('keys-list');
    if (result.status !== 'fulfilled') {
      if (result.reason.status === 404) return box.replaceChildren(el('p', { class: 'hint', text: 'This server has no API keys.' }));
      return failed(box, result);
    }
    const keys = list(result.value, 'keys');
    if (!keys.length) return box.replaceChildren(el('p', { class: 'hint', text: 'You have no API keys yet.' }));
    box.replaceChildren(table('Your API keys', ['Name', 'Id', 'Scopes', 'State', 'Expires', 'Last used', 'Limits', 'Actions'],
      keys.map((k) => {
        const st = stateOf(k);
        const limits = [];
        const allow = k.allow_ip || k.allowed_ips;
        if (allow && allow.length) limits.push('from ' + (Array.isArray(allow) ? allow.join(', ') : allow));
        if (k.rate_limit) limits.push(typeof k.rate_limit === 'object' ? (k.rate_limit.text || k.rate_limit.limit + ' per ' + k.rate_limit.period) : String(k.rate_limit));
        const acts = [];
        if (st === 'active' && k.source !== 'config') acts.push(actionButton('Disable', () => keyAction(k, 'disable')));
        if (st === 'disabled' && k.source !== 'config') acts.push(actionButton('Enable', () => keyAction(k, 'enable')));
        if (k.source === 'config') acts.push(el('span', { class: 'hint', text: 'held in the config file' }));
        else if (st === 'active' || st === 'disabled') {
          acts.push(actionButton('Rotate', () => rotateKey(k)));
          acts.push(actionButton('Revoke', () => revokeKey(k), true));
        }
        return [k.name || '—', code(k.id), scopeList(k), stateBadge(st), expiryCell(k, st),
          lastUsed(k), limits.length ? limits.join('; ') : 'none', el('div', { class: 'actions' }, acts)];
      })));
  }
  async function revokeToken(t, name) {
    if (!(await confirmDialog('Revoke the token ' + name + '? Everything using it stops working at once; this cannot be undone.', 'Revoke'))) return;
    try {
      await api('DELETE', '/auth/tokens/' + encodeURIComponent(t.jti));
      say('Token revoked.');
    } catch (e) { say('Not revoked: ' + e.message); }
    await loadTokens();
  }
  async function revokeKey(k) {
    if (!(await confirmDialog('Revoke the API key ' + (k.name || k.id) + '? Everything using it stops working at once; this cannot be undone.', 'Revoke'))) return;
    try {
      await api('DELETE', '/auth/keys/' + encodeURIComponent(k.id));
      say('API key revoked.');
    } catch (e) { say('Not revoked: ' + e.message); }
    await loadTokens();
  }
  async function keyAction(k, action) {
    try {
      await api('POST', '/auth/keys/' + encodeURIComponent(k.id) + '/' + action);
      say('API key ' + (action === 'disable' ? 'disabled' : 'enabled') + '.');
    } catch (e) { say('Not ' + action + 'd: ' + e.message); }
    await loadTokens();
  }
  async function rotateKey(k) {
    if (!(await confirmDialog('Rotate the API key ' + (k.name || k.id) + '? You get a new key; the old one stops working.', 'Rotate'))) return;
    try {
      const r = await api('POST', '/auth/keys/' + encodeURIComponent(k.id) + '/rotate', {});
      showSecret(k.name || k.id, r.key || r.secret);
    } catch (e) { say('Not rotated: ' + e.message); }
    await loadTokens();
  }

  function grantable() {
    const s = scopesOf(me);
    // A bare `admin` may grant anything: offer the usual scopes.
    if (s.includes('admin')) return ['pull', 'push', 'admin:tokens:read', 'admin:tokens:write', 'admin'];
    return s;
  }
  function fillScopeChoices() {
    const box = $('scope-choices');
    box.replaceChildren(...grantable().map((s, i) => el('label', {},
      el('input', { type: 'checkbox', name: 'scope', value: s, checked: s === 'pull' || /:pull$/.test(s) || i === 0 }), ' ', code(s))));
  }
  function createForm() {
    const form = $('create-form');
    // Tokens have no name in the API (their id names them); keys have a name and limits.
    const kindChanged = () => {
      const key = form.querySelector('input[name=kind]:checked').value === 'key';
      $('key-options').hidden = !key;
      $('name-field').hidden = !key;
      $('c-name').required = key;
    };
    form.querySelectorAll('input[name=kind]').forEach((r) => r.addEventListener('change', kindChanged));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showError('create-error', '');
      const kind = form.querySelector('input[name=kind]:checked').value;
      const name = $('c-name').value.trim();
      const scopes = [...form.querySelectorAll('input[name=scope]:checked')].map((c) => c.value)
        .concat($('c-more').value.split(',').map((s) => s.trim()).filter(Boolean));
      if (!scopes.length) return showError('create-error', 'Choose at least one scope.');
      const expiry = $('c-expiry').value.trim();
      $('create').disabled = true;
      try {
        let secret;
        if (kind === 'key') {
          const body = { name, scopes, expiry };
          const allow = $('c-allow-ip').value.split(',').map((s) => s.trim()).filter(Boolean);
          if (allow.length) body.allow_ip = allow;
          const rate = $('c-rate').value.trim();
          if (rate) body.rate_limit = rate;
          const r = await api('POST', '/auth/keys', body);
          secret = r.key || r.secret;
        } else {
          const r = await api('POST', '/auth/tokens', { scopes, expiry });
          secret = r.token;
        }
        form.reset();
        kindChanged();
        fillScopeChoices();
        showSecret(kind === 'key' ? 'API key ' + name : 'the new token', secret);
      } catch (err) {
        showError('create-error', err.message);
      } finally {
        $('create').disabled = false;
      }
      loadTokens();
    });
    $('copy').addEventListener('click', copySecret);
    kindChanged();
    $('secret-done').addEventListener('click', () => { clearSecret(); $('create-h').focus(); });
  }

  // ---- Users --------------------------------------------------------------------------------
  async function loadUsers() {
    const box = $('users-list');
    let data;
    try {
      data = await api('GET', '/auth/users');
    } catch (e) {
      box.replaceChildren(el('p', { class: 'error', text: e.status === 403 ? 'Only administrators can see the users.' : 'Cannot list the users: ' + e.message }));
      return;
    }
    const users = list(data, 'users');
    if (!users.length) return box.replaceChildren(el('p', { class: 'hint', text: 'No users are configured.' }));
    box.replaceChildren(table('Users', ['Name', 'Roles', 'Effective scopes', 'Password hash'],
      users.map((u) => {
        const roles = Array.isArray(u.roles) ? u.roles.join(', ') : (u.roles || '—');
        const exists = u.hash_present ?? u.hash_exists;
        const where = u.password_hash || u.hash_key || '';
        return [u.name || u.username, roles || '—', scopeList(u),
          [exists === false ? el('span', { class: 'error', text: 'missing' }) : (exists ? 'present' : '—'), where ? [' ', code(where)] : null]];
      })));
  }

  // ---- Security -----------------------------------------------------------------------------
  function facts(dl, pairs) {
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
  }
  async function loadSecurity() {
    try {
      const s = await api('GET', '/auth/security');
      facts($('server-facts'), [
        ['Authentication', s.auth_enabled ? 'on' : el('span', { class: 'error', text: 'off (loopback only)' })],
        ['Issuer', code(s.issuer)],
        ['Default token expiry', code(s.token_expiry)],
        ['Longest expiry allowed', s.max_token_expiry === '0' ? 'no limit' : code(s.max_token_expiry)],
        ['Password sign-in', s.password_login ? 'enabled' : 'not configured'],
      ]);
      $('signing-keys').replaceChildren(table('Keys that sign and verify tessera tokens', ['Key id (kid)', 'Algorithm', 'Use'],
        (s.signing_keys || []).map((k) => [code(k.kid), k.algorithm, k.use === 'current' ? el('span', { class: 'current', text: 'signs new tokens' }) : 'verifies older tokens only'])));
      const r = s.registry;
      facts($('registry-facts'), r ? [
        ['Service', code(r.service)],
        ['Key id (kid)', code(r.kid)],
        ['Algorithm', r.algorithm],
        ['Certificate valid from', fmtTime(r.certificate_not_before)],
        ['Certificate expires', [fmtTime(r.certificate_not_after), ' (', timeLeft(r.certificate_not_after), ')']],
        ['Registry token lifetime', r.token_ttl_seconds + ' s'],
      ] : [['Status', 'not configured (no certificate; see `tessera registry init`)']]);
    } catch (e) {
      facts($('server-facts'), [['Error', e.message]]);
    }
    await loadSessions();
  }
  async function loadSessions() {
    const box = $('sessions-list');
    try {
      const data = await api('GET', '/auth/sessions');
      const sessions = list(data, 'sessions');
      box.replaceChildren(table('Where you are signed in', ['Signed in', 'Last seen', 'From', 'Expires', ''],
        sessions.map((s) => [fmtTime(s.created_at), fmtTime(s.last_seen_at || s.last_used_at), s.client || s.ip || s.from || s.address || '—',
          [fmtTime(s.expires_at), el('br'), el('span', { class: 'hint', text: timeLeft(s.expires_at) })],
          s.current ? el('span', { class: 'current', text: 'this browser' }) : ''])));
    } catch (e) {
      box.replaceChildren(el('p', { class: 'error', text: 'Cannot list your sessions: ' + e.message }));
    }
    $('signout-all').onclick = async () => {
      if (!(await confirmDialog('Sign out everywhere? Every browser signed in as you, including this one, is signed out.', 'Sign out everywhere'))) return;
      try {
        await api('DELETE', '/auth/sessions');
        toSignIn();
      } catch (e) { say('Not signed out: ' + e.message); }
    };
  }

  // ---- start --------------------------------------------------------------------------------
  // Leaving the page takes any secret with it (also out of the back-forward cache).
  window.addEventListener('pagehide', () => {
    clearSecret();
    const pw = $('password');
    if (pw) pw.value = '';
  });

  const ready = () => {
    document.body.dataset.ready = 'true';
    if (performance.mark) performance.mark('tessera-ready');
  };
  async function start() {
    if (screen === 'signin') return signIn(ready);
    if (screen === 'notfound') return ready();
    try {
      await loadSession();
    } catch (e) {
      if (e.status !== 401) say(e.message);
      return;
    }
    if (screen === 'tokens') {
      fillScopeChoices();
      createForm();
      await loadTokens();
    } else if (screen === 'users') {
      await loadUsers();
    } else if (screen === 'security') {
      await loadSecurity();
    }
    ready();
  }
  start();
})();
