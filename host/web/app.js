// keygate's API Keys page. No framework, no build step, nothing from
// another origin. Every value shown is set with textContent (never parsed
// as HTML). A new key lives only in the one-time dialog's field and one
// variable, both emptied when the dialog closes; it is never stored in
// localStorage, sessionStorage, a cookie, the URL or the console.
'use strict';

const state = {
  csrf: null,
  token: null, // {id, name, organization, read_only}
  org: null,
  orgs: [],
  projects: [],
  keys: [],
  sort: { by: 'created', dir: 1 },
  createFor: null, // null: organization-level; a project: project-level
  confirmAction: null,
  opener: null,
};

const $ = (id) => document.getElementById(id);
const CSRF_KEY = 'keygate.csrf';

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else if (k.startsWith('aria-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.csrf) headers['X-Keygate-CSRF'] = state.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return null;
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    data = null;
  }
  if (!r.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(r.status, e.code || 'http', e.message || `the service answered ${r.status}`);
    if (r.status === 401 && path !== '/v1/session') signedOut('Your session ended. Sign in again.');
    throw err;
  }
  return data;
}

// ------------------------------------------------------------- time text

function parseTime(t) {
  return t ? Date.parse(t) : null;
}

function relative(t) {
  if (t == null) return '';
  const s = Math.round((t - Date.now()) / 1000);
  const a = Math.abs(s);
  const [n, unit] =
    a < 60 ? [a, 'second'] : a < 3600 ? [Math.round(a / 60), 'minute'] : a < 86400 ? [Math.round(a / 3600), 'hour'] : [Math.round(a / 86400), 'day'];
  if (a < 45) return s > 0 ? 'in a few seconds' : 'just now';
  const words = `${n} ${unit}${n === 1 ? '' : 's'}`;
  return s >= 0 ? `in ${words}` : `${words} ago`;
}

function absolute(t) {
  return t == null ? '' : new Date(t).toISOString().replace('.000Z', 'Z');
}

function timeCell(t, empty) {
  if (t == null) return el('span', { text: empty, class: 'muted' });
  return el('time', { text: relative(t), title: absolute(t), dateTime: absolute(t) });
}

// ------------------------------------------------------------- sign-in

function show(view) {
  $('signin-view').hidden = view !== 'signin';
  $('app-view').hidden = view !== 'app';
}

function signedOut(message) {
  state.csrf = null;
  sessionStorage.removeItem(CSRF_KEY);
  state.token = null;
  state.keys = [];
  state.projects = [];
  $('keys-body').replaceChildren();
  $('projects-body').replaceChildren();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('signin-error').textContent = message || '';
  show('signin');
  $('signin-token').focus();
}

async function signIn(token) {
  const s = await api('POST', '/v1/session', { token });
  await started(s);
}

async function started(s) {
  state.csrf = s.csrf;
  // Kept for reloads of this tab; unlike the cookie, sessionStorage is not
  // shared with other ports of the host.
  sessionStorage.setItem(CSRF_KEY, s.csrf);
  state.token = s.token;
  $('who').textContent = `${s.token.name}${s.token.read_only ? ' (read-only)' : ''}`;
  show('app');
  await loadOrgs();
}

async function loadOrgs() {
  const picker = $('org-picker');
  state.orgs = await api('GET', '/v1/orgs');
  picker.replaceChildren(...state.orgs.map((o) => el('option', { value: o.slug, text: o.name === o.slug ? o.slug : `${o.name} (${o.slug})` })));
  picker.disabled = state.orgs.length <= 1;
  if (state.orgs.length === 0) {
    state.org = null;
    $('notice').textContent = 'No organization yet: create one with `keygate org create SLUG`, then reload.';
    renderKeys();
    renderProjects();
    return;
  }
  const keep = state.orgs.find((o) => o.slug === state.org);
  state.org = keep ? keep.slug : state.orgs[0].slug;
  picker.value = state.org;
  await refresh();
}

function currentOrg() {
  return state.orgs.find((o) => o.slug === state.org) || null;
}

async function refresh() {
  if (!state.org) return;
  const lost = () => document.activeElement === document.body || !document.activeElement;
  const q = encodeURIComponent(state.org);
  const [projects, keys] = await Promise.all([api('GET', `/v1/projects?org=${q}`), api('GET', `/v1/keys?org=${q}`)]);
  state.projects = projects;
  state.keys = keys;
  const pf = $('filter-project');
  const chosen = pf.value;
  pf.replaceChildren(el('option', { value: '', text: 'All' }), ...projects.map((p) => el('option', { value: p.id, text: p.name })));
  pf.value = projects.some((p) => p.id === chosen) ? chosen : '';
  renderKeys();
  renderProjects();
  // The button that acted was redrawn: keep the keyboard in the page.
  if (lost()) $('main').focus();
}

// ------------------------------------------------------------- keys view

function projectName(id) {
  const p = state.projects.find((x) => x.id === id);
  return p ? p.name : `${id} (deleted)`;
}

function accessText(k) {
  if (k.level === 'project') return projectName(k.project);
  if (k.access.all_projects) return 'All projects, including future ones';
  return k.access.projects.map(projectName).join(', ');
}

const REASONS = {
  expired: 'expired',
  disabled: 'disabled',
  'not-yet-valid': 'not yet valid',
  'lifetime-exceeds-policy': 'outside the key policy',
  'signature-invalid': 'bad signature',
  'predates-organization': 'older than its organization',
};

function statusText(k) {
  if (!k.inactive_reason) return k.rotated_to ? 'Active (rotated, in its grace period)' : 'Active';
  return `Inactive (${REASONS[k.inactive_reason] || k.inactive_reason})`;
}

function expiryPolicyText(k) {
  if (k.expiry_policy === 'never') return 'No expiry';
  return `${k.expiry_policy.replace('d', '')} days`;
}

function sortValue(k, by) {
  switch (by) {
    case 'name':
      return k.name.toLowerCase();
    case 'status':
      return statusText(k);
    case 'expires':
      return parseTime(k.expires_at) ?? Number.MAX_SAFE_INTEGER;
    case 'used':
      return parseTime(k.last_used_at) ?? 0;
    default:
      return parseTime(k.created_at);
  }
}

function visibleKeys() {
  const status = $('filter-status').value;
  const level = $('filter-level').value;
  const project = $('filter-project').value;
  const search = $('filter-search').value.trim().toLowerCase();
  const shown = state.keys.filter((k) => {
    if (status && k.status !== status) return false;
    if (level && k.level !== level) return false;
    if (project) {
      const acts = k.level === 'project' ? k.project === project : k.access.all_projects || k.access.projects.includes(project);
      if (!acts) return false;
    }
    if (search && !k.name.toLowerCase().includes(search) && !k.id.toLowerCase().includes(search)) return false;
    return true;
  });
  const { by, dir } = state.sort;
  shown.sort((a, b) => {
    const x = sortValue(a, by);
    const y = sortValue(b, by);
    return (x < y ? -1 : x > y ? 1 : 0) * dir || a.id.localeCompare(b.id);
  });
  return shown;
}

function actionButton(text, label, onClick, cls) {
  const b = el('button', { type: 'button', text, class: cls || '' });
  b.setAttribute('aria-label', label);
  b.addEventListener('click', (ev) => onClick(ev.currentTarget));
  return b;
}

function renderKeys() {
  const body = $('keys-body');
  const writable = state.token && !state.token.read_only;
  $('create-key').disabled = !writable || !state.org;
  $('create-key-empty').disabled = !writable;
  const none = state.keys.length === 0;
  $('keys-empty').hidden = !none || !state.org;
  $('keys-table').hidden = none;
  const rows = visibleKeys();
  $('keys-none-match').hidden = none || rows.length > 0;
  for (const th of document.querySelectorAll('#keys-table th')) th.removeAttribute('aria-sort');
  const sorted = document.querySelector(`.sort[data-sort="${state.sort.by}"]`);
  if (sorted) sorted.closest('th').setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
  body.replaceChildren(
    ...rows.map((k) => {
      const actions = el('td', { class: 'actions-cell', 'data-label': 'Actions' });
      if (writable) {
        if (k.inactive_reason === 'disabled') actions.append(actionButton('Enable', `Enable ${k.name}`, () => setStatus(k, 'enable')));
        else actions.append(actionButton('Disable', `Disable ${k.name}`, () => setStatus(k, 'disable')));
        if (!k.rotated_to && k.inactive_reason !== 'disabled') actions.append(actionButton('Rotate', `Rotate ${k.name}`, (b) => confirmRotate(k, b)));
        actions.append(actionButton('Delete', `Delete ${k.name}`, (b) => confirmDelete(k, b), 'danger'));
      }
      const expires = parseTime(k.expires_at);
      const expiryCell = el('td', { 'data-label': 'Expiry' }, el('span', { text: expiryPolicyText(k) }));
      if (expires != null) expiryCell.append(el('br'), timeCell(expires));
      const tr = el(
        'tr',
        { 'data-key-id': k.id },
        el('td', { 'data-label': 'Name' }, el('span', { class: 'name', text: k.name }), el('br'), el('code', { class: 'muted', text: k.id })),
        el('td', { 'data-label': 'Level', text: k.level === 'project' ? `Project: ${projectName(k.project)}` : 'Organization' }),
        el('td', { 'data-label': 'Scope', text: k.scopes.map((s) => (s === 'trigger-workflows' ? 'Trigger Workflows' : s)).join(', ') }),
        el('td', { 'data-label': 'Project access', text: accessText(k) }),
        el('td', { 'data-label': 'Status' }, el('span', { class: k.inactive_reason ? 'badge off' : 'badge on', text: statusText(k) })),
        expiryCell,
        el('td', { 'data-label': 'Created' }, timeCell(parseTime(k.created_at), '')),
        el('td', { 'data-label': 'Last used' }, timeCell(parseTime(k.last_used_at), 'Never')),
        actions,
      );
      return tr;
    }),
  );
}

async function setStatus(k, verb) {
  try {
    await api('POST', `/v1/keys/${encodeURIComponent(k.id)}/${verb}`, {});
    $('notice').textContent = `${verb === 'disable' ? 'Disabled' : 'Enabled'} ${k.name}.`;
    await refresh();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $('notice').textContent = e.message;
  }
}

// ------------------------------------------------------------- dialogs

function openDialog(d, opener) {
  state.opener = opener || document.activeElement;
  d.showModal();
}

function closeDialog(d) {
  if (d.open) d.close();
}

for (const d of document.querySelectorAll('dialog')) {
  d.addEventListener('close', () => {
    if (d.id === 'secret-dialog') forgetSecret();
    const back = state.opener;
    state.opener = null;
    if (back && document.body.contains(back)) back.focus();
  });
}

function confirm(title, text, okText, action, opener, rotate) {
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okText;
  $('confirm-ok').className = rotate ? 'primary' : 'danger';
  $('rotate-fields').hidden = !rotate;
  $('confirm-error').textContent = '';
  state.confirmAction = action;
  openDialog($('confirm-dialog'), opener);
  $('confirm-cancel').focus();
}

function confirmDelete(k, opener) {
  confirm(
    'Delete API key',
    `Delete the key “${k.name}” (${k.id})? Systems using it are refused at once, and it can never be used again.`,
    'Delete key',
    async () => {
      await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`);
      $('notice').textContent = `Deleted ${k.name}.`;
    },
    opener,
  );
}

function confirmRotate(k, opener) {
  confirm(
    'Rotate API key',
    `Make a new key with the settings of “${k.name}”. The new key is shown once; the old one keeps working for the time you choose, then expires.`,
    'Rotate key',
    async () => {
      const grace = Number($('rotate-grace').value);
      const made = await api('POST', `/v1/keys/${encodeURIComponent(k.id)}/rotate`, { grace_seconds: grace });
      await refresh();
      return made;
    },
    opener,
    true,
  );
}

$('confirm-cancel').addEventListener('click', () => closeDialog($('confirm-dialog')));
$('confirm-ok').addEventListener('click', async () => {
  const action = state.confirmAction;
  if (!action) return;
  $('confirm-ok').disabled = true;
  try {
    const made = await action();
    state.confirmAction = null;
    const opener = state.opener;
    closeDialog($('confirm-dialog'));
    if (made && made.key) showSecret(made, opener);
    else await refresh();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $('confirm-error').textContent = e.message;
  } finally {
    $('confirm-ok').disabled = false;
  }
});

// ------------------------------------------------------------- one-time display

let secret = null;

function showSecret(made, opener) {
  secret = made.key;
  made.key = null;
  const input = $('secret-key');
  input.value = secret;
  $('copy-status').textContent = '';
  $('secret-about').textContent = `Key id ${made.id} · ${made.name} · ${made.level === 'project' ? 'project-level' : 'organization-level'}`;
  openDialog($('secret-dialog'), opener);
  input.focus();
  input.select();
}

// Leaving the page (or having it frozen for the back button) forgets a key
// still on display.
window.addEventListener('pagehide', () => {
  if ($('secret-dialog').open) $('secret-dialog').close();
  forgetSecret();
});

function forgetSecret() {
  secret = null;
  const input = $('secret-key');
  input.value = '';
  input.removeAttribute('value');
  $('copy-status').textContent = '';
  $('secret-about').textContent = '';
  refresh().catch(() => {});
}

$('copy-key').addEventListener('click', async () => {
  const input = $('secret-key');
  const status = $('copy-status');
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
    await navigator.clipboard.writeText(secret || input.value);
    status.textContent = 'Copied to the clipboard.';
  } catch (_) {
    input.focus();
    input.select();
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch (_) {
      copied = false;
    }
    status.textContent = copied ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C (⌘C) to copy.';
  }
});
$('close-secret').addEventListener('click', () => closeDialog($('secret-dialog')));

// ------------------------------------------------------------- create

const NAME_MAX = 100;
// Control and invisible formatting characters (Unicode Cc and Cf), as the
// server refuses them.
const HIDDEN = /[\p{Cc}\p{Cf}]/u;

function openCreate(project, opener) {
  state.createFor = project;
  const form = $('create-form');
  form.reset();
  for (const id of ['name-error', 'expiry-error', 'access-error', 'create-error']) $(id).textContent = '';
  $('custom-days').disabled = true;
  $('create-title').textContent = project ? 'Create project key' : 'Create API Key';
  $('create-level').textContent = project
    ? `A project-level key for project “${project.name}”: it can only ever act on this project.`
    : `An organization-level key of ${currentOrg() ? currentOrg().name : state.org}.`;
  $('access-fields').hidden = Boolean(project);
  $('project-choices').replaceChildren(
    ...state.projects.map((p) => el('label', {}, el('input', { type: 'checkbox', value: p.id, name: 'project' }), ` ${p.name}`)),
  );
  if (state.projects.length === 0) $('project-choices').append(el('p', { class: 'muted', text: 'This organization has no project yet.' }));
  const org = currentOrg();
  const policy = org && org.key_policy;
  $('policy-hint').textContent = !policy
    ? ''
    : policy.max_expiry_days
      ? `This organization's key policy: keys expire within ${policy.max_expiry_days} days.`
      : policy.require_expiry
        ? "This organization's key policy: keys must expire."
        : '';
  openDialog($('create-dialog'), opener);
  $('key-name').focus();
}

for (const r of document.querySelectorAll('input[name="expiry"]')) {
  r.addEventListener('change', () => {
    $('custom-days').disabled = r.value !== 'custom' || !r.checked;
    if (r.value === 'custom' && r.checked) $('custom-days').focus();
  });
}

function checkedValue(name) {
  const r = document.querySelector(`input[name="${name}"]:checked`);
  return r ? r.value : null;
}

/// The same checks as the server's, so that most mistakes are said at once.
function readCreateForm() {
  let ok = true;
  const name = $('key-name').value.trim();
  $('name-error').textContent = '';
  $('expiry-error').textContent = '';
  $('access-error').textContent = '';
  if (name === '') {
    $('name-error').textContent = 'Give the key a name.';
    ok = false;
  } else if ([...name].length > NAME_MAX) {
    $('name-error').textContent = `A name has at most ${NAME_MAX} characters.`;
    ok = false;
  } else if (HIDDEN.test(name)) {
    $('name-error').textContent = 'A name cannot hold control or invisible characters.';
    ok = false;
  }
  const expiry = checkedValue('expiry');
  let days = null;
  if (expiry === 'custom') {
    const text = $('custom-days').value.trim();
    days = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(days >= 7 && days <= 90)) {
      $('expiry-error').textContent = 'A custom expiry is a whole number of days from 7 to 90.';
      ok = false;
    }
  } else if (expiry !== 'never') {
    days = Number(expiry);
  }
  const org = currentOrg();
  const policy = org && org.key_policy;
  if (ok && policy && days === null && policy.require_expiry) {
    $('expiry-error').textContent = "This organization's key policy requires an expiry.";
    ok = false;
  } else if (ok && policy && policy.max_expiry_days && days > policy.max_expiry_days) {
    $('expiry-error').textContent = `This organization's key policy allows at most ${policy.max_expiry_days} days.`;
    ok = false;
  }
  const body = { name, expiry_days: days, scopes: [$('key-scope').value] };
  if (state.createFor) {
    body.project = state.createFor.id;
  } else {
    body.org = state.org;
    if (checkedValue('access') === 'selected') {
      const ids = [...document.querySelectorAll('#project-choices input:checked')].map((c) => c.value);
      if (ids.length === 0) {
        $('access-error').textContent = 'Select at least one project, or choose All projects.';
        ok = false;
      }
      body.access = ids;
    } else {
      body.access = 'all-projects';
    }
  }
  return ok ? body : null;
}

$('create-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('create-error').textContent = '';
  const body = readCreateForm();
  if (!body) return;
  $('create-submit').disabled = true;
  try {
    const made = await api('POST', '/v1/keys', body);
    const opener = state.opener;
    closeDialog($('create-dialog'));
    showSecret(made, opener);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $('create-error').textContent = e.message;
  } finally {
    $('create-submit').disabled = false;
  }
});
$('create-cancel').addEventListener('click', () => closeDialog($('create-dialog')));
$('create-key').addEventListener('click', (ev) => openCreate(null, ev.currentTarget));
$('create-key-empty').addEventListener('click', (ev) => openCreate(null, ev.currentTarget));

// ------------------------------------------------------------- projects

function renderProjects() {
  const writable = state.token && !state.token.read_only;
  $('project-form').hidden = !writable || !state.org;
  $('projects-empty').hidden = state.projects.length > 0 || !state.org;
  $('projects-table').hidden = state.projects.length === 0;
  $('projects-body').replaceChildren(
    ...state.projects.map((p) => {
      const own = state.keys.filter((k) => k.level === 'project' && k.project === p.id);
      const actions = el('td', { class: 'actions-cell', 'data-label': 'Actions' });
      actions.append(
        actionButton('Keys', `Keys acting on ${p.name}`, () => {
          $('filter-project').value = p.id;
          view('keys');
          renderKeys();
        }),
      );
      if (writable) {
        actions.append(actionButton('Create project key', `Create a project key for ${p.name}`, (b) => openCreate(p, b)));
        actions.append(actionButton('Delete', `Delete project ${p.name}`, (b) => confirmDeleteProject(p, own, b), 'danger'));
      }
      return el(
        'tr',
        { 'data-project-id': p.id },
        el('td', { 'data-label': 'Name', text: p.name }),
        el('td', { 'data-label': 'ID' }, el('code', { text: p.id })),
        el('td', { 'data-label': 'Created' }, timeCell(parseTime(p.created_at), '')),
        el('td', { 'data-label': 'Project keys', text: String(own.length) }),
        actions,
      );
    }),
  );
}

function confirmDeleteProject(p, own, opener) {
  const keys = own.length === 0 ? 'It has no project-level key.' : `Its ${own.length === 1 ? 'project-level key goes' : `${own.length} project-level keys go`} with it: ${own.map((k) => k.name).join(', ')}.`;
  confirm(
    'Delete project',
    `Delete the project “${p.name}” (${p.id})? ${keys} Keys of the organization stop acting on it.`,
    'Delete project',
    async () => {
      await api('DELETE', `/v1/projects/${encodeURIComponent(p.id)}`);
      $('notice').textContent = `Deleted project ${p.name}.`;
    },
    opener,
  );
}

$('project-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('project-name').value.trim();
  $('project-error').textContent = '';
  if (name === '') {
    $('project-error').textContent = 'Give the project a name.';
    return;
  }
  try {
    await api('POST', '/v1/projects', { org: state.org, name });
    $('project-name').value = '';
    $('notice').textContent = `Created project ${name}.`;
    await refresh();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $('project-error').textContent = e.message;
  }
});

// ------------------------------------------------------------- wiring

function view(which) {
  $('keys-view').hidden = which !== 'keys';
  $('projects-view').hidden = which !== 'projects';
  $('tab-keys').setAttribute('aria-current', which === 'keys' ? 'page' : 'false');
  $('tab-projects').setAttribute('aria-current', which === 'projects' ? 'page' : 'false');
}

$('tab-keys').addEventListener('click', () => view('keys'));
$('tab-projects').addEventListener('click', () => view('projects'));
for (const id of ['filter-status', 'filter-level', 'filter-project']) $(id).addEventListener('change', renderKeys);
$('filter-search').addEventListener('input', renderKeys);
for (const b of document.querySelectorAll('.sort')) {
  b.addEventListener('click', () => {
    const by = b.dataset.sort;
    state.sort = { by, dir: state.sort.by === by ? -state.sort.dir : 1 };
    renderKeys();
  });
}
$('org-picker').addEventListener('change', async () => {
  state.org = $('org-picker').value;
  $('filter-project').value = '';
  await refresh();
});
$('sign-out').addEventListener('click', async () => {
  try {
    await api('DELETE', '/v1/session');
  } finally {
    signedOut('Signed out.');
  }
});
$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('signin-token');
  const token = input.value.trim();
  input.value = '';
  $('signin-error').textContent = '';
  if (!token) {
    $('signin-error').textContent = 'Paste an admin token.';
    return;
  }
  try {
    await signIn(token);
  } catch (e) {
    $('signin-error').textContent = e.message;
  }
});

async function boot() {
  // A sign-in link carries the token in the fragment (never sent to a
  // server): take it, and take it out of the address bar and history.
  const hash = location.hash;
  if (hash.startsWith('#token=')) {
    history.replaceState(null, '', location.pathname + location.search);
    try {
      await signIn(decodeURIComponent(hash.slice('#token='.length)));
      $('notice').textContent +=
        ' Signed in with the first-run token. Make your own admin tokens (keygate admin-token create) and revoke this one: its link stays in this browser\'s history.';
    } catch (e) {
      signedOut(e instanceof URIError ? 'That sign-in link is damaged.' : e.message);
    }
    return;
  }
  state.csrf = sessionStorage.getItem(CSRF_KEY);
  try {
    const s = await api('GET', '/v1/session');
    if (s && s.session) await started(s.session);
    else signedOut('');
  } catch (_) {
    signedOut('');
  }
}

boot();
$('filters').addEventListener('submit', (ev) => ev.preventDefault());
