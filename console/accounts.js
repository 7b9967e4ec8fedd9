// The console's accounts panel (docs/operations.md, "Accounts"): search
// riders, drivers and operators a page at a time, disable / enable, hand out
// a one-time password-reset link, edit a driver and the vehicle, delete; and
// the page a reset link opens (#reset=<token>). The admin API behind it is in
// docs/api.md. Uses api(), esc(), dl() and $ from console.js.
'use strict';

const accounts = { role: 'driver', q: '', cursor: null, items: new Map(), open: null };
state.accounts = accounts;

async function accountsSearch(more) {
  if (!more) {
    accounts.role = $('acct-role').value;
    accounts.q = $('acct-q').value.trim();
    accounts.cursor = null;
    accounts.items.clear();
    $('acct-list').replaceChildren();
  }
  const qs = new URLSearchParams({ limit: '20' });
  if (accounts.q) qs.set('q', accounts.q);
  if (more && accounts.cursor) qs.set('cursor', accounts.cursor);
  const r = await api('GET', `/v1/admin/${accounts.role}s?${qs}`);
  if (r.status !== 200) {
    $('acct-result').textContent = (r.json && r.json.detail) || `search failed (${r.status})`;
    return;
  }
  $('acct-result').textContent = '';
  for (const a of r.json.items) {
    accounts.items.set(a.id, a);
    $('acct-list').appendChild(accountsRow(a));
  }
  accounts.cursor = r.json.next_cursor;
  $('acct-more').hidden = !accounts.cursor;
  if (!accounts.items.size) $('acct-result').textContent = 'no account found';
}

function accountsRow(a) {
  const li = document.createElement('li');
  li.dataset.account = a.id;
  li.innerHTML = `${esc(a.name)} <span class="muted">${esc(a.vehicle ? a.vehicle.plate : a.email)}</span>` +
    (a.disabled ? ' <b class="badge">disabled</b>' : '');
  li.addEventListener('click', () => accountsShow(a.id));
  return li;
}

function accountsRefresh(a) {
  accounts.items.set(a.id, a);
  const old = document.querySelector(`#acct-list li[data-account="${a.id}"]`);
  if (old) old.replaceWith(accountsRow(a));
  accountsShow(a.id);
}

function accountsShow(id) {
  const a = accounts.items.get(id);
  accounts.open = id;
  const v = a.vehicle;
  let html = `<h3>${esc(a.role)}: ${esc(a.name)}</h3>` + dl([
    ['id', a.id], ['email', a.email], ['phone', a.phone || undefined], ['state', a.disabled ? 'disabled' : 'active'],
    ['vehicle', v ? `${v.type} · ${v.make} ${v.model} · ${v.color} · ${v.plate}` : undefined],
    ['since', a.created_at.slice(0, 10)]]);
  html += `<p><button type="button" id="acct-toggle">${a.disabled ? 'Enable' : 'Disable'}</button>
    <button type="button" id="acct-reset">Reset password</button>
    <button type="button" id="acct-delete" class="danger">Delete</button></p>
    <p id="acct-said" class="muted"></p>`;
  if (a.role !== 'operator') {
    html += `<form id="acct-edit"><h4>Edit</h4>
      <label>Name <input name="name" value="${esc(a.name)}" maxlength="100" required></label>
      <label>Phone <input name="phone" value="${esc(a.phone || '')}" maxlength="32"></label>` +
      (v ? ['make', 'model', 'color', 'plate'].map(k =>
        `<label>${k[0].toUpperCase() + k.slice(1)} <input name="${k}" value="${esc(v[k])}" required></label>`).join('') : '') +
      '<button type="submit" id="acct-save">Save</button></form>';
  }
  $('acct-detail').innerHTML = html;
  $('acct-toggle').addEventListener('click', () => accountsPatch(a, { disabled: !a.disabled }));
  $('acct-reset').addEventListener('click', () => accountsReset(a));
  $('acct-delete').addEventListener('click', () => accountsDelete(a));
  const form = $('acct-edit');
  if (form) form.addEventListener('submit', ev => { ev.preventDefault(); accountsPatch(a, accountsEdits(a, form)); });
}

// Only what the form changed.
function accountsEdits(a, form) {
  const f = Object.fromEntries(new FormData(form));
  const body = {};
  if (f.name !== a.name) body.name = f.name;
  const phone = f.phone.trim() || null;
  if (phone !== (a.phone || null)) body.phone = phone;
  if (a.vehicle) {
    const v = {};
    for (const k of ['make', 'model', 'color', 'plate']) if (f[k] !== a.vehicle[k]) v[k] = f[k];
    if (Object.keys(v).length) body.vehicle = v;
  }
  return body;
}

async function accountsPatch(a, body) {
  const r = await api('PATCH', `/v1/admin/${a.role}s/${a.id}`, body);
  if (r.status !== 200) {
    $('acct-said').textContent = (r.json && r.json.detail) || `not changed (${r.status})`;
    $('acct-said').className = 'error';
    return;
  }
  accountsRefresh(r.json);
  $('acct-said').textContent = 'disabled' in body ? (body.disabled ? 'disabled: signed out everywhere' : 'enabled') : 'saved';
}

async function accountsReset(a) {
  const r = await api('POST', `/v1/admin/${a.role}s/${a.id}/password-reset`);
  if (r.status !== 201) {
    $('acct-said').textContent = (r.json && r.json.detail) || `no link (${r.status})`;
    return;
  }
  const link = location.origin + r.json.path;
  $('acct-said').innerHTML = `Pass this link on (works once, until ${esc(r.json.expires_at.slice(0, 16).replace('T', ' '))} UTC):` +
    `<input id="acct-link" readonly value="${esc(link)}">`;
}

async function accountsDelete(a) {
  if (!window.confirm(`Delete ${a.name}? Their trips stay; their name, email, phone and plate are erased.`)) return;
  const r = await api('DELETE', `/v1/admin/${a.role}s/${a.id}`);
  if (r.status !== 204) {
    $('acct-said').textContent = (r.json && r.json.detail) || `not deleted (${r.status})`;
    return;
  }
  accounts.items.delete(a.id);
  const li = document.querySelector(`#acct-list li[data-account="${a.id}"]`);
  if (li) li.remove();
  $('acct-detail').innerHTML = '<p class="muted">deleted</p>';
}

// ------------------------------------------------------------ a reset link: /console#reset=<token>

function accountsResetPage(token) {
  $('signin').hidden = true;
  $('desk').hidden = true;
  $('reset').hidden = false;
  $('reset-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    if ($('reset-password').value !== $('reset-again').value) {
      $('reset-said').textContent = 'the two passwords differ';
      return;
    }
    const r = await api('POST', '/v1/auth/password-reset', { token, password: $('reset-password').value });
    if (r.status === 204) {
      history.replaceState(null, '', location.pathname);
      $('reset-form').hidden = true;
      $('reset-said').className = '';
      $('reset-said').textContent = 'Your password is set: sign in with it in your app.';
    } else {
      $('reset-said').textContent = (r.json && r.json.detail) || `not set (${r.status})`;
    }
  });
}

window.addEventListener('DOMContentLoaded', () => {
  $('acct-form').addEventListener('submit', ev => { ev.preventDefault(); accountsSearch(false); });
  $('acct-more').addEventListener('click', () => accountsSearch(true));
  const m = /^#reset=([A-Za-z0-9_-]{43})$/.exec(location.hash);
  if (m) accountsResetPage(m[1]);
});
