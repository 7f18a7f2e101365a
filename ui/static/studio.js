// UPRM Studio page behaviour: seek the player from the timeline and the segment list, draw the
// current-time cursor on the timeline, and keyboard shortcuts. Plotly is bundled inside Gradio (no
// window.Plotly), so we use the graph div's own event emitter and axis mapping.
(function () {
  // the player of the visible tab (Analyse or Review)
  const video = () => {
    const all = [...document.querySelectorAll('#player video, #review_player video')];
    return all.find((v) => v.offsetParent !== null) || all[0];
  };
  const meta = () => {
    const el = document.querySelector('#uprm_meta textarea, #uprm_meta input');
    try { return el && el.value ? JSON.parse(el.value) : {}; } catch (e) { return {}; }
  };
  window.uprmSeek = function (t) {
    const v = video();
    t = Number(t);
    if (!v || !isFinite(t)) return;
    v.pause();
    v.currentTime = Math.max(0, Math.min(t, (v.duration || t)));
    drawCursors();
  };
  function bindPlots() {
    document.querySelectorAll('.uprm-seekable .js-plotly-plot').forEach((gd) => {
      if (gd.__uprmBound || typeof gd.on !== 'function') return;
      gd.__uprmBound = true;
      gd.on('plotly_click', (ev) => {
        const p = ev && ev.points && ev.points[0];
        if (!p) return;
        const t = (p.customdata !== undefined && p.customdata !== null) ? p.customdata : p.x;
        window.uprmSeek(Array.isArray(t) ? t[0] : t);
      });
    });
  }
  function drawCursors() {
    const v = video();
    document.querySelectorAll('#timeline .js-plotly-plot').forEach((gd) => {
      const fl = gd._fullLayout;
      if (!fl || !fl.xaxis || !v) return;
      let line = gd.parentElement.querySelector('.uprm-cursor');
      if (!line) {
        line = document.createElement('div');
        line.className = 'uprm-cursor';
        line.style.cssText = 'position:absolute;width:2px;background:#111;pointer-events:none;z-index:10';
        gd.parentElement.style.position = 'relative';
        gd.parentElement.appendChild(line);
      }
      const ax = fl.xaxis;
      const x = ax._offset + ax.l2p(v.currentTime || 0);
      const gdTop = gd.offsetTop;
      line.style.left = (gd.offsetLeft + x) + 'px';
      line.style.top = (gdTop + fl._size.t) + 'px';
      line.style.height = (fl.height - fl._size.t - fl._size.b) + 'px';
      line.dataset.time = String(v.currentTime || 0);
    });
    const box = document.querySelector('#current_time');
    if (box && v) box.textContent = `${(v.currentTime || 0).toFixed(2)} s · frame ${Math.round((v.currentTime || 0) * (meta().fps || 0))}`;
  }
  function stepFrames(n) {
    const v = video();
    const fps = meta().fps || 10;
    if (!v) return;
    v.pause();
    v.currentTime = Math.max(0, Math.min(v.duration || 1e9, v.currentTime + n / fps));
  }
  function jumpSegment(dir) {
    const v = video();
    const segs = (meta().segments || []).map((s) => s[0]).sort((a, b) => a - b);
    if (!v || !segs.length) return;
    const now = v.currentTime + (dir > 0 ? 0.05 : -0.05);
    const target = dir > 0 ? segs.find((s) => s > now) : [...segs].reverse().find((s) => s < now);
    if (target !== undefined) window.uprmSeek(target);
  }
  const clickButton = (id) => { const b = document.querySelector('#' + id); if (b) b.click(); };
  document.addEventListener('keydown', (e) => {
    const tag = (e.target && e.target.tagName) || '';
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) || e.target.isContentEditable) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const v = video();
    const keys = {
      ' ': () => v && (v.paused ? v.play() : v.pause()),
      'k': () => v && (v.paused ? v.play() : v.pause()),
      ',': () => stepFrames(-1), '.': () => stepFrames(1),
      '<': () => stepFrames(-10), '>': () => stepFrames(10),
      'n': () => jumpSegment(1), 'p': () => jumpSegment(-1),
      // review mode
      'a': () => clickButton('rv_accept'), 'r': () => clickButton('rv_reject'),
      '[': () => clickButton('rv_set_start'), ']': () => clickButton('rv_set_end'),
      'j': () => clickButton('rv_next'), 'u': () => clickButton('rv_prev'),
    };
    const fn = keys[e.key];
    if (fn) { e.preventDefault(); fn(); }
  });
  // Re-rendered overlays (layer toggles) replace the player's source: keep the viewer's place.
  let last = { src: '', t: 0 };
  document.addEventListener('timeupdate', (e) => {
    if (e.target.closest && e.target.closest('#player')) last = { src: e.target.currentSrc, t: e.target.currentTime };
  }, true);
  document.addEventListener('loadedmetadata', (e) => {
    const v = e.target;
    if (!(v.closest && v.closest('#player'))) return;
    const bothOverlays = /overlay_/.test(last.src) && /overlay_/.test(v.currentSrc) && last.src !== v.currentSrc;
    if (bothOverlays && last.t > 0) v.currentTime = Math.min(last.t, v.duration || last.t);
  }, true);
  setInterval(() => { bindPlots(); drawCursors(); }, 300);
  window.uprmCurrentTime = () => { const v = video(); return v ? v.currentTime : 0; };
})();
