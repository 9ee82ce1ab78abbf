/* runstone charts: metric line charts (canvas) and parallel coordinates (SVG).
   Plain ES2020, no dependencies, no build step; everything lives under window.RS.
   Markup contracts: <div class="rs-chart" data-series data-title data-markers data-api>,
   <div class="rs-chart-controls">, <div class="rs-parcoords" data-plot>. */
(() => {
  'use strict';
  const RS = (window.RS = window.RS || {});
  // Poll interval for live charts: window.RS_POLL_MS, else <body data-poll-ms>, else 2 s.
  const pollFrom = () => [window.RS_POLL_MS, document.body && document.body.dataset.pollMs, 2000].map(Number).find((v) => v > 0);
  RS.pollMs = pollFrom();

  // Okabe–Ito (yellow swapped for Tol's wine, which reads on white).
  const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#000000', '#882255'];
  const INK = '#374151', GRID = '#e9ebef', AXIS = '#9ca3af', MARKER = '#b42318';
  const MAX_POINTS = 4000;

  /* ---------- small helpers ---------- */
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  // mk('div', 'cls' | {className, textContent, role, 'aria-*', ...}, parent)
  function mk(tag, props, parent) {
    const e = document.createElement(tag);
    if (typeof props === 'string') e.className = props;
    else for (const k in props) { if (k === 'role' || k.startsWith('aria-')) e.setAttribute(k, props[k]); else e[k] = props[k]; }
    if (parent) parent.appendChild(e);
    return e;
  }
  function svgEl(tag, attrs, parent) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function parseJSON(s, fallback) {
    if (s == null || s === '') return fallback;
    try { return JSON.parse(s); } catch (e) { return undefined; }
  }
  function lowerBound(xs, v) { // first index with xs[i] >= v
    let lo = 0, hi = xs.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < v) lo = m + 1; else hi = m; }
    return lo;
  }
  function upperBound(xs, v) { // first index with xs[i] > v
    let lo = 0, hi = xs.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] <= v) lo = m + 1; else hi = m; }
    return lo;
  }
  function nearest(xs, v) {
    if (!xs.length) return -1;
    const j = lowerBound(xs, v);
    if (j === 0) return 0;
    if (j === xs.length) return j - 1;
    return v - xs[j - 1] <= xs[j] - v ? j - 1 : j;
  }

  /* ---------- number / time formatting ---------- */
  // Up to 6 significant digits (tooltips, legend).
  function fmtNum(v) {
    if (v == null || Number.isNaN(v)) return 'non-finite';
    if (!Number.isFinite(v)) return v > 0 ? '+inf' : '-inf';
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a >= 1e7 || a < 1e-4) return v.toExponential(5).replace(/\.?0+e/, 'e');
    return String(parseFloat(v.toPrecision(6)));
  }
  // Tick labels: 1.2k, 3.4M, 2B; decimals follow the tick step.
  function fmtCompact(v, step) {
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a < 1e-3) return String(parseFloat(v.toPrecision(3)));
    const [u, s] = a >= 1e9 ? [1e9, 'B'] : a >= 1e6 ? [1e6, 'M'] : a >= 1e3 ? [1e3, 'k'] : [1, ''];
    const d = clamp(Math.ceil(-Math.log10(step / u) - 1e-9), 0, 8);
    return parseFloat((v / u).toFixed(d)) + s;
  }
  function fmtTimeTick(v, step, span) {
    if (v === 0) return '0';
    const [u, s] = span <= 120 ? [1, 's'] : span <= 7200 ? [60, 'min'] : [3600, 'h'];
    const d = clamp(Math.ceil(-Math.log10(step / u) - 1e-9), 0, 3);
    return parseFloat((v / u).toFixed(d)) + s;
  }
  function fmtDuration(s) {
    if (!Number.isFinite(s)) return String(s);
    if (Math.abs(s) < 60) return parseFloat(s.toFixed(Math.abs(s) < 10 ? 2 : 1)) + 's';
    const t = Math.floor(s), h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
    const p = (n) => String(n).padStart(2, '0');
    return h ? `${h}h ${p(m)}m ${p(sec)}s` : `${m}m ${p(sec)}s`;
  }

  /* ---------- ticks ---------- */
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / p;
    return (m >= 7.07 ? 10 : m >= 3.16 ? 5 : m >= 1.41 ? 2 : 1) * p; // d3's thresholds
  }
  function linearTicks(lo, hi, count, minStep = 0) {
    return stepTicks(lo, hi, Math.max(niceStep(hi - lo, count), minStep));
  }
  function stepTicks(lo, hi, step) {
    const ticks = [];
    for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9 && ticks.length < 100; i++) ticks.push(i * step);
    return { ticks, step };
  }
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function timeTicks(lo, hi, count) {
    const raw = (hi - lo) / Math.max(1, count);
    if (raw < 1) return linearTicks(lo, hi, count);
    const step = TIME_STEPS.find((s) => s >= raw * 0.75) || niceStep((hi - lo) / 3600, count) * 3600;
    return stepTicks(lo, hi, step);
  }
  function logTicks(lo, hi, count) {
    const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    const mults = e1 - e0 <= 2 ? [1, 2, 5] : [1];
    const every = Math.max(1, Math.ceil((e1 - e0) / count));
    const ticks = [];
    for (let e = e0; e <= e1; e++) {
      if ((e - e0) % every) continue;
      for (const m of mults) { const v = m * Math.pow(10, e); if (v >= lo && v <= hi) ticks.push(v); }
    }
    return ticks.length >= 2 ? { ticks, log: true } : linearTicks(lo, hi, count);
  }

  // Exponential moving average with TensorBoard's debiasing.
  function ema(ys, w) {
    const out = new Float64Array(ys.length);
    let last = 0, pw = 1;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (!Number.isFinite(y)) { out[i] = NaN; continue; }
      last = last * w + (1 - w) * y;
      pw *= w;
      out[i] = last / (1 - pw);
    }
    return out;
  }

  /* ---------- page-level settings (shared by every chart, persisted) ---------- */
  const STORE_KEY = 'runstone.charts.v1';
  const settings = { xAxis: 'step', log: false, smooth: 0 };
  function sanitize(s) {
    return {
      xAxis: s.xAxis === 'time' ? 'time' : 'step',
      log: !!s.log,
      smooth: clamp(Math.round((Number(s.smooth) || 0) * 100) / 100, 0, 0.99),
    };
  }
  try { Object.assign(settings, sanitize({ ...settings, ...JSON.parse(localStorage.getItem(STORE_KEY) || '{}') })); } catch (e) { /* no storage */ }
  const charts = new Set();
  const controlSets = [];

  RS.getSettings = () => ({ ...settings });
  RS.setSettings = function (partial) {
    const prevAxis = settings.xAxis;
    Object.assign(settings, sanitize({ ...settings, ...partial }));
    try { localStorage.setItem(STORE_KEY, JSON.stringify(settings)); } catch (e) { /* ignore */ }
    controlSets.forEach(syncControls);
    for (const c of charts) {
      if (!c.el.isConnected) c.destroy();
      else if (settings.xAxis !== prevAxis) { c.zoom = null; c.resetBtn.hidden = true; c.clearHover(); c.load(false); } else c.draw();
    }
  };
  function syncControls(k) {
    k.axis.value = settings.xAxis;
    k.log.checked = settings.log;
    k.smooth.value = String(settings.smooth);
    k.out.value = k.out.textContent = settings.smooth.toFixed(2);
  }
  RS.controls = function (box) {
    if (box.__rsControls) return box.__rsControls;
    box.textContent = '';
    box.classList.add('rs-chart-controls');
    box.setAttribute('role', 'group');
    box.setAttribute('aria-label', 'Chart options');
    const l1 = mk('label', { className: 'rs-ctl', textContent: 'X axis ' }, box);
    const axis = mk('select', {}, l1);
    for (const [value, textContent] of [['step', 'Step'], ['time', 'Wall time']]) mk('option', { value, textContent }, axis);
    const l2 = mk('label', 'rs-ctl', box);
    const log = mk('input', { type: 'checkbox' }, l2);
    l2.append(' Log scale');
    const l3 = mk('label', { className: 'rs-ctl', textContent: 'Smoothing ' }, box);
    const smooth = mk('input', { type: 'range', min: '0', max: '0.99', step: '0.01' }, l3);
    const out = mk('output', { className: 'rs-ctl-value', 'aria-hidden': 'true' }, l3);
    axis.addEventListener('change', () => RS.setSettings({ xAxis: axis.value }));
    log.addEventListener('change', () => RS.setSettings({ log: log.checked }));
    smooth.addEventListener('input', () => RS.setSettings({ smooth: Number(smooth.value) }));
    const k = (box.__rsControls = { axis, log, smooth, out });
    controlSets.push(k);
    syncControls(k);
    return k;
  };

  /* ---------- data fetching ---------- */
  async function fetchSeries(api, s, axis, n, zoom, signal) {
    const q = [['run', s.run], ['key', s.key], ['x', axis], ['points', n]];
    if (zoom) q.push(['lo', zoom[0]], ['hi', zoom[1]]);
    const url = api + (api.includes('?') ? '&' : '?') + q.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
    const r = await fetch(url, { signal, credentials: 'same-origin', headers: { Accept: 'application/json' } }).catch((e) => {
      throw e.name === 'AbortError' ? e : new Error('Could not reach the server to load this chart.');
    });
    const body = await r.json().catch(() => null);
    if (!r.ok || !body || body.error || !Array.isArray(body.x)) {
      throw Object.assign(new Error((body && body.error) || `Could not load data (HTTP ${r.status}).`), { http: true });
    }
    const len = Math.min(body.x.length, (body.y || []).length);
    const x = new Float64Array(len), y = new Float64Array(len);
    for (let i = 0; i < len; i++) { x[i] = Number(body.x[i]); const v = body.y[i]; y[i] = typeof v === 'number' ? v : NaN; }
    const xMin = Number.isFinite(body.x_min) ? body.x_min : x[0], xMax = Number.isFinite(body.x_max) ? body.x_max : x[len - 1];
    return { x, y, status: body.status, total: body.total, returned: len, xMin, xMax, sm: null, smW: -1 };
  }

  function sizeCanvas(cv, w, h) {
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.round(w * dpr), ph = Math.round(h * dpr);
    if (cv.width !== pw || cv.height !== ph) { cv.width = pw; cv.height = ph; }
    Object.assign(cv.style, { width: w + 'px', height: h + 'px' });
    const ctx = cv.getContext('2d');
    ctx.setTransform(pw / w, 0, 0, ph / h, 0, 0);
    return ctx;
  }

  // Strokes one series as a path with gaps at non-finite values; isolated points become dots.
  function strokeSeries(ctx, xs, ys, a, b, sx, sy, log) {
    ctx.beginPath();
    let run = 0, n = 0, lx = 0, ly = 0;
    const dots = [];
    for (let j = a; j < b; j++) {
      const y = ys[j];
      if (!Number.isFinite(y) || (log && y <= 0)) { if (run === 1) dots.push(lx, ly); run = 0; continue; }
      const px = sx(xs[j]), py = sy(y);
      if (run) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      run++; n++; lx = px; ly = py;
    }
    if (run === 1) dots.push(lx, ly);
    ctx.stroke();
    for (let k = 0; k < dots.length; k += 2) { ctx.beginPath(); ctx.arc(dots[k], dots[k + 1], 2.2, 0, 2 * Math.PI); ctx.fill(); }
    return n;
  }

  let firstMarked = false;

  /* ---------- line chart ---------- */
  class LineChart {
    constructor(el, opts) {
      this.el = el;
      this.series = (opts.series || []).map((s, i) => ({
        run: String(s.run), key: String(s.key), label: s.label || `${s.run} · ${s.key}`, color: s.color || PALETTE[i % PALETTE.length],
      }));
      this.title = opts.title || (this.series[0] ? this.series[0].key : 'metric');
      this.markers = Array.isArray(opts.markers) ? opts.markers : [];
      this.api = opts.api || '/api/series';
      this.height = Number(opts.height) > 0 ? Number(opts.height) : 260;
      this.hidden = new Set();
      this.data = null; this.view = null; this.zoom = null; this.axis = settings.xAxis;
      this.seq = 0; this.draws = 0; this.hover = null; this.drag = null; this.pointer = null;
      this.build();
      charts.add(this);
      this.lastW = 0;
      (this.ro = new ResizeObserver(() => this.onResize())).observe(this.plot);
      if (opts.error) this.fail(opts.error); else this.load(false);
    }

    build() {
      const el = this.el;
      el.textContent = '';
      el.classList.add('rs-chart');
      if (!el.hasAttribute('tabindex')) el.tabIndex = 0;
      el.setAttribute('role', 'group');
      el.setAttribute('aria-label', `Chart: ${this.title}. Arrow keys read values, Escape resets zoom.`);
      const head = mk('div', 'rs-chart-head', el);
      mk('div', { className: 'rs-chart-title', textContent: this.title }, head);
      this.axisEl = mk('span', 'rs-chart-axis', head);
      this.resetBtn = mk('button', { className: 'rs-chart-reset', type: 'button', textContent: 'Reset zoom', hidden: true }, head);
      this.plot = mk('div', 'rs-chart-plot', el);
      this.plot.style.height = this.height + 'px';
      this.canvas = mk('canvas', { className: 'rs-chart-canvas', role: 'img', 'aria-label': `Line chart of ${this.title}, ${this.series.length} series` }, this.plot);
      this.overlay = mk('canvas', { className: 'rs-chart-overlay', 'aria-hidden': 'true' }, this.plot);
      this.msg = mk('div', { className: 'rs-chart-msg', role: 'status', hidden: true }, this.plot);
      this.tip = mk('div', { className: 'rs-tooltip', hidden: true }, this.plot);
      this.legend = mk('ul', { className: 'rs-legend', 'aria-label': 'Series (activate to hide or show)' }, el);
      this.items = this.series.map((s, i) => {
        const b = mk('button', { className: 'rs-legend-item', type: 'button', 'aria-pressed': 'true' }, mk('li', {}, this.legend));
        mk('span', 'rs-swatch', b).style.background = s.color;
        mk('span', { className: 'rs-legend-label', textContent: s.label }, b);
        const val = mk('span', 'rs-legend-value', b);
        b.addEventListener('click', () => this.toggle(i));
        return { b, val };
      });
      this.bind();
    }

    bind() {
      const ov = this.overlay;
      const pos = (e) => { const r = ov.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; };
      ov.addEventListener('pointerdown', (e) => {
        const v = this.view, p = pos(e);
        if (e.button !== 0 || !v || p.x < v.L || p.x > v.R) return;
        this.drag = { x0: p.x, x1: p.x };
        ov.setPointerCapture(e.pointerId);
        e.preventDefault();
      });
      ov.addEventListener('pointermove', (e) => {
        const v = this.view;
        if (!v) return;
        const p = (this.pointer = pos(e));
        if (this.drag) { this.drag.x1 = clamp(p.x, v.L, v.R); this.hideTip(); this.paintOverlay(); return; }
        this.hoverAt(v.invX(clamp(p.x, v.L, v.R)), p);
      });
      ov.addEventListener('pointerup', () => {
        const d = this.drag, v = this.view;
        if (!d) return;
        this.drag = null;
        if (v && Math.abs(d.x1 - d.x0) >= 5) this.setZoom(v.invX(Math.min(d.x0, d.x1)), v.invX(Math.max(d.x0, d.x1)));
        else this.paintOverlay();
      });
      ov.addEventListener('pointercancel', () => { this.drag = null; this.paintOverlay(); });
      ov.addEventListener('pointerleave', () => { if (!this.drag) { this.pointer = null; this.clearHover(); } });
      ov.addEventListener('dblclick', (e) => { e.preventDefault(); this.resetZoom(); });
      this.resetBtn.addEventListener('click', () => { this.el.focus(); this.resetZoom(); });
      const opt = { signal: (this.evt = new AbortController()).signal }; // container listeners die with destroy()
      this.el.addEventListener('keydown', (e) => this.onKey(e), opt);
      this.el.addEventListener('blur', () => { if (!this.pointer) this.clearHover(); }, opt);
    }

    pointsWanted() {
      return clamp(Math.round(2 * (this.plot.clientWidth || 600)), 100, MAX_POINTS);
    }

    async load(silent) {
      const seq = ++this.seq;
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
      if (this.ac) this.ac.abort();
      const ac = (this.ac = new AbortController());
      const axis = settings.xAxis, zoom = this.zoom, n = this.pointsWanted();
      if (!silent) this.el.dataset.state = 'loading';
      if (!this.data) this.showMsg('Loading…', false);
      let res;
      try {
        res = await Promise.all(this.series.map((s) => fetchSeries(this.api, s, axis, n, zoom, ac.signal).catch((e) => {
          if (e.http && this.series.length > 1) e.message = `${s.label}: ${e.message}`;
          throw e;
        })));
      } catch (e) {
        if (seq !== this.seq) return;
        ac.abort();
        if (silent && !e.http && this.data) { this.schedulePoll(); return; } // transient: retry later
        this.fail(e.message);
        return;
      }
      if (seq !== this.seq) return;
      this.data = res; this.axis = axis; this.lastN = n;
      this.canvas.hidden = false; this.msg.hidden = true;
      this.draw();
      this.schedulePoll();
    }

    schedulePoll() {
      const live = !!this.data && this.data.some((s) => s.status === 'running');
      this.el.dataset.polling = String(live);
      if (live) this.pollTimer = setTimeout(() => this.poll(), RS.pollMs);
    }

    poll() {
      this.pollTimer = null;
      if (!this.el.isConnected) { this.destroy(); return; }
      if (this.drag) { this.schedulePoll(); return; } // never refetch under a drag
      this.load(true);
    }

    fail(message) {
      this.data = null; this.view = null;
      Object.assign(this.el.dataset, { state: 'error', polling: 'false' });
      this.canvas.hidden = true;
      this.overlay.getContext('2d').clearRect(0, 0, this.overlay.width, this.overlay.height);
      this.hideTip();
      this.showMsg(message, true);
    }

    showMsg(text, isError) {
      Object.assign(this.msg, { textContent: text, hidden: false });
      this.msg.classList.toggle('rs-chart-error', !!isError);
    }

    onResize() {
      const w = this.plot.clientWidth;
      if (!w || w === this.lastW) return;
      this.lastW = w;
      if (!this.data) return;
      this.draw();
      // widened a lot: ask the server for more detail
      if (this.lastN < MAX_POINTS && this.pointsWanted() > this.lastN * 1.5) {
        clearTimeout(this.resizeTimer);
        this.resizeTimer = setTimeout(() => this.load(true), 250);
      }
    }

    toggle(i) {
      const on = this.hidden.has(i);
      if (on) this.hidden.delete(i); else this.hidden.add(i);
      this.items[i].b.setAttribute('aria-pressed', String(on));
      this.items[i].b.classList.toggle('rs-off', !on);
      this.draw();
    }

    setZoom(lo, hi) {
      if (this.axis === 'step') { lo = Math.floor(lo); hi = Math.ceil(hi); }
      if (!(hi > lo)) return;
      this.zoom = [lo, hi];
      this.resetBtn.hidden = false;
      this.clearHover();
      this.draw(); // instant feedback with the coarse data, then refine
      this.load(false);
    }

    resetZoom() {
      if (!this.zoom) return;
      this.zoom = null;
      this.resetBtn.hidden = true;
      this.clearHover();
      this.load(false);
    }

    smoothed(s, w) {
      if (s.smW !== w) { s.sm = ema(s.y, w); s.smW = w; }
      return s.sm;
    }

    /* ----- drawing ----- */
    draw() {
      const d = this.data;
      if (!d) return;
      const W = this.plot.clientWidth || 600, H = this.height;
      this.lastW = W;
      const ctx = sizeCanvas(this.canvas, W, H);
      this.octx = sizeCanvas(this.overlay, W, H);
      const font = getComputedStyle(this.el).fontFamily || 'system-ui, sans-serif';
      const log = settings.log, w = settings.smooth, time = this.axis === 'time';
      ctx.clearRect(0, 0, W, H);
      const vis = [];
      d.forEach((s, i) => { if (!this.hidden.has(i) && s.x.length) vis.push(i); });

      // x domain: zoom range, else the union of the series' extents
      let x0 = Infinity, x1 = -Infinity;
      if (this.zoom) [x0, x1] = this.zoom;
      else for (const s of d) if (s.x.length) { x0 = Math.min(x0, s.xMin); x1 = Math.max(x1, s.xMax); }
      if (!Number.isFinite(x0) || !Number.isFinite(x1)) { x0 = 0; x1 = 1; }
      if (!(x1 > x0)) { x0 -= 1; x1 += 1; }

      // y domain: raw values visible in the x range
      let y0 = Infinity, y1 = -Infinity;
      const ranges = {};
      for (const i of vis) {
        const { x, y } = d[i];
        const a = Math.max(0, lowerBound(x, x0) - 1), b = Math.min(x.length, upperBound(x, x1) + 1);
        ranges[i] = [a, b];
        for (let j = a; j < b; j++) {
          const v = y[j];
          if (x[j] < x0 || x[j] > x1 || !Number.isFinite(v) || (log && v <= 0)) continue;
          if (v < y0) y0 = v;
          if (v > y1) y1 = v;
        }
        // where the line crosses the window's edges (a window between two points has only that)
        for (const edge of [x0, x1]) {
          const k = lowerBound(x, edge);
          if (k <= 0 || k >= x.length || !(x[k] > x[k - 1])) continue;
          const va = y[k - 1], vb = y[k];
          if (!Number.isFinite(va) || !Number.isFinite(vb)) continue;
          const v = va + ((vb - va) * (edge - x[k - 1])) / (x[k] - x[k - 1]);
          if (log && v <= 0) continue;
          if (v < y0) y0 = v;
          if (v > y1) y1 = v;
        }
      }
      if (!(y0 <= y1)) { y0 = log ? 1 : 0; y1 = log ? 10 : 1; }
      const tf = log ? Math.log10 : (v) => v;
      let t0 = tf(y0), t1 = tf(y1);
      const pad = t1 > t0 ? (t1 - t0) * 0.06 : Math.abs(t0) * 0.1 || 0.5;
      if (!log && y0 >= 0 && t0 - pad < 0 && t1 > t0) t0 = 0; else t0 -= pad;
      t1 += pad;
      const yCount = Math.max(2, Math.floor((H - 34) / 42));
      const yt = log ? logTicks(Math.pow(10, t0), Math.pow(10, t1), yCount) : linearTicks(t0, t1, yCount);
      const yLabels = yt.ticks.map((v) => fmtCompact(v, yt.log ? v : yt.step));

      ctx.font = `11px ${font}`;
      const L = Math.ceil(Math.max(24, ...yLabels.map((s) => ctx.measureText(s).width))) + 12;
      const T = 10, R = W - 14, B = H - 24;
      const sx = (v) => L + ((v - x0) / (x1 - x0)) * (R - L);
      const sy = (v) => B - ((tf(v) - t0) / (t1 - t0)) * (B - T);
      this.view = { L, T, R, B, x0, x1, sx, sy, vis, invX: (px) => x0 + ((px - L) / (R - L)) * (x1 - x0) };

      // grid + tick labels
      Object.assign(ctx, { lineWidth: 1, strokeStyle: GRID, fillStyle: INK, textAlign: 'right', textBaseline: 'middle' });
      yt.ticks.forEach((v, k) => {
        const py = Math.round(sy(v)) + 0.5;
        if (py < T - 1 || py > B + 1) return;
        ctx.beginPath(); ctx.moveTo(L, py); ctx.lineTo(R, py); ctx.stroke();
        ctx.fillText(yLabels[k], L - 6, py);
      });
      const xCount = Math.max(2, Math.floor((R - L) / 90));
      const xt = time ? timeTicks(x0, x1, xCount) : linearTicks(x0, x1, xCount, 1);
      Object.assign(ctx, { textAlign: 'center', textBaseline: 'top' });
      for (const v of xt.ticks) {
        const px = Math.round(sx(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(px, T); ctx.lineTo(px, B); ctx.stroke();
        const s = time ? fmtTimeTick(v, xt.step, x1) : fmtCompact(v, xt.step);
        const hw = ctx.measureText(s).width / 2;
        ctx.fillText(s, clamp(px, hw + 1, W - hw - 1), B + 6);
      }
      ctx.strokeStyle = AXIS;
      ctx.beginPath(); ctx.moveTo(L, B + 0.5); ctx.lineTo(R, B + 0.5); ctx.moveTo(L - 0.5, T); ctx.lineTo(L - 0.5, B); ctx.stroke();

      // series
      ctx.save();
      ctx.beginPath(); ctx.rect(L, T - 2, R - L, B - T + 4); ctx.clip();
      Object.assign(ctx, { lineJoin: 'round', lineCap: 'round' });
      let drawn = 0, points = 0;
      for (const i of vis) {
        const s = d[i], [a, b] = ranges[i], c = this.series[i].color;
        Object.assign(ctx, { strokeStyle: c, fillStyle: c, lineWidth: 1.5 });
        let n;
        if (w > 0) { // raw faint behind the smoothed line
          ctx.globalAlpha = 0.22;
          strokeSeries(ctx, s.x, s.y, a, b, sx, sy, log);
          Object.assign(ctx, { globalAlpha: 1, lineWidth: 1.8 });
          n = strokeSeries(ctx, s.x, this.smoothed(s, w), a, b, sx, sy, log);
        } else n = strokeSeries(ctx, s.x, s.y, a, b, sx, sy, log);
        if (n) { drawn++; points += s.x.length; }
      }
      // markers (step units only)
      if (!time) {
        ctx.setLineDash([5, 4]);
        Object.assign(ctx, { lineWidth: 1.2, textAlign: 'left', textBaseline: 'middle' });
        this.markers.forEach((m, k) => {
          const mx = Number(m.x);
          if (!(mx >= x0 && mx <= x1)) return;
          const px = Math.round(sx(mx)) + 0.5, c = m.color || MARKER;
          ctx.strokeStyle = c;
          ctx.beginPath(); ctx.moveTo(px, T); ctx.lineTo(px, B); ctx.stroke();
          if (!m.label) return;
          const label = String(m.label), tw = ctx.measureText(label).width;
          const lx = px + 5 + tw + 6 > R ? px - 5 - tw - 6 : px + 5, ly = T + 9 + (k % 3) * 17;
          ctx.fillStyle = 'rgba(255,255,255,0.92)';
          ctx.fillRect(lx, ly - 8, tw + 6, 16);
          ctx.fillStyle = c; ctx.fillText(label, lx + 3, ly);
        });
        ctx.setLineDash([]);
      }
      ctx.restore();
      if (!drawn) {
        Object.assign(ctx, { fillStyle: INK, textAlign: 'center', textBaseline: 'middle', font: `13px ${font}` });
        const why = vis.length === 0 && d.some((s) => s.x.length) ? 'All series hidden' : log && vis.length ? 'No positive values to show on a log scale'
          : vis.some((i) => d[i].y.every((v) => v === null)) ? 'Only NaN or infinite values' : 'No data yet';
        ctx.fillText(why, (L + R) / 2, (T + B) / 2);
      }

      // hooks, labels, legend
      const el = this.el;
      Object.assign(el.dataset, { state: 'drawn', seriesDrawn: String(drawn), points: String(points), draws: String(++this.draws) });
      if (!firstMarked) {
        firstMarked = true;
        try { performance.mark('rs-first-chart'); } catch (e) { /* ignore */ }
      }
      this.axisEl.textContent = time ? 'vs wall time' : 'vs step';
      this.canvas.setAttribute('aria-label', `Line chart of ${this.title}, ${this.series.length} series (${this.series.map((s) => s.label).join(', ')}) against ${time ? 'wall time' : 'step'}${log ? ', log scale' : ''}.`);
      d.forEach((s, i) => {
        let j = s.y.length - 1;
        while (j >= 0 && !Number.isFinite(s.y[j])) j--;
        const parts = [j >= 0 ? fmtNum(s.y[j]) : 'no data'];
        if (s.status && s.status !== 'finished') parts.push(s.status);
        this.items[i].val.textContent = parts.join(' · ');
        this.items[i].b.title = `${this.hidden.has(i) ? 'Show' : 'Hide'} ${this.series[i].label} (last value ${parts[0]})`;
      });
      if (this.hover) this.hoverAt(this.hover.x, this.hover.p); else this.paintOverlay();
    }

    /* ----- hover, crosshair, tooltip ----- */
    hoverAt(xv, p) {
      const v = this.view, d = this.data;
      if (!v || !d) return;
      let best = null;
      for (const i of v.vis) {
        const j = nearest(d[i].x, xv);
        if (j < 0) continue;
        const dist = Math.abs(d[i].x[j] - xv);
        if (!best || dist < best.dist) best = { dist, x: d[i].x[j] };
      }
      if (!best || best.x < v.x0 || best.x > v.x1) { this.clearHover(); return; }
      const w = settings.smooth, tol = (8 / (v.R - v.L)) * (v.x1 - v.x0);
      const rows = [];
      for (const i of v.vis) {
        const s = d[i], xs = s.x, j = nearest(xs, best.x);
        let a = j, b = j;
        while (a > 0 && xs[a - 1] === xs[j]) a--;
        while (b < xs.length - 1 && xs[b + 1] === xs[j]) b++;
        const gap = Math.max(xs[Math.min(b + 1, xs.length - 1)] - xs[j], xs[j] - xs[Math.max(a - 1, 0)]);
        const row = { i, label: this.series[i].label, color: this.series[i].color, value: '—', sm: '—', py: null };
        if (Math.abs(xs[j] - best.x) <= Math.max(tol, gap)) {
          let lo = Infinity, hi = -Infinity;
          for (let k = a; k <= b; k++) if (Number.isFinite(s.y[k])) { lo = Math.min(lo, s.y[k]); hi = Math.max(hi, s.y[k]); }
          row.value = lo === Infinity ? fmtNum(NaN) : lo === hi ? fmtNum(lo) : `${fmtNum(lo)} – ${fmtNum(hi)}`;
          const yv = w > 0 ? this.smoothed(s, w)[b] : s.y[b];
          if (w > 0) row.sm = fmtNum(yv);
          if (Number.isFinite(yv) && (!settings.log || yv > 0)) row.py = v.sy(yv);
        }
        rows.push(row);
      }
      this.hover = { x: best.x, p, rows };
      this.paintOverlay();
      this.showTip(rows, p);
    }

    clearHover() {
      this.hover = null;
      this.hideTip();
      this.paintOverlay();
    }

    hideTip() { this.tip.hidden = true; }

    showTip(rows, p) {
      const t = this.tip, v = this.view, smooth = settings.smooth > 0;
      t.textContent = '';
      mk('div', { className: 'rs-tooltip-head', textContent: this.axis === 'time' ? `Time ${fmtDuration(this.hover.x)}` : `Step ${this.hover.x.toLocaleString('en-US')}` }, t);
      const tbl = mk('table', {}, t);
      if (smooth) { const tr = mk('tr', {}, tbl); for (const h of ['', 'Series', 'Value', 'Smoothed']) mk('th', { textContent: h }, tr); }
      for (const r of rows) {
        const tr = mk('tr', {}, tbl);
        mk('span', 'rs-swatch', mk('td', {}, tr)).style.background = r.color;
        mk('td', { className: 'rs-tt-label', textContent: r.label }, tr);
        mk('td', { className: 'rs-tt-val', textContent: r.value }, tr);
        if (smooth) mk('td', { className: 'rs-tt-val', textContent: r.sm }, tr);
      }
      t.hidden = false;
      const W = this.plot.clientWidth, H = this.plot.clientHeight, tw = t.offsetWidth, th = t.offsetHeight;
      const px = v.sx(this.hover.x), left = px + 14 + tw > W ? px - 14 - tw : px + 14;
      Object.assign(t.style, { left: Math.max(0, left) + 'px', top: clamp((p ? p.y : v.T) - th / 2, 0, Math.max(0, H - th)) + 'px' });
    }

    paintOverlay() {
      const ctx = this.octx, v = this.view;
      if (!ctx) return;
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
      if (!v) return;
      if (this.drag) {
        const a = Math.min(this.drag.x0, this.drag.x1), b = Math.max(this.drag.x0, this.drag.x1);
        Object.assign(ctx, { fillStyle: 'rgba(0,114,178,0.12)', strokeStyle: 'rgba(0,114,178,0.6)', lineWidth: 1 });
        ctx.fillRect(a, v.T, b - a, v.B - v.T);
        ctx.strokeRect(a + 0.5, v.T + 0.5, b - a, v.B - v.T);
      }
      if (this.hover) {
        const px = Math.round(v.sx(this.hover.x)) + 0.5;
        Object.assign(ctx, { strokeStyle: '#6b7280', lineWidth: 1 });
        ctx.beginPath(); ctx.moveTo(px, v.T); ctx.lineTo(px, v.B); ctx.stroke();
        for (const r of this.hover.rows) {
          if (r.py == null || r.py < v.T - 2 || r.py > v.B + 2) continue;
          ctx.beginPath(); ctx.arc(px, r.py, 3.5, 0, 2 * Math.PI);
          ctx.fillStyle = r.color; ctx.fill();
          ctx.strokeStyle = '#fff'; ctx.lineWidth = 1.5; ctx.stroke();
        }
      }
    }

    onKey(e) {
      if (e.target !== this.el) return; // legend buttons keep their own keys
      const v = this.view;
      if (!v) return;
      if (e.key === 'Escape') { if (this.hover) this.clearHover(); else this.resetZoom(); return; }
      const anchor = v.vis.map((i) => this.data[i]).find((s) => s.x.length);
      if (!anchor) return;
      const xs = anchor.x, cur = this.hover ? this.hover.x : null, jump = e.shiftKey ? 10 : 1;
      let j;
      if (e.key === 'ArrowRight') j = cur == null ? lowerBound(xs, v.x0) : upperBound(xs, cur) + jump - 1;
      else if (e.key === 'ArrowLeft') j = cur == null ? upperBound(xs, v.x1) - 1 : lowerBound(xs, cur) - jump;
      else if (e.key === 'Home') j = lowerBound(xs, v.x0);
      else if (e.key === 'End') j = upperBound(xs, v.x1) - 1;
      else return;
      e.preventDefault();
      const x = xs[clamp(j, 0, xs.length - 1)];
      this.hoverAt(x, { x: v.sx(x), y: v.T + 30 });
    }

    refresh() { return this.load(true); }

    destroy() {
      charts.delete(this);
      clearTimeout(this.pollTimer);
      clearTimeout(this.resizeTimer);
      if (this.ac) this.ac.abort();
      this.ro.disconnect();
      this.evt.abort();
      this.seq++;
      this.el.__rsChart = null;
    }
  }

  RS.chart = function (container, opts) {
    if (container.__rsChart) {
      if (!opts) return container.__rsChart;
      container.__rsChart.destroy();
    }
    if (!opts) {
      const ds = container.dataset;
      const series = parseJSON(ds.series, []), markers = parseJSON(ds.markers, []);
      opts = { series, markers, title: ds.title, api: ds.api, height: ds.height };
      if (!Array.isArray(series)) opts = { series: [], title: ds.title, error: 'Invalid data-series attribute (expected a JSON array).' };
      else if (markers === undefined) opts.markers = [];
    }
    return (container.__rsChart = new LineChart(container, opts));
  };

  /* ---------- parallel coordinates ---------- */
  // Viridis, stopped short of its pale yellow end so every line reads on white.
  const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#a8db34'];
  function seqColor(t) {
    const f = clamp(t, 0, 1) * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(f)), u = f - i;
    const a = parseInt(VIRIDIS[i].slice(1), 16), b = parseInt(VIRIDIS[i + 1].slice(1), 16);
    const ch = (s) => Math.round(((a >> s) & 255) * (1 - u) + ((b >> s) & 255) * u);
    return `rgb(${ch(16)},${ch(8)},${ch(0)})`;
  }
  // Shortens text to fit `room` px, keeping its distinctive tail ("…rs.lr").
  let measureCtx = null;
  function fitText(text, room, font) {
    measureCtx = measureCtx || document.createElement('canvas').getContext('2d');
    measureCtx.font = font;
    if (measureCtx.measureText(text).width <= room) return text;
    let k = text.length - 1;
    while (k > 1 && measureCtx.measureText('…' + text.slice(text.length - k)).width > room) k--;
    return '…' + text.slice(text.length - k);
  }
  const natural = new Intl.Collator(undefined, { numeric: true }).compare;

  // An axis maps each run's value to t in [0, 1] (1 = top) or null (missing).
  function pcAxis(name, type, values, isColor) {
    const ax = { name, type, values, isColor, ticks: [], t: [] };
    if (type === 'category') {
      const cats = [...new Set(values.filter((v) => v != null).map(String))].sort(natural);
      const idx = new Map(cats.map((c, i) => [c, i]));
      const pos = (i) => (cats.length === 1 ? 0.5 : 1 - i / (cats.length - 1));
      ax.t = values.map((v) => (v == null ? null : pos(idx.get(String(v)))));
      ax.ticks = cats.map((c, i) => ({ t: pos(i), label: c }));
    } else {
      const nums = values.map((v) => (v == null || v === '' ? null : Number(v))).map((v) => (Number.isFinite(v) ? v : null));
      const fin = nums.filter((v) => v != null);
      const lo = fin.length ? Math.min(...fin) : 0, hi = fin.length ? Math.max(...fin) : 1;
      ax.log = lo > 0 && hi / lo >= 1000;
      const f = ax.log ? Math.log10 : (v) => v;
      let a = f(lo), b = f(hi);
      if (a === b) { const p = Math.abs(a) * 0.1 || 1; a -= p; b += p; }
      ax.t = nums.map((v) => (v == null ? null : (f(v) - a) / (b - a)));
      const tk = ax.log ? logTicks(Math.pow(10, a), Math.pow(10, b), 5) : linearTicks(a, b, 5);
      ax.ticks = tk.ticks.map((v) => ({ t: (f(v) - a) / (b - a), label: fmtCompact(v, tk.log ? v : tk.step) }));
    }
    ax.missing = ax.t.some((t) => t == null);
    return ax;
  }

  let pcCount = 0;
  class ParCoords {
    constructor(el, data) {
      this.el = el;
      this.id = ++pcCount;
      this.runs = (data && data.runs) || [];
      this.height = Number(el.dataset.height) > 0 ? Number(el.dataset.height) : 380;
      const n = this.runs.length;
      this.axes = ((data && data.dims) || []).map((d) => pcAxis(d.name, d.type, (d.values || []).slice(0, n).concat(Array(Math.max(0, n - (d.values || []).length)).fill(null)), false));
      this.colorName = data && data.color ? data.color.name : null;
      if (this.colorName) {
        const cv = (data.color.values || []).slice(0, n);
        while (cv.length < n) cv.push(null);
        const ax = pcAxis(this.colorName, 'number', cv, true);
        this.axes.push(ax);
        this.colors = ax.t.map((t) => (t == null ? '#9ca3af' : seqColor(t)));
      } else this.colors = this.runs.map(() => PALETTE[0]);
      this.brush = new Map();
      this.hot = null;
      el.textContent = '';
      el.classList.add('rs-parcoords');
      this.tip = mk('div', { className: 'rs-tooltip', hidden: true }, el);
      this.bind();
      this.lastW = 0;
      this.ro = new ResizeObserver(() => { const w = el.clientWidth; if (w && w !== this.lastW) this.render(); });
      this.ro.observe(el);
      this.render();
    }

    render() {
      const W = Math.max(320, this.el.clientWidth || 800), H = this.height, axes = this.axes, n = axes.length;
      this.lastW = this.el.clientWidth;
      const m = { l: 52, r: 64, t: 52, b: 46 }, top = m.t, bot = H - m.b, missY = bot + 26;
      const xs = axes.map((_, i) => (n === 1 ? W / 2 : m.l + (i * (W - m.l - m.r)) / (n - 1)));
      const yOf = (t) => (t == null ? missY : top + 8 + (1 - t) * (bot - top - 16)); // inset: lines never hug the ends
      Object.assign(this, { W, top, bot, missY, xs, yOf });
      const svg = svgEl('svg', { class: 'rs-pc-svg' + (this.runs.length <= 12 ? ' rs-pc-few' : ''), width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
        'aria-label': `Parallel coordinates of ${this.runs.length} runs across ${n - (this.colorName ? 1 : 0)} dimensions${this.colorName ? `, coloured by ${this.colorName}` : ''}.` });
      const defs = svgEl('defs', {}, svg);
      const gid = `rs-pc-grad-${this.id}`;
      const grad = svgEl('linearGradient', { id: gid, x1: 0, y1: 1, x2: 0, y2: 0 }, defs);
      VIRIDIS.forEach((c, i) => svgEl('stop', { offset: i / (VIRIDIS.length - 1), 'stop-color': c }, grad));

      // lines: grey (no colour value) first so coloured ones sit on top
      const gl = svgEl('g', { class: 'rs-pc-lines' }, svg);
      this.py = this.runs.map((_, r) => axes.map((ax) => yOf(ax.t[r])));
      const order = this.runs.map((_, r) => r).sort((a, b) => (this.colors[a] === '#9ca3af' ? 0 : 1) - (this.colors[b] === '#9ca3af' ? 0 : 1));
      this.lines = [];
      for (const r of order) {
        this.lines[r] = svgEl('polyline', { class: 'rs-pc-line', stroke: this.colors[r],
          points: xs.map((x, a) => `${x.toFixed(1)},${this.py[r][a].toFixed(1)}`).join(' ') }, gl);
      }
      this.hotLine = svgEl('polyline', { class: 'rs-pc-hot', display: 'none' }, svg);

      // axes
      const spacing = n > 1 ? (W - m.l - m.r) / (n - 1) : W;
      const stagger = spacing < 110;
      const labelFont = `600 12px ${getComputedStyle(this.el).fontFamily || 'sans-serif'}`;
      this.brushRects = [];
      axes.forEach((ax, a) => {
        const x = xs[a], g = svgEl('g', { class: 'rs-pc-axis' + (ax.isColor ? ' rs-pc-coloraxis' : '') }, svg);
        if (ax.isColor) svgEl('rect', { x: x - 4, y: top + 8, width: 8, height: bot - top - 16, fill: `url(#${gid})`, rx: 2 }, g);
        else svgEl('line', { x1: x, x2: x, y1: top, y2: bot, class: 'rs-pc-axisline' }, g);
        const right = ax.isColor;
        const every = Math.max(1, Math.ceil(ax.ticks.length / Math.max(2, (bot - top) / 14)));
        ax.ticks.forEach((tk, k) => {
          if (k % every) return;
          const y = yOf(tk.t);
          svgEl('line', { x1: right ? x + 4 : x - 4, x2: x, y1: y, y2: y, class: 'rs-pc-tickline' }, g);
          const lab = tk.label.length > 14 ? tk.label.slice(0, 13) + '…' : tk.label;
          svgEl('text', { x: right ? x + 8 : x - 7, y, class: 'rs-pc-tick', 'text-anchor': right ? 'start' : 'end', 'dominant-baseline': 'middle' }, g).textContent = lab;
        });
        if (ax.missing) {
          svgEl('line', { x1: x, x2: x, y1: bot + 6, y2: missY - 5, class: 'rs-pc-gap' }, g);
          svgEl('text', { x: x - 7, y: missY, class: 'rs-pc-tick rs-pc-missing', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, g).textContent = 'n/a';
        }
        const name = ax.log ? `${ax.name} (log)` : ax.name;
        const anchor = n > 1 && a === 0 ? 'start' : n > 1 && a === n - 1 ? 'end' : 'middle';
        const lx = anchor === 'start' ? 4 : anchor === 'end' ? W - 4 : x, edge = Math.abs(lx - x);
        const room = Math.min(180, anchor === 'middle' ? spacing * (stagger ? 2 : 1) - 12 : spacing * (stagger ? 1 : 0.5) + edge - 8);
        const t = svgEl('text', { x: lx, y: top - (stagger && a % 2 ? 30 : 14), class: 'rs-pc-label', 'text-anchor': anchor }, g);
        t.textContent = fitText(name, room, labelFont);
        svgEl('title', {}, t).textContent = name;
        this.brushRects[a] = svgEl('rect', { class: 'rs-pc-brush', x: x - 7, width: 14, display: 'none' }, g);
        svgEl('rect', { class: 'rs-pc-hit', x: x - 12, width: 24, y: top - 4, height: bot - top + 8 }, g);
      });
      if (!this.runs.length) svgEl('text', { x: W / 2, y: H / 2, class: 'rs-pc-label', 'text-anchor': 'middle' }, svg).textContent = 'No runs to compare';

      if (this.svg) this.svg.replaceWith(svg); else this.el.insertBefore(svg, this.tip);
      this.svg = svg;
      this.applyBrush();
      this.setHot(null);
      this.el.dataset.state = 'drawn';
      this.el.dataset.lines = String(this.runs.length);
    }

    axisAt(p) {
      if (p.y < this.top - 8 || p.y > this.bot + 8) return -1;
      let best = -1, bd = 13;
      this.xs.forEach((x, a) => { const dd = Math.abs(p.x - x); if (dd < bd) { bd = dd; best = a; } });
      return best;
    }

    tOf(y) { return 1 - (clamp(y, this.top + 8, this.bot - 8) - this.top - 8) / (this.bot - this.top - 16); }

    applyBrush() {
      let active = 0;
      this.active = this.runs.map((_, r) => {
        for (const [a, [lo, hi]] of this.brush) { const t = this.axes[a].t[r]; if (t == null || t < lo || t > hi) return false; }
        return true;
      });
      this.active.forEach((on, r) => { this.lines[r].classList.toggle('rs-pc-faded', !on); if (on) active++; });
      this.brushRects.forEach((rect, a) => {
        const b = this.brush.get(a);
        if (!b) { rect.setAttribute('display', 'none'); return; }
        const y0 = this.yOf(b[1]), y1 = this.yOf(b[0]);
        rect.setAttribute('y', y0); rect.setAttribute('height', Math.max(1, y1 - y0)); rect.removeAttribute('display');
      });
      this.el.dataset.selected = String(active);
    }

    // Nearest active line to the pointer, interpolated between neighbouring axes.
    nearestLine(p) {
      const xs = this.xs;
      if (!this.runs.length || p.y < this.top - 12 || p.y > this.missY + 10) return null;
      let a = 0;
      while (a < xs.length - 2 && p.x > xs[a + 1]) a++;
      const u = xs.length > 1 ? clamp((p.x - xs[a]) / (xs[a + 1] - xs[a]), 0, 1) : 0;
      let best = null, bd = 7;
      this.py.forEach((ys, r) => {
        if (!this.active[r]) return;
        const y = xs.length > 1 ? ys[a] + (ys[a + 1] - ys[a]) * u : ys[0];
        const dd = Math.abs(y - p.y);
        if (dd < bd) { bd = dd; best = r; }
      });
      return best;
    }

    setHot(r, p) {
      this.hot = r;
      this.svg.classList.toggle('rs-pc-pointing', r != null);
      if (r == null) { this.hotLine.setAttribute('display', 'none'); this.tip.hidden = true; return; }
      this.hotLine.setAttribute('points', this.lines[r].getAttribute('points'));
      this.hotLine.setAttribute('stroke', this.colors[r]);
      this.hotLine.removeAttribute('display');
      const t = this.tip, run = this.runs[r];
      t.textContent = '';
      mk('div', { className: 'rs-tooltip-head', textContent: run.label || run.id }, t);
      const tbl = mk('table', {}, t);
      for (const ax of this.axes) {
        const tr = mk('tr', {}, tbl), v = ax.values[r];
        mk('td', { className: 'rs-tt-label', textContent: ax.name }, tr);
        mk('td', { className: 'rs-tt-val', textContent: v == null ? '—' : typeof v === 'number' ? fmtNum(v) : String(v) }, tr);
      }
      t.hidden = false;
      const tw = t.offsetWidth, th = t.offsetHeight, left = p.x + 16 + tw > this.el.clientWidth ? p.x - 16 - tw : p.x + 16;
      Object.assign(t.style, { left: Math.max(0, left) + 'px', top: clamp(p.y + 12, 0, Math.max(0, this.el.clientHeight - th)) + 'px' });
    }

    bind() {
      const el = this.el, opt = { signal: (this.evt = new AbortController()).signal };
      const pos = (e) => { const r = this.svg.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; };
      el.addEventListener('pointerdown', (e) => {
        if (e.button !== 0 || !this.svg) return;
        const p = pos(e), a = this.axisAt(p);
        this.downHot = null;
        if (a < 0) { this.downHot = this.hot; return; }
        this.brushing = { a, y0: p.y, moved: false };
        el.setPointerCapture(e.pointerId);
        this.setHot(null);
        e.preventDefault();
      }, opt);
      el.addEventListener('pointermove', (e) => {
        if (!this.svg) return;
        const p = pos(e), b = this.brushing;
        if (b) {
          if (Math.abs(p.y - b.y0) < 3 && !b.moved) return;
          b.moved = true;
          const t0 = this.tOf(b.y0), t1 = this.tOf(p.y);
          this.brush.set(b.a, [Math.min(t0, t1), Math.max(t0, t1)]);
          this.applyBrush();
          return;
        }
        const r = this.nearestLine(p);
        if (r !== this.hot || r != null) this.setHot(r, p);
      }, opt);
      el.addEventListener('pointerup', (e) => {
        const b = this.brushing;
        this.brushing = null;
        if (b) {
          if (!b.moved) { this.brush.delete(b.a); this.applyBrush(); } // a click on an axis clears it
          return;
        }
        const r = this.hot;
        if (r == null || r !== this.downHot) return;
        const href = this.runs[r].href;
        if (!href) return;
        let url;
        try { url = new URL(href, location.href); } catch (err) { return; }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') return;
        if (e.ctrlKey || e.metaKey) window.open(url.href, '_blank', 'noopener');
        else location.assign(url.href);
      }, opt);
      el.addEventListener('pointerleave', () => { if (!this.brushing && this.svg) this.setHot(null); }, opt);
      el.addEventListener('dblclick', (e) => {
        const a = this.axisAt(pos(e));
        if (a >= 0) { this.brush.delete(a); this.applyBrush(); }
      }, opt);
    }

    clearBrushes() { this.brush.clear(); this.applyBrush(); }
    destroy() { this.ro.disconnect(); this.evt.abort(); this.el.__rsPc = null; }
  }

  RS.parcoords = function (container, data) {
    if (container.__rsPc) {
      if (!data) return container.__rsPc;
      container.__rsPc.destroy();
    }
    if (!data) data = parseJSON(container.dataset.plot, null);
    if (!data || typeof data !== 'object') {
      container.textContent = 'Invalid data-plot attribute (expected a JSON object).';
      container.dataset.state = 'error';
      return null;
    }
    return (container.__rsPc = new ParCoords(container, data));
  };

  /* ---------- auto-mount ---------- */
  RS.mountAll = function (root = document) {
    const all = (sel) => [...(root.matches && root.matches(sel) ? [root] : []), ...root.querySelectorAll(sel)];
    all('.rs-chart-controls').forEach((b) => RS.controls(b));
    all('.rs-chart').forEach((c) => { if (!c.__rsChart) RS.chart(c); });
    all('.rs-parcoords').forEach((c) => { if (!c.__rsPc) RS.parcoords(c); });
  };
  const start = () => { if (window.RS_POLL_MS == null && RS.pollMs === 2000) RS.pollMs = pollFrom(); RS.mountAll(); };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
