// The operator's console: sign in, draw the city from GET /v1/map/roads, and
// keep the drivers and open trips live from the operator's WebSocket
// (console.subscribe, then console.update once a second: docs/console.md).
'use strict';

const CODES = { 1: 'available', 2: 'offered', 3: 'en_route', 4: 'on_trip', 5: 'suspect' };
const COLOURS = { available: '#2e7d32', offered: '#f9a825', en_route: '#1565c0', on_trip: '#6a1b9a', suspect: '#c62828' };
const ROAD_STYLE = {
  motorway: ['#e0a96d', 3], trunk: ['#e0b97d', 2.6], primary: ['#d8c48e', 2.2], secondary: ['#cfcfb0', 1.8],
  tertiary: ['#bdbdbd', 1.5], unclassified: ['#c6c6c6', 1.1], residential: ['#cbcbcb', 1], service: ['#dedede', 0.7],
};

// What the page knows; tests read it (window.ridehailConsole).
const state = {
  token: null, subject: null, roads: null, bbox: null,
  drivers: new Map(),   // slot -> {id, lat, lng, code}
  trips: new Map(),     // id -> trip
  figures: null, seq: 0, updates: 0, connected: false, firstPaintMs: null, roadsDrawnMs: null,
  selected: null,
};
window.ridehailConsole = state;
// The colour drawn at a point of the map, [r, g, b, a] (for tests and for
// checking a screen by hand from the browser's console).
// Where a point of the map is on the page (CSS pixels), for tests.
state.clientOf = (lat, lng) => {
  const [x, y] = toScreen(lat, lng);
  const box = canvas.getBoundingClientRect();
  return [box.left + x / dpr, box.top + y / dpr];
};
state.pixelAt = (lat, lng) => {
  const [x, y] = toScreen(lat, lng);
  return Array.from(ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data);
};

const $ = id => document.getElementById(id);

function uuid4() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  return { status: r.status, json };
}

// ------------------------------------------------------------ sign in

async function signIn(ev) {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const r = await api('POST', '/v1/auth/login',
    { role: 'operator', email: $('email').value.trim(), password: $('password').value });
  if (r.status !== 200) {
    $('signin-error').textContent = (r.json && r.json.detail) || ('sign-in failed (' + r.status + ')');
    return;
  }
  sessionStorage.setItem('ridehail.console', JSON.stringify({ token: r.json.token, subject: r.json.subject }));
  start(r.json.token, r.json.subject);
}

function signOut() {
  sessionStorage.removeItem('ridehail.console');
  location.reload();
}

function start(token, subject) {
  state.token = token;
  state.subject = subject;
  $('signin').hidden = true;
  $('desk').hidden = false;
  resize();
  loadRoads();
  connect();
}

// ------------------------------------------------------------ the map

const view = { scale: 1, cx: 0, cy: 0, ready: false };
let canvas, ctx, dpr = 1, roadLayer = null, drawQueued = false;

function project(lat, lng) { // equirectangular about the map's centre, in metres
  const k = Math.PI / 180 * 6371008.8;
  return [(lng - view.lng0) * k * view.cos0, (lat - view.lat0) * k];
}
function toScreen(lat, lng) {
  const [x, y] = project(lat, lng);
  return [canvas.width / 2 + (x - view.cx) * view.scale, canvas.height / 2 - (y - view.cy) * view.scale];
}
function fromScreen(sx, sy) {
  return [(sx - canvas.width / 2) / view.scale + view.cx, -(sy - canvas.height / 2) / view.scale + view.cy];
}
function latLngAt(sx, sy) {
  const [x, y] = fromScreen(sx, sy);
  const k = Math.PI / 180 * 6371008.8;
  return [y / k + view.lat0, x / (k * view.cos0) + view.lng0];
}

function fit(bbox) {
  const [w, s, e, n] = bbox;
  view.lat0 = (s + n) / 2; view.lng0 = (w + e) / 2; view.cos0 = Math.cos(view.lat0 * Math.PI / 180);
  const [x0, y0] = project(s, w), [x1, y1] = project(n, e);
  view.cx = (x0 + x1) / 2; view.cy = (y0 + y1) / 2;
  view.scale = 0.92 * Math.min(canvas.width / Math.max(1, x1 - x0), canvas.height / Math.max(1, y1 - y0));
  view.ready = true;
}

async function loadRoads() {
  const t0 = performance.now();
  const r = await fetch('/v1/map/roads');
  if (r.status !== 200) {
    state.roads = { features: [] };
    $('details').innerHTML = '<p class="muted">No road map is loaded (routing.map): drivers are drawn on a blank map.</p>';
    return;
  }
  state.roads = await r.json();
  state.bbox = state.roads.bbox;
  fit(state.bbox);
  roadLayer = null;
  draw();
  state.roadsDrawnMs = performance.now() - t0;
}

function renderRoads() {
  roadLayer = document.createElement('canvas');
  roadLayer.width = canvas.width; roadLayer.height = canvas.height;
  const g = roadLayer.getContext('2d');
  g.lineCap = 'round'; g.lineJoin = 'round';
  const feats = (state.roads && state.roads.features) || [];
  for (let i = feats.length - 1; i >= 0; i--) { // minor roads under major ones
    const f = feats[i];
    const [colour, width] = ROAD_STYLE[f.properties.class] || ['#ddd', 1];
    g.strokeStyle = colour;
    g.lineWidth = Math.max(0.6, width * dpr * Math.min(2.5, Math.max(0.5, view.scale * 2)));
    g.beginPath();
    for (const line of f.geometry.coordinates) {
      line.forEach(([lng, lat], j) => {
        const [x, y] = toScreen(lat, lng);
        if (j === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
    }
    g.stroke();
  }
}

function draw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    paint();
  });
}

function paint() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!view.ready && state.drivers.size) { // no map: fit the drivers
    let s = 90, n = -90, w = 180, e = -180;
    for (const d of state.drivers.values()) { s = Math.min(s, d.lat); n = Math.max(n, d.lat); w = Math.min(w, d.lng); e = Math.max(e, d.lng); }
    fit([w - 0.01, s - 0.01, e + 0.01, n + 0.01]);
  }
  if (!view.ready) return;
  if (state.roads && !roadLayer) renderRoads();
  if (roadLayer) ctx.drawImage(roadLayer, 0, 0);
  const r = 4 * dpr;
  // open trips: pickup ring, dropoff square, a thin line between
  for (const t of state.trips.values()) {
    const [px, py] = toScreen(t.pickup[0], t.pickup[1]);
    const [qx, qy] = toScreen(t.dropoff[0], t.dropoff[1]);
    const sel = state.selected && state.selected.trip === t.id;
    ctx.strokeStyle = sel ? '#d84315' : 'rgba(216,67,21,.35)';
    ctx.lineWidth = (sel ? 2 : 1) * dpr;
    ctx.setLineDash([4 * dpr, 4 * dpr]);
    ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(qx, qy); ctx.stroke();
    ctx.setLineDash([]);
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = '#d84315';
    ctx.beginPath(); ctx.arc(px, py, r + 2 * dpr, 0, 2 * Math.PI); ctx.stroke();
    ctx.strokeRect(qx - r, qy - r, 2 * r, 2 * r);
  }
  for (const d of state.drivers.values()) {
    const [x, y] = toScreen(d.lat, d.lng);
    ctx.fillStyle = COLOURS[CODES[d.code]] || '#000';
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
    if (state.selected && state.selected.driver === d.id) {
      ctx.strokeStyle = '#000'; ctx.lineWidth = 2 * dpr;
      ctx.beginPath(); ctx.arc(x, y, r + 3 * dpr, 0, 2 * Math.PI); ctx.stroke();
    }
  }
  for (const which of ['pickup', 'dropoff']) { // the booking being made
    if (!booking[which]) continue;
    const [x, y] = toScreen(booking[which][0], booking[which][1]);
    ctx.fillStyle = which === 'pickup' ? '#d84315' : '#37474f';
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x - 6 * dpr, y - 14 * dpr); ctx.lineTo(x + 6 * dpr, y - 14 * dpr); ctx.fill();
  }
  if (state.firstPaintMs === null && state.roads && state.updates > 0) state.firstPaintMs = performance.now();
}

function resize() {
  canvas = $('map');
  ctx = canvas.getContext('2d');
  dpr = window.devicePixelRatio || 1;
  const box = canvas.getBoundingClientRect();
  const keep = view.ready ? { scale: view.scale / (canvas.width || 1) } : null;
  canvas.width = Math.max(1, Math.round(box.width * dpr));
  canvas.height = Math.max(1, Math.round(box.height * dpr));
  if (keep && state.bbox) fit(state.bbox);
  roadLayer = null;
  draw();
}

function setupPanZoom() {
  const c = $('map');
  let drag = null;
  c.addEventListener('mousedown', e => { drag = { x: e.clientX, y: e.clientY, moved: false }; });
  window.addEventListener('mouseup', e => {
    if (drag && !drag.moved) pick(e);
    drag = null; c.style.cursor = 'grab';
  });
  window.addEventListener('mousemove', e => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (!drag.moved) return;
    c.style.cursor = 'grabbing';
    view.cx -= dx * dpr / view.scale; view.cy += dy * dpr / view.scale;
    drag.x = e.clientX; drag.y = e.clientY;
    roadLayer = null; draw();
  });
  c.addEventListener('wheel', e => {
    e.preventDefault();
    const box = c.getBoundingClientRect();
    const sx = (e.clientX - box.left) * dpr, sy = (e.clientY - box.top) * dpr;
    const [mx, my] = fromScreen(sx, sy);
    view.scale *= Math.exp(-e.deltaY * 0.0015);
    const [nx, ny] = fromScreen(sx, sy);
    view.cx += mx - nx; view.cy += my - ny;
    roadLayer = null; draw();
  }, { passive: false });
}

// ------------------------------------------------------------ picking, details

function pick(e) {
  const box = canvas.getBoundingClientRect();
  const sx = (e.clientX - box.left) * dpr, sy = (e.clientY - box.top) * dpr;
  if (booking.placing) { // the booking form asked for a point
    const [lat, lng] = latLngAt(sx, sy);
    setPlace(booking.placing, lat, lng);
    return;
  }
  let best = null, bestD = (12 * dpr) ** 2;
  for (const d of state.drivers.values()) {
    const [x, y] = toScreen(d.lat, d.lng);
    const dd = (x - sx) ** 2 + (y - sy) ** 2;
    if (dd < bestD) { bestD = dd; best = { driver: d.id }; }
  }
  for (const t of state.trips.values()) {
    const [x, y] = toScreen(t.pickup[0], t.pickup[1]);
    const dd = (x - sx) ** 2 + (y - sy) ** 2;
    if (dd < bestD) { bestD = dd; best = { trip: t.id }; }
  }
  if (best) select(best);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
function dl(rows) {
  return '<dl>' + rows.filter(r => r[1] !== undefined && r[1] !== null)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('') + '</dl>';
}

async function select(sel) {
  state.selected = sel;
  draw();
  if (sel.driver) {
    const d = [...state.drivers.values()].find(x => x.id === sel.driver);
    const trip = [...state.trips.values()].find(t => t.driver_id === sel.driver);
    $('details').innerHTML = '<h3>Driver</h3>' + dl([
      ['id', sel.driver], ['state', d ? CODES[d.code].replace('_', ' ') : 'off the map'],
      ['position', d ? `${d.lat.toFixed(5)}, ${d.lng.toFixed(5)}` : undefined],
      ['trip', trip ? trip.id : undefined]]);
    if (trip) {
      const a = document.createElement('button');
      a.textContent = 'Show the trip';
      a.addEventListener('click', () => select({ trip: trip.id }));
      $('details').appendChild(a);
    }
    return;
  }
  const r = await api('GET', '/v1/rides/' + encodeURIComponent(sel.trip));
  if (state.selected !== sel) return;
  if (r.status !== 200) {
    $('details').innerHTML = `<p class="error">trip ${esc(sel.trip)}: ${r.status}</p>`;
    return;
  }
  const t = r.json;
  const tl = (t.timeline || []).map(e =>
    `<li>${esc(e.at.slice(11, 19))} ${esc(e.from ? e.from + ' → ' : '')}${esc(e.to)} <span class="muted">by ${esc(e.by)}</span></li>`).join('');
  $('details').innerHTML = '<h3>Trip</h3>' + dl([
    ['id', t.id], ['state', t.state], ['vehicle', t.vehicle_type], ['rider', t.rider_id],
    ['driver', t.driver ? `${t.driver.name} (${t.driver.vehicle.plate})` : undefined],
    ['pickup', t.pickup.address || `${t.pickup.lat}, ${t.pickup.lng}`],
    ['dropoff', t.dropoff.address || `${t.dropoff.lat}, ${t.dropoff.lng}`],
    ['fare', t.fare ? `${(t.fare.quoted / 100).toFixed(2)} ${t.fare.currency}` : undefined],
    ['requested', t.requested_at], ['scheduled for', t.scheduled_at]]) + '<h4>Timeline</h4><ol id="timeline">' + tl + '</ol>';
  actions(t);
}

// ------------------------------------------------------------ dispatcher actions

function metresBetween(a, b) {
  const k = Math.PI / 180 * 6371008.8;
  const x = (b[1] - a[1]) * k * Math.cos((a[0] + b[0]) / 2 * Math.PI / 180), y = (b[0] - a[0]) * k;
  return Math.hypot(x, y);
}

// Assign by hand (the nearest available drivers, straight line), and cancel
// with a reason: the REST transitions, recorded with the operator's id.
function actions(t) {
  const box = document.createElement('div');
  box.id = 'actions';
  const open = ['SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS'].includes(t.state);
  if (t.state === 'SEARCHING') {
    const near = [...state.drivers.values()].filter(d => d.code === 1 && d.id)
      .map(d => ({ d, m: metresBetween([t.pickup.lat, t.pickup.lng], [d.lat, d.lng]) }))
      .sort((a, b) => a.m - b.m).slice(0, 5);
    const h = document.createElement('h4');
    h.textContent = near.length ? 'Assign a driver' : 'No driver available on the map';
    box.appendChild(h);
    for (const { d, m } of near) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'assign';
      b.dataset.driver = d.id;
      b.textContent = `${d.id.slice(0, 8)} · ${m < 1000 ? Math.round(m) + ' m' : (m / 1000).toFixed(1) + ' km'}`;
      b.addEventListener('click', () => act(t.id, 'assign', { driver_id: d.id }));
      box.appendChild(b);
    }
  }
  if (open) {
    const h = document.createElement('h4');
    h.textContent = 'Cancel';
    const reason = document.createElement('input');
    reason.id = 'cancel-reason';
    reason.placeholder = 'reason (e.g. rider called to cancel)';
    reason.maxLength = 64;
    const b = document.createElement('button');
    b.type = 'button';
    b.id = 'cancel-trip';
    b.textContent = 'Cancel the trip';
    b.addEventListener('click', () => {
      const r = reason.value.trim();
      act(t.id, 'cancel', r ? { reason: r } : {});
    });
    box.append(h, reason, b);
  }
  const msg = document.createElement('p');
  msg.id = 'action-result';
  msg.className = 'error';
  box.appendChild(msg);
  $('details').appendChild(box);
}

async function act(tripId, what, body) {
  const r = await api('POST', `/v1/rides/${encodeURIComponent(tripId)}/${what}`, body);
  if (r.status !== 200) {
    $('action-result').textContent = (r.json && r.json.detail) || `${what} failed (${r.status})`;
    return;
  }
  select({ trip: tripId }); // the details again, with the new timeline row
}

// ------------------------------------------------------------ bookings by phone

// The form on the right: the caller's phone (and name), pickup and dropoff
// clicked on the map; the rider found or made (POST /v1/dispatch/riders),
// then the ride booked for them (POST /v1/rides with rider_id): kept even
// with no driver online, and recorded as the operator's.
const booking = { placing: null, pickup: null, dropoff: null };
state.booking = booking;

function setPlace(which, lat, lng) {
  booking[which] = [Number(lat.toFixed(6)), Number(lng.toFixed(6))];
  booking.placing = null;
  $('book-' + which).textContent = `${booking[which][0].toFixed(5)}, ${booking[which][1].toFixed(5)}`;
  draw();
}

async function book(ev) {
  ev.preventDefault();
  const out = $('book-result');
  out.className = 'error';
  out.textContent = '';
  if (!booking.pickup || !booking.dropoff) { out.textContent = 'set the pickup and the dropoff on the map'; return; }
  const who = { phone: $('book-phone').value.trim() };
  if ($('book-name').value.trim()) who.name = $('book-name').value.trim();
  const r = await api('POST', '/v1/dispatch/riders', who);
  if (r.status !== 200 && r.status !== 201) { out.textContent = (r.json && r.json.detail) || `rider: ${r.status}`; return; }
  const body = { rider_id: r.json.id, pickup: { lat: booking.pickup[0], lng: booking.pickup[1] },
                 dropoff: { lat: booking.dropoff[0], lng: booking.dropoff[1] } };
  const t = await api('POST', '/v1/rides', body);
  if (t.status !== 201) { out.textContent = (t.json && t.json.detail) || `booking: ${t.status}`; return; }
  out.className = 'muted';
  out.textContent = `booked for ${r.json.name} (${r.json.phone})`;
  booking.pickup = booking.dropoff = null;
  $('book-phone').value = $('book-name').value = '';
  $('book-pickup').textContent = $('book-dropoff').textContent = 'not set';
  select({ trip: t.json.id });
}

// ------------------------------------------------------------ reports

// The last 7 days as CSV: fetched with the token (a link cannot carry it),
// then saved under the name the daemon gives.
async function report(name) {
  const r = await fetch('/v1/admin/reports/' + name, { headers: { Authorization: 'Bearer ' + state.token } });
  if (r.status !== 200) { alert(`${name}: ${r.status}`); return; }
  const disp = r.headers.get('Content-Disposition') || '';
  const m = /filename="([^"]+)"/.exec(disp);
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await r.blob());
  a.download = m ? m[1] : name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  state.lastReport = a.download;
}

// ------------------------------------------------------------ the live feed

let ws = null, retry = 500;

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(`${proto}//${location.host}/v1/ws`, ['ridehail.v2', 'bearer.' + state.token]);
  ws.onopen = () => {
    retry = 500;
    ws.send(JSON.stringify({
      event_id: uuid4(), event_type: 'console.subscribe', event_version: 1, timestamp: new Date().toISOString(),
      producer: 'console/1', correlation_id: uuid4(), payload: {},
    }));
  };
  ws.onmessage = ev => {
    const m = JSON.parse(ev.data);
    if (m.event_type === 'console.update') apply(m.payload);
    else if (m.event_type === 'command.rejected') console.warn('rejected', m.payload);
  };
  ws.onclose = ev => {
    state.connected = false;
    link(false);
    if (ev.code === 4001 || ev.code === 4003 || ev.code === 1008 && !state.token) { signOut(); return; }
    if (ev.code === 4000) return;
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  };
}

function link(up) {
  $('link').textContent = up ? 'live' : 'offline';
  $('link').className = up ? 'link-up' : 'link-down';
}

function apply(u) {
  if (u.full) { state.drivers.clear(); state.trips.clear(); }
  const ids = new Map(u.driver_ids);
  for (const [slot, lat, lng, code] of u.drivers) {
    const d = state.drivers.get(slot) || { id: null };
    if (ids.has(slot)) d.id = ids.get(slot);
    d.lat = lat; d.lng = lng; d.code = code;
    state.drivers.set(slot, d);
  }
  for (const slot of u.drivers_gone) state.drivers.delete(slot);
  for (const t of u.trips) state.trips.set(t.id, t);
  for (const id of u.trips_gone) state.trips.delete(id);
  state.figures = u.figures;
  state.seq = u.seq;
  state.updates++;
  state.connected = true;
  link(true);
  showFigures(u.figures);
  showAlerts(u.alerts);
  showTrips();
  draw();
}

function secs(p) { return p ? `${p.p50.toFixed(0)} / ${p.p95.toFixed(0)} s` : '–'; }
function pct(x) { return x === null || x === undefined ? '–' : Math.round(x * 100) + '%'; }

function showFigures(f) {
  $('f-online').textContent = f.online;
  $('f-open').textContent = f.open_requests;
  $('f-rate').textContent = pct(f.match_rate);
  $('f-ttm').textContent = secs(f.time_to_match_s);
  $('f-wait').textContent = secs(f.pickup_wait_s);
  $('f-util').textContent = pct(f.utilisation);
  for (const k of ['available', 'offered', 'en_route', 'on_trip', 'suspect']) $('n-' + k).textContent = f[k];
  $('n-trips').textContent = f.open_trips;
}

function showAlerts(alerts) {
  const box = $('alerts');
  box.hidden = !alerts.length;
  box.replaceChildren(...alerts.map(a => {
    const li = document.createElement('li');
    li.dataset.alert = a.name;
    li.textContent = `${a.name.replace('_', ' ')} since ${a.since.slice(11, 19)}: ${a.detail}`;
    return li;
  }));
}

function showTrips() {
  const list = $('trips');
  const rows = [...state.trips.values()].sort((a, b) => (a.requested_at || '').localeCompare(b.requested_at || ''));
  list.replaceChildren(...rows.slice(0, 200).map(t => {
    const li = document.createElement('li');
    li.textContent = `${t.state.toLowerCase()} · ${t.vehicle_type} · ${(t.requested_at || '').slice(11, 19)}`;
    li.dataset.trip = t.id;
    li.addEventListener('click', () => select({ trip: t.id }));
    return li;
  }));
}

// ------------------------------------------------------------ start

window.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  $('book-form').addEventListener('submit', book);
  $('report-daily').addEventListener('click', () => report('daily.csv'));
  $('report-drivers').addEventListener('click', () => report('drivers.csv'));
  for (const which of ['pickup', 'dropoff'])
    $('set-' + which).addEventListener('click', () => { booking.placing = which; $('book-result').textContent = `click the ${which} on the map`; });
  window.addEventListener('resize', resize);
  setupPanZoom();
  const saved = sessionStorage.getItem('ridehail.console');
  if (saved) {
    try { const s = JSON.parse(saved); start(s.token, s.subject); return; } catch (e) { /* sign in again */ }
  }
  $('email').focus();
});
