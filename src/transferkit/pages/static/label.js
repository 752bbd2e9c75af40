// The labelling page: show the first image of the queue, send each answer at once, show what the server measured.
// server.py inlines common.js first ("use strict", $, el, say, api)
let state = null, shown = null, busy = false, poll = null;  // shown: the image on screen until it is answered
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const pct = (x) => (100 * x).toFixed(1) + "%";
const thumb = (key) => "/thumb?key=" + encodeURIComponent(key);

function renderCurrent() {
  const q = shown;
  $("progress").textContent = `${state.labelled} labelled · ${state.left} left of ${state.images} · asked by ${state.strategy || "—"}`;
  $("notes").textContent = state.notes.join(" ");
  if (!q) {
    $("image").removeAttribute("src"); $("image").style.display = "none";
    $("name").textContent = "";
    $("why").textContent = state.ranking ? "Ranking the next images…" : "Every image is labelled. Export the list or train a model.";
  } else {
    $("image").style.display = "";
    if ($("image").dataset.key !== q.key) { $("image").src = thumb(q.key); $("image").dataset.key = q.key; $("image").alt = q.name; }
    $("name").textContent = q.name;
    $("why").textContent = q.why;
  }
  $("answers").replaceChildren(
    ...state.classes.map((c, i) => el("button", {class: "cls", disabled: !q, onclick: () => answer(c)}, i < 10 ? el("kbd", {}, String((i + 1) % 10)) : "", " " + c)),
    el("button", {disabled: !q, onclick: () => answer("skip")}, el("kbd", {}, "s"), " skip"),
    el("button", {onclick: undo}, el("kbd", {}, "u"), " undo"));
  $("next").replaceChildren(...state.queue.filter((n) => !q || n.key !== q.key).slice(0, 6).map((n) => el("img", {src: thumb(n.key), alt: n.name, title: n.why})));
}

function renderSide() {
  const most = Math.max(1, ...Object.values(state.counts));
  $("counts").replaceChildren(...state.classes.map((c, i) => el("div", {class: "count"},
    el("div", {class: "row"}, el("span", {}, `${i < 10 ? (i + 1) % 10 + " · " : ""}${c}`), el("b", {}, String(state.counts[c] || 0))),
    el("div", {class: "track"}, el("div", {class: "fill", style: `width:${100 * (state.counts[c] || 0) / most}%`})))));
  const a = state.accuracy;
  if (a && a.error) { $("acc").textContent = "—"; $("acc-note").textContent = "not measured: " + a.error; }
  else if (a) {
    $("acc").textContent = pct(a.accuracy);
    $("acc-note").textContent = `95% interval ${pct(a.low)}–${pct(a.high)} · ${a.folds}-fold over ${a.used} labels` + (a.n !== state.labelled ? " · measuring again…" : "");
  } else { $("acc").textContent = "—"; $("acc-note").textContent = "needs 2 labels in 2 classes or more"; }
  drawCurve(state.curve);
  const r = state.refit_ms;
  $("refit").textContent = `refit ${r.last.toFixed(0)} ms (p50 ${r.p50.toFixed(0)}, p95 ${r.p95.toFixed(0)})`;
  const t = state.training;
  $("training").textContent = t.state === "running" ? `training on ${t.list}…` : t.state === "done" ? `bundle saved: ${t.bundle}` : t.state === "failed" ? `training failed: ${t.message}` : "";
  $("train").disabled = t.state === "running";
}

function drawCurve(points) {
  // accuracy (0-100%) against labels; the band is each point's 95% interval
  const s = $("curve"), W = 300, H = 170, L = 34, R = 10, T = 8, B = 30;
  s.replaceChildren();
  const maxN = Math.max(10, ...points.map((p) => p.n));
  const x = (n) => L + (W - L - R) * n / maxN, y = (v) => T + (H - T - B) * (1 - v);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    s.append(svg("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e4e8ee"}));
    s.append(svg("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#5f6b7a"}, (100 * v) + "%"));
  }
  s.append(svg("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "font-size": 10, fill: "#5f6b7a"}, "labels"));
  for (const n of [0, maxN]) s.append(svg("text", {x: x(n), y: H - 12, "text-anchor": "middle", "font-size": 10, fill: "#5f6b7a"}, String(n)));
  if (!points.length) {
    s.append(svg("text", {x: (L + W) / 2, y: H / 2, "text-anchor": "middle", "font-size": 11, fill: "#5f6b7a"}, "the curve starts at 2 labels in 2 classes"));
    return;
  }
  const band = points.map((p) => `${x(p.n)},${y(p.high)}`).concat(points.slice().reverse().map((p) => `${x(p.n)},${y(p.low)}`));
  s.append(svg("polygon", {points: band.join(" "), fill: "#2f6fdf22"}));
  s.append(svg("polyline", {points: points.map((p) => `${x(p.n)},${y(p.accuracy)}`).join(" "), fill: "none", stroke: "#2f6fdf", "stroke-width": 2}));
  for (const p of points) s.append(svg("circle", {cx: x(p.n), cy: y(p.accuracy), r: 2.5, fill: "#2f6fdf", class: "point"}));
}

// A new answer or undo shows the queue's first image; a refresh (the re-ranked queue) leaves the one on screen.
function render(next) { if (next || !shown) shown = state.queue[0] || null; renderCurrent(); renderSide(); watch(); }

function watch() {
  // the accuracy is measured on the server's background thread: ask again until it covers the labels shown
  const stale = state.accuracy && !state.accuracy.error ? state.accuracy.n !== state.labelled : false;
  const running = state.training.state === "running";
  clearTimeout(poll);
  if (state.ranking) poll = setTimeout(refresh, 300);
  else if (stale || running || (state.accuracy === null && state.labelled >= 4)) poll = setTimeout(refresh, 1000);
}
async function refresh() { try { state = await api("/api/state"); render(false); } catch (e) { say(e.message, true); } }

async function send(path, body, done) {
  if (busy) return;
  busy = true;
  try { state = await api(path, body); render(true); done && done(state); }
  catch (e) { say(e.message, true); }
  finally { busy = false; }
}
function answer(label) {
  const q = state && shown;
  if (!q) return;
  send("/api/answer", {key: q.key, label}, () => say(`${q.name}: ${label} (saved)`));
}
function undo() { send("/api/undo", {}, (s) => say(s.undone ? `undone: ${s.undone.split(/[\\/]/).pop()}` : "nothing to undo")); }

document.addEventListener("keydown", (ev) => {
  if (!state || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "s") answer("skip");
  else if (k === "u") undo();
  else if (/^[0-9]$/.test(k)) {
    const c = state.classes[(+k + 9) % 10];  // 1 -> the first class, 0 -> the tenth
    if (c === undefined) say(`no class ${k}: there are ${state.classes.length}`, true); else answer(c);
  }
});
$("export").addEventListener("click", async () => {
  try { const r = await api("/api/export", {}); say(`wrote ${r.path} (${r.rows} labels)`); } catch (e) { say(e.message, true); }
});
$("train").addEventListener("click", () => send("/api/train", {}, () => say("training started")));

api("/api/state").then((s) => { state = s; render(true); }).catch((e) => say("cannot load the labelling: " + e.message, true));
