// Warren dashboard: polls the management API (/api/...) and renders the overview, two live
// charts and the connection, exchange and queue tables. Read-only. Names come from clients,
// so text only ever goes into the page through textContent, never innerHTML.
//
// Signing in: the page's own form checks the user with /api/whoami and keeps the
// Authorization value in sessionStorage (this tab only, gone when it closes); every API call
// sends it explicitly, with credentials: 'omit'. The browser itself never holds Basic
// credentials or cookies for the origin, so requests other sites make it send carry none.
// X-Requested-With asks the API to answer 401 without a WWW-Authenticate challenge, which
// would make the browser prompt for a password and then cache it. Sign out forgets it.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : String(k));
    return e;
  };
  const get = (o, path) => path.split('.').reduce((v, k) => (v == null ? undefined : v[k]), o);

  // ---- formatting -------------------------------------------------------------------------
  const nf = new Intl.NumberFormat('en-US');
  const num = (n) => (n == null ? '–' : nf.format(n));
  const rate = (r) => (r == null ? '–' : (r >= 100 ? nf.format(Math.round(r)) : r.toFixed(1)) + '/s');
  const bytes = (b) => {
    if (b == null) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i === 0 ? b : b.toFixed(b >= 100 ? 0 : 1)) + ' ' + u[i];
  };
  const byteRate = (r) => (r == null ? '–' : bytes(r) + '/s');
  const duration = (ms) => {
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  };
  const compact = (v) => {
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
    return String(Math.round(v * 10) / 10);
  };

  // ---- API --------------------------------------------------------------------------------
  class HTTPError extends Error {
    constructor(status, body) {
      super((body && (body.reason || body.error)) || `HTTP ${status}`);
      this.status = status;
    }
  }

  const AUTH_KEY = 'warren.auth';
  let auth = null; // "Basic ..." of the signed-in user
  try { auth = sessionStorage.getItem(AUTH_KEY); } catch (e) { /* no storage: sign in per page */ }

  // basic encodes user:pass as an Authorization value (UTF-8, as RabbitMQ reads it).
  const basic = (user, pass) => 'Basic ' + btoa(String.fromCharCode(...new TextEncoder().encode(user + ':' + pass)));

  // api fetches path with the signed-in user's credentials (or authz, while signing in). The
  // URL is absolute: fetch refuses a relative URL on a page opened as http://user:pass@host/.
  async function api(path, authz) {
    const headers = { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest' };
    if (authz || auth) headers.Authorization = authz || auth;
    const r = await fetch(location.origin + path, { headers, cache: 'no-store', credentials: 'omit' });
    let body = null;
    try { body = await r.json(); } catch (e) { /* no JSON body */ }
    // The health checks answer 503 with a JSON report while an alarm is in effect.
    if (!r.ok && !(r.status === 503 && path.startsWith('/api/health/'))) throw new HTTPError(r.status, body);
    return body;
  }

  // ---- banners (alarms, errors) -----------------------------------------------------------
  const banners = new Map();
  function banner(key, kind, text, link) {
    let b = banners.get(key);
    if (!b) {
      b = el('div', { class: 'banner ' + kind, role: kind === 'alarm' ? 'alert' : 'status' });
      banners.set(key, b);
      $('banners').append(b);
    }
    b.replaceChildren(text);
    if (link) b.append(' ', el('a', { href: link.href }, link.text));
  }
  function unbanner(key) {
    const b = banners.get(key);
    if (b) { b.remove(); banners.delete(key); }
  }

  // ---- charts -----------------------------------------------------------------------------
  const WINDOW = 5 * 60 * 1000; // longest span drawn
  const MIN_SPAN = 10 * 1000;   // shortest x range: the first few points already span the chart

  class Chart {
    constructor(canvas, legend, series, fmt) {
      this.c = canvas;
      this.series = series;
      this.fmt = fmt;
      this.pts = [];
      this.vals = series.map((s) => {
        const v = el('span', { class: 'v', 'data-series': s.key }, '–');
        legend.append(el('li', {}, el('i', { class: 'swatch' + (s.dash ? ' dashed' : ''), 'data-color': s.color }), s.label + ' ', v));
        return v;
      });
      for (const sw of legend.querySelectorAll('.swatch')) sw.style.color = sw.dataset.color;
    }

    push(t, values) {
      this.pts.push({ t, v: values });
      while (this.pts.length > 2 && this.pts[0].t < t - WINDOW) this.pts.shift();
      values.forEach((v, i) => { this.vals[i].textContent = this.fmt(v); });
      this.draw();
    }

    draw() {
      const c = this.c;
      const dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return; // hidden tab: drawn again when shown
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const g = c.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      const L = 52, R = 10, T = 10, B = 22;
      const pw = w - L - R, ph = h - T - B;
      const font = '11px system-ui, "DejaVu Sans", sans-serif';
      g.font = font;

      // y axis: 0 .. a round number above the largest value, four steps
      let max = 0;
      for (const p of this.pts) for (const v of p.v) max = Math.max(max, v);
      const step = niceStep(max / 4);
      const top = step * 4;
      g.strokeStyle = '#e3e7ee';
      g.fillStyle = '#6b7484';
      g.lineWidth = 1;
      g.textAlign = 'right';
      g.textBaseline = 'middle';
      for (let i = 0; i <= 4; i++) {
        const y = Math.round(T + ph - (i / 4) * ph) + 0.5;
        g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
        g.fillText(compact(step * i), L - 6, y);
      }

      // x axis: time, newest at the right edge
      const now = this.pts.length ? this.pts[this.pts.length - 1].t : Date.now();
      const span = Math.min(WINDOW, Math.max(MIN_SPAN, this.pts.length ? now - this.pts[0].t : 0));
      const x = (t) => L + pw - ((now - t) / span) * pw;
      const tick = [5, 10, 15, 30, 60, 120].find((s) => span / (s * 1000) <= 5) * 1000;
      g.textAlign = 'center';
      g.textBaseline = 'top';
      for (let a = 0; a <= span; a += tick) {
        const xx = Math.round(x(now - a)) + 0.5;
        g.beginPath(); g.moveTo(xx, T + ph); g.lineTo(xx, T + ph + 4); g.stroke();
        const m = Math.floor(a / 60000), sec = (a % 60000) / 1000;
        const label = a === 0 ? 'now' : '-' + (m ? m + 'm' : '') + (sec || !m ? sec + 's' : '');
        g.fillText(label, Math.min(xx, L + pw - 12), T + ph + 6);
      }

      // one line per series, clipped to the plot
      g.save();
      g.beginPath(); g.rect(L, T - 2, pw, ph + 4); g.clip();
      g.lineWidth = 2;
      g.lineJoin = 'round';
      this.series.forEach((s, i) => {
        g.strokeStyle = s.color;
        g.fillStyle = s.color;
        g.setLineDash(s.dash || []);
        const y = (v) => T + ph - (v / top) * ph;
        if (this.pts.length === 1) {
          g.beginPath(); g.arc(x(this.pts[0].t), y(this.pts[0].v[i]), 3, 0, 2 * Math.PI); g.fill();
          return;
        }
        g.beginPath();
        this.pts.forEach((p, j) => (j ? g.lineTo(x(p.t), y(p.v[i])) : g.moveTo(x(p.t), y(p.v[i]))));
        g.stroke();
      });
      g.restore();
      g.strokeStyle = '#b8c0cc';
      g.lineWidth = 1;
      g.beginPath(); g.moveTo(L + 0.5, T); g.lineTo(L + 0.5, T + ph + 0.5); g.lineTo(L + pw, T + ph + 0.5); g.stroke();
    }
  }

  // niceStep rounds x up to 1, 2, 2.5 or 5 times a power of ten (at least 1).
  function niceStep(x) {
    if (!(x > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    const m = [1, 2, 2.5, 5, 10].find((k) => k * p >= x);
    return Math.max(m * p, x < 1 ? 0.25 : 1);
  }

  const ratesChart = new Chart($('rates-chart'), $('rates-legend'), [
    { key: 'publish', label: 'Publish', color: '#2f6fde' },
    { key: 'deliver_get', label: 'Deliver / get', color: '#1c9b6b' },
    { key: 'ack', label: 'Ack', color: '#e08a1e', dash: [6, 4] }, // dashed: often equal to deliver
  ], rate);
  const queuedChart = new Chart($('queued-chart'), $('queued-legend'), [
    { key: 'ready', label: 'Ready', color: '#2f6fde' },
    { key: 'unacked', label: 'Unacked', color: '#d6453d' },
  ], num);

  // ---- overview and node ------------------------------------------------------------------
  async function loadOverview() {
    const o = await api('/api/overview');
    $('version').textContent = `${o.product_version || ''}`;
    $('version').title = `RabbitMQ ${o.rabbitmq_version} management API`;
    $('node').textContent = o.node || '–';
    const ot = o.object_totals || {}, qt = o.queue_totals || {}, ms = o.message_stats || {};
    for (const k of ['connections', 'channels', 'exchanges', 'queues', 'consumers']) $('t-' + k).textContent = num(ot[k]);
    $('t-ready').textContent = num(qt.messages_ready);
    $('t-unacked').textContent = num(qt.messages_unacknowledged);
    $('t-messages').textContent = num(qt.messages);
    $('n-runtime').textContent = o.erlang_version || '–';
    const t = Date.now();
    const r = (k) => get(ms, k + '_details.rate') || 0;
    ratesChart.push(t, [r('publish'), r('deliver_get'), r('ack')]);
    queuedChart.push(t, [qt.messages_ready || 0, qt.messages_unacknowledged || 0]);
  }

  const alarms = { node: [], health: [] };
  function showAlarms() {
    const all = [...new Set([...alarms.node, ...alarms.health])];
    $('n-alarms').replaceChildren(all.length ? el('span', { class: 'badge bad' }, all.join(', ')) : el('span', { class: 'badge ok' }, 'none'));
    if (all.length) banner('alarm', 'alarm', `Resource alarm in effect (${all.join(', ')}): publishing connections are blocked.`);
    else unbanner('alarm');
  }

  function usage(used, limit, alarm) {
    const frac = limit ? Math.min(1, used / limit) : 0;
    const bar = el('span', { class: 'bar' + (alarm ? ' bad' : '') }, el('span'));
    bar.firstChild.style.width = (frac * 100).toFixed(1) + '%';
    return [bar, el('span', {}, `${bytes(used)} / ${bytes(limit)}`)];
  }

  async function loadNode() {
    const ns = await api('/api/nodes');
    const n = ns && ns[0];
    if (!n) return;
    $('uptime').textContent = duration(n.uptime || 0);
    $('n-name').textContent = n.name;
    $('n-mem').replaceChildren(...usage(n.mem_used, n.mem_limit, n.mem_alarm));
    $('n-mem').title = 'used / high watermark';
    $('n-disk').replaceChildren(el('span', {}, `${bytes(n.disk_free)} (limit ${bytes(n.disk_free_limit)})`));
    $('n-fd').textContent = `${num(n.fd_used)} / ${num(n.fd_total)}`;
    $('n-sockets').textContent = num(n.sockets_used);
    $('n-procs').textContent = num(n.proc_used);
    alarms.node = [];
    if (n.mem_alarm) alarms.node.push('memory');
    if (n.disk_free_alarm) alarms.node.push('disk');
    showAlarms();
  }

  async function loadAlarms() {
    const h = await api('/api/health/checks/alarms');
    alarms.health = (h && h.status === 'failed')
      // RabbitMQ names the disk alarm's resource "disk space" (older versions "disk_free").
      ? (h.alarms || [{ resource: h.reason || 'unknown' }]).map((a) => (a.resource === 'disk space' || a.resource === 'disk_free' ? 'disk' : a.resource))
      : [];
    showAlarms();
  }

  // ---- tables -----------------------------------------------------------------------------
  const badge = (text, title, cls) => el('span', { class: 'badge ' + (cls || ''), title }, text);
  const state = (v) => badge(v || '–', '', v === 'running' ? 'ok' : 'warn');
  const features = (o) => {
    const f = el('span', { class: 'features' });
    if (o.durable) f.append(badge('D', 'durable'));
    if (o.auto_delete) f.append(badge('AD', 'auto-delete'));
    if (o.exclusive) f.append(badge('Excl', 'exclusive'));
    if (o.internal) f.append(badge('I', 'internal'));
    const args = Object.keys(o.arguments || {});
    if (args.length) f.append(badge('Args', args.join(', ')));
    return f;
  };
  // time shows a timestamp as hh:mm:ss when it is today, else as yyyy-mm-dd hh:mm.
  const time = (ms) => {
    if (!ms) return '–';
    const d = new Date(ms), p2 = (n) => String(n).padStart(2, '0');
    const hm = `${p2(d.getHours())}:${p2(d.getMinutes())}`;
    if (d.toDateString() === new Date().toDateString()) return `${hm}:${p2(d.getSeconds())}`;
    return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${hm}`;
  };

  const TABLES = {
    connections: {
      path: '/api/connections', what: 'connections', sort: 'name',
      cols: [
        { t: 'Vhost', k: 'vhost' },
        { t: 'Name', k: 'name', cls: 'name' },
        { t: 'User', k: 'user' },
        { t: 'State', k: 'state', f: state },
        { t: 'Client', k: 'client_properties.product', more: ['client_properties.version'],
          f: (v, o) => [v, get(o, 'client_properties.version')].filter(Boolean).join(' ') || '–' },
        { t: 'Protocol', k: 'protocol' },
        { t: 'TLS', k: 'ssl', f: (v) => (v ? 'yes' : 'no') },
        { t: 'Channels', k: 'channels', n: true, f: num },
        { t: 'From client', k: 'recv_oct_details.rate', n: true, f: byteRate },
        { t: 'To client', k: 'send_oct_details.rate', n: true, f: byteRate },
        { t: 'Connected', k: 'connected_at', f: time },
      ],
    },
    exchanges: {
      path: '/api/exchanges', what: 'exchanges', sort: 'name',
      cols: [
        { t: 'Vhost', k: 'vhost' },
        { t: 'Name', k: 'name', cls: 'name', f: (v) => v || el('i', {}, '(AMQP default)') },
        { t: 'Type', k: 'type' },
        { t: 'Features', k: 'durable', more: ['auto_delete', 'internal', 'arguments'], f: (v, o) => features(o), nosort: true },
      ],
    },
    queues: {
      path: '/api/queues', what: 'queues', sort: 'name',
      cols: [
        { t: 'Vhost', k: 'vhost' },
        { t: 'Name', k: 'name', cls: 'name' },
        { t: 'Type', k: 'type' },
        { t: 'Features', k: 'durable', more: ['auto_delete', 'exclusive', 'arguments'], f: (v, o) => features(o), nosort: true },
        { t: 'State', k: 'state', f: state },
        { t: 'Ready', k: 'messages_ready', n: true, f: num },
        { t: 'Unacked', k: 'messages_unacknowledged', n: true, f: num },
        { t: 'Total', k: 'messages', n: true, f: num },
        { t: 'Consumers', k: 'consumers', n: true, f: num },
        { t: 'Incoming', k: 'message_stats.publish_details.rate', n: true, f: rate },
        { t: 'Deliver / get', k: 'message_stats.deliver_get_details.rate', n: true, f: rate },
        { t: 'Ack', k: 'message_stats.ack_details.rate', n: true, f: rate },
      ],
    },
  };
  const PAGE = 100;

  function buildTable(name) {
    const spec = TABLES[name];
    const st = { sort: spec.sort, rev: false, filter: '', page: 1 };
    spec.st = st;
    const filter = el('input', { type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter ' + spec.what + ' by name' });
    spec.count = el('span', { class: 'count' });
    spec.prev = el('button', { type: 'button', title: 'Previous page' }, '‹');
    spec.next = el('button', { type: 'button', title: 'Next page' }, '›');
    spec.tbody = el('tbody');
    const heads = spec.cols.map((c) => {
      const th = el('th', { class: c.n ? 'num' : undefined, scope: 'col' }, c.t);
      if (!c.nosort) {
        th.classList.add('sortable');
        th.addEventListener('click', () => {
          if (st.sort === c.k) st.rev = !st.rev;
          else { st.sort = c.k; st.rev = !!c.n; } // numbers: largest first
          st.page = 1;
          loadTable(name).catch(report);
        });
      }
      c.th = th;
      return th;
    });
    let debounce = 0;
    filter.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { st.filter = filter.value.trim(); st.page = 1; loadTable(name).catch(report); }, 250);
    });
    spec.prev.addEventListener('click', () => { st.page--; loadTable(name).catch(report); });
    spec.next.addEventListener('click', () => { st.page++; loadTable(name).catch(report); });
    $('tab-' + name).append(
      el('div', { class: 'toolbar' }, el('h2', {}, spec.what[0].toUpperCase() + spec.what.slice(1)), filter, spec.count, spec.prev, spec.next),
      el('div', { class: 'scroll' }, el('table', { class: 'grid', id: name }, el('thead', {}, el('tr', {}, ...heads)), spec.tbody)),
    );
  }

  async function loadTable(name) {
    const spec = TABLES[name], st = spec.st;
    const cols = ['name', 'vhost'];
    for (const c of spec.cols) cols.push(c.k, ...(c.more || []));
    const q = new URLSearchParams({
      page: st.page, page_size: PAGE, sort: st.sort, sort_reverse: st.rev, columns: [...new Set(cols)].join(','),
    });
    if (st.filter) q.set('name', st.filter);
    const res = await api(spec.path + '?' + q);
    if (res.page_count > 0 && st.page > res.page_count) { st.page = res.page_count; return loadTable(name); }
    const rows = (res.items || []).map((o) => el('tr', { 'data-name': o.name, 'data-vhost': o.vhost },
      ...spec.cols.map((c) => {
        const v = get(o, c.k);
        const out = c.f ? c.f(v, o) : (v == null || v === '' ? '–' : v);
        return el('td', { 'data-key': c.k, class: [c.n ? 'num' : '', c.cls || ''].join(' ').trim() || undefined, title: c.cls === 'name' ? o.name : undefined }, out);
      })));
    if (!rows.length) {
      rows.push(el('tr', { class: 'empty' }, el('td', { colspan: spec.cols.length }, st.filter ? `No ${spec.what} match “${st.filter}”.` : `No ${spec.what}.`)));
    }
    spec.tbody.replaceChildren(...rows);
    for (const c of spec.cols) {
      if (c.nosort) continue;
      const on = c.k === st.sort;
      c.th.classList.toggle('sorted', on);
      c.th.classList.toggle('desc', on && st.rev);
      c.th.setAttribute('aria-sort', on ? (st.rev ? 'descending' : 'ascending') : 'none');
    }
    const lo = res.filtered_count ? (res.page - 1) * res.page_size + 1 : 0;
    const hi = lo ? lo + res.item_count - 1 : 0;
    spec.count.textContent = `${num(lo)}–${num(hi)} of ${num(res.filtered_count)}` +
      (res.filtered_count !== res.total_count ? ` (${num(res.total_count)} in all)` : '');
    spec.prev.disabled = res.page <= 1;
    spec.next.disabled = res.page >= res.page_count;
  }

  // ---- tabs, polling, errors --------------------------------------------------------------
  let tab = 'overview';
  let signedIn = false;
  function showTab() {
    const want = location.hash.replace(/^#\/?/, '') || 'overview';
    tab = $('tab-' + want) ? want : 'overview';
    for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.tab === tab);
    for (const s of document.querySelectorAll('section.tab')) s.hidden = !signedIn || s.id !== 'tab-' + tab;
    if (tab === 'overview') { ratesChart.draw(); queuedChart.draw(); }
  }

  let stopped = true; // signed out, or after 401/403: no polling
  function report(err) {
    if (err instanceof HTTPError && (err.status === 401 || err.status === 403)) {
      stopped = true;
      clearTimeout(timer);
      if (err.status === 401) {
        signOut('Signed out: the broker refused the credentials (password changed or user deleted?).');
      } else {
        banner('api', 'error', `Access refused: ${err.message}. The user needs the management, monitoring, policymaker or administrator tag.`);
      }
      return;
    }
    banner('api', 'error', `Cannot read the management API (${err.message}); retrying.`);
  }

  let timer = 0;
  async function tick() {
    clearTimeout(timer);
    if (stopped || document.hidden) return; // visibilitychange resumes
    const jobs = [loadOverview(), loadNode(), loadAlarms()];
    if (tab !== 'overview') jobs.push(loadTable(tab));
    const failed = (await Promise.allSettled(jobs)).find((r) => r.status === 'rejected');
    if (failed) report(failed.reason);
    else {
      unbanner('api');
      $('updated').textContent = new Date().toLocaleTimeString();
    }
    if (!stopped) timer = setTimeout(tick, Number($('refresh').value) * 1000);
  }

  // ---- sign-in and sign-out ----------------------------------------------------------------
  function showLogin(message) {
    signedIn = false;
    $('login').hidden = false;
    $('tabs').hidden = true;
    $('signout').hidden = true;
    $('user').textContent = '–';
    $('login-error').textContent = message || '';
    showTab();
    $(($('login-user').value ? 'login-pass' : 'login-user')).focus();
  }

  function signOut(message) {
    auth = null;
    try { sessionStorage.removeItem(AUTH_KEY); } catch (e) { /* no storage */ }
    stopped = true;
    clearTimeout(timer);
    unbanner('api');
    showLogin(message);
  }

  async function signIn(ev) {
    ev.preventDefault();
    const value = basic($('login-user').value, $('login-pass').value);
    $('login-submit').disabled = true;
    try {
      await api('/api/whoami', value);
    } catch (err) {
      $('login-error').textContent = !(err instanceof HTTPError) ? `Cannot reach the management API (${err.message}).`
        : err.status === 401 ? 'Wrong user name or password.'
          : err.status === 403 ? `Access refused: ${err.message}. The user needs the management, monitoring, policymaker or administrator tag.`
            : `The management API answered ${err.status}: ${err.message}.`;
      return;
    } finally {
      $('login-submit').disabled = false;
    }
    auth = value;
    try { sessionStorage.setItem(AUTH_KEY, value); } catch (e) { /* no storage: this page only */ }
    $('login-pass').value = '';
    begin();
  }

  // begin shows the signed-in dashboard and starts polling.
  async function begin() {
    try {
      const me = await api('/api/whoami');
      $('user').textContent = me.name;
    } catch (err) {
      if (err instanceof HTTPError && err.status === 401) signOut();
      else report(err);
      return;
    }
    signedIn = true;
    stopped = false;
    $('login').hidden = true;
    $('tabs').hidden = false;
    $('signout').hidden = false;
    $('login-error').textContent = '';
    showTab();
    // Fill every table once, so switching tabs shows data at once; later ticks poll the
    // overview and the visible tab only.
    await Promise.allSettled(Object.keys(TABLES).filter((n) => n !== tab).map((n) => loadTable(n)));
    tick();
  }

  async function start() {
    for (const name of Object.keys(TABLES)) buildTable(name);
    $('login-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut());
    showTab();
    window.addEventListener('hashchange', () => { showTab(); if (tab !== 'overview' && !stopped) loadTable(tab).catch(report); });
    window.addEventListener('resize', () => { ratesChart.draw(); queuedChart.draw(); });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
    // The refresh interval is remembered per browser (storage may be off: then it is not).
    try {
      const saved = localStorage.getItem('warren.refresh');
      if (saved && [...$('refresh').options].some((o) => o.value === saved)) $('refresh').value = saved;
    } catch (e) { /* no storage */ }
    $('refresh').addEventListener('change', () => {
      try { localStorage.setItem('warren.refresh', $('refresh').value); } catch (e) { /* no storage */ }
      tick();
    });
    if (auth) begin();
    else showLogin();
  }

  start();
})();
