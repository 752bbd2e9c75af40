// The review page: render the review's items by kind, move a focus over the cards, send each decision at once.
// server.py inlines common.js first ("use strict", $, el, say, api)
const SECTIONS = [
  ["label", "Suspected label errors"],
  ["conflict", "Duplicates with different labels"],
  ["leak", "Duplicates across splits (leaks)"],
  ["duplicate", "Near-duplicates"],
  ["exact-duplicate", "Exact duplicates"],
  ["outlier", "Outliers"],
];
let state = null, focus = 0;
let shown = null;  // the image whose neighbours the panel shows; null: the panel is closed
const K = 8;  // neighbours shown (the server allows 1-50)
const thumb = (key) => "/thumb?key=" + encodeURIComponent(key);

function decisionText(d) {
  if (!d) return null;
  if (d.startsWith("relabel:")) return ["relabel", "→ " + d.slice(8)];
  return [d, d];
}

function card(it, index) {
  const dec = decisionText(it.decision);
  const sel = el("select", {"aria-label": "relabel", onchange: (ev) => { ev.stopPropagation(); if (ev.target.value) decide(index, "relabel", ev.target.value); }},
    el("option", {value: ""}, "relabel…"), ...state.classes.map((c, i) => el("option", {value: c}, `${i < 10 ? (i + 1) % 10 + " " : ""}${c}`)));
  const score = it.score === null ? "" : `score ${it.score.toFixed(2)}`;
  const labels = it.suggested && it.suggested !== it.given
    ? el("div", {class: "labels"}, el("b", {}, it.given ?? "—"), " → ", el("b", {}, it.suggested), " ?")
    : el("div", {class: "labels"}, "label ", el("b", {}, it.given ?? "—"));
  const c = el("div", {class: "card" + (dec ? " d-" + dec[0] : ""), "data-index": index, "data-key": it.key, onclick: () => setFocus(index)},
    el("img", {src: thumb(it.key), alt: it.name, loading: "lazy", title: "click: the most similar images",
      onclick: (ev) => { ev.stopPropagation(); setFocus(index, false); showNeighbours(it.key); }}),
    dec ? el("span", {class: "badge"}, dec[1]) : null,
    el("span", {class: "kind"}, it.kind),
    el("div", {class: "name", title: it.key}, it.name),
    labels,
    el("div", {class: "reason"}, [score, it.reason].filter(Boolean).join(" · ")),
    el("div", {class: "acts"},
      el("button", {onclick: (ev) => { ev.stopPropagation(); decide(index, "keep"); }}, "keep"),
      el("button", {onclick: (ev) => { ev.stopPropagation(); decide(index, "exclude"); }}, "exclude"),
      state.classes.length ? sel : null));
  return c;
}

function render() {
  const main = $("main");
  main.replaceChildren();
  $("progress").textContent = `${state.decided} of ${state.images} images decided · each saved at once`;
  $("progress").title = `${state.out}/review.sqlite`;
  $("notes").textContent = state.notes.join(" ");
  $("legend").replaceChildren(...state.classes.slice(0, 10).map((c, i) => el("span", {}, el("kbd", {}, String((i + 1) % 10)), " " + c)));
  if (!state.items.length) { main.append(el("p", {class: "empty"}, "The review found nothing to look at.")); return; }
  state.items.forEach((it, i) => it.index = i);
  for (const [kind, title] of SECTIONS) {
    const items = state.items.filter((it) => it.kind === kind);
    if (!items.length) continue;
    main.append(el("h2", {}, title + " ", el("span", {class: "n"}, `(${items.length})`)));
    if (["conflict", "leak", "duplicate", "exact-duplicate"].includes(kind)) {
      const groups = new Map();
      for (const it of items) { const g = it.group ?? -1 - it.index; if (!groups.has(g)) groups.set(g, []); groups.get(g).push(it); }
      for (const [g, members] of groups) {
        main.append(el("div", {class: "group-title"}, g >= 0 ? `group ${g}` : ""), el("div", {class: "group"}, ...members.map((it) => card(it, it.index))));
      }
    } else {
      main.append(el("div", {class: "grid"}, ...items.map((it) => card(it, it.index))));
    }
  }
  const known = new Set(SECTIONS.map((s) => s[0]));
  const other = state.items.filter((it) => !known.has(it.kind));
  if (other.length) main.append(el("h2", {}, "Other"), el("div", {class: "grid"}, ...other.map((it) => card(it, it.index))));
  setFocus(Math.min(focus, state.items.length - 1), false);
}

function domOrder() { return [...document.querySelectorAll(".card")]; }

function setFocus(index, scroll = true) {
  focus = index;
  for (const c of document.querySelectorAll(".card.focus")) c.classList.remove("focus");
  const c = document.querySelector(`.card[data-index="${index}"]`);
  if (c) { c.classList.add("focus"); if (scroll) c.scrollIntoView({block: "nearest"}); }
  const it = state.items[index];
  if (shown !== null && it && it.key !== shown) showNeighbours(it.key);  // an open panel follows the focus
}

// The panel: the k images of the whole data set nearest to one (cosine of the review's features), itself left out.
async function showNeighbours(key) {
  if (!state.neighbours) { say("no neighbours: this review carries no features", true); return; }
  shown = key;
  document.body.classList.add("nb-open");
  const panel = $("nbrs");
  panel.hidden = false;
  if (!panel.childElementCount) panel.append(el("p", {class: "muted"}, "Finding the most similar images…"));
  let r;
  try { r = await api(`/api/neighbours?key=${encodeURIComponent(key)}&k=${K}`); }
  catch (e) { say(e.message, true); return; }
  if (shown !== key) return;  // a later click asked for another image meanwhile
  const where = (n) => [n.label ?? "no label", n.split].filter(Boolean).join(" · ");
  panel.replaceChildren(
    el("div", {class: "nb-head"}, el("h2", {}, "Most similar images"),
      el("button", {class: "close", title: "close (Esc)", "aria-label": "close", onclick: closeNeighbours}, "×")),
    el("div", {class: "nb-query"}, el("img", {src: thumb(key), alt: r.name}),
      el("div", {}, el("div", {class: "name", title: r.key}, r.name), el("div", {}, el("b", {}, where(r))),
        r.kind ? el("span", {class: "tag"}, r.kind) : null)),
    el("p", {class: "muted nb-note"}, `${r.neighbours.length} nearest of ${r.images} images, by the cosine of the review's features`),
    el("ol", {class: "nb-list"}, ...r.neighbours.map((n) =>
      el("li", {class: "nb", "data-key": n.key, title: n.key, onclick: () => openFrom(n.key)},
        el("img", {src: thumb(n.key), alt: n.name, loading: "lazy"}),
        el("div", {class: "nb-text"},
          el("div", {class: "name"}, n.name),
          el("div", {}, el("b", {}, where(n)), " · ", el("span", {class: "sim"}, `cosine ${n.similarity.toFixed(3)}`),
            n.kind ? el("span", {class: "tag"}, n.kind) : null))))));
}

// A neighbour clicked: its own neighbours; the focus goes to its card when the review flagged it
function openFrom(key) {
  const it = state.items.find((x) => x.key === key);
  if (it) setFocus(it.index);
  showNeighbours(key);
}

function closeNeighbours() {
  shown = null;
  document.body.classList.remove("nb-open");
  $("nbrs").hidden = true;
  $("nbrs").replaceChildren();
}

function move(step) {
  const order = domOrder().map((c) => +c.dataset.index);
  const at = order.indexOf(focus);
  const next = order[Math.max(0, Math.min(order.length - 1, at + step))];
  if (next !== undefined) setFocus(next);
}

async function decide(index, action, label) {
  const it = state.items[index];
  try {
    state = await api("/api/decide", {key: it.key, action, label: label ?? null});
    render();
    say(`${it.name}: ${action}${label ? " → " + label : ""} (saved)`);
    move(1);
  } catch (e) { say(e.message, true); }
}

async function undo() {
  try {
    state = await api("/api/undo", {});
    render();
    say(state.undone ? `undone: ${state.undone.split(/[\\/]/).pop()}` : "nothing to undo");
  } catch (e) { say(e.message, true); }
}

async function exportList() {
  try {
    const r = await api("/api/export", {});
    say(`wrote ${r.path}: ${r.relabelled} relabelled, ${r.excluded} excluded`);
  } catch (e) { say(e.message, true); }
}

document.addEventListener("keydown", (ev) => {
  if (!state || ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.tagName === "SELECT") return;
  const k = ev.key;
  if (k === "Escape") { if (shown !== null) { closeNeighbours(); ev.preventDefault(); } }
  else if (k === "ArrowRight" || k === "ArrowDown") { move(1); ev.preventDefault(); }
  else if (k === "ArrowLeft" || k === "ArrowUp") { move(-1); ev.preventDefault(); }
  else if (k === "u") undo();
  else if (k === "e") exportList();
  else if (!state.items.length) return;
  else if (k === "k") decide(focus, "keep");
  else if (k === "x") decide(focus, "exclude");
  else if (k === "n") showNeighbours(state.items[focus].key);
  else if (/^[0-9]$/.test(k)) {
    const c = state.classes[(+k + 9) % 10];  // 1 -> the first class, 0 -> the tenth
    if (c === undefined) { say(`no class ${k}: there are ${state.classes.length}`, true); return; }
    const it = state.items[focus];
    decide(focus, c === it.given ? "keep" : "relabel", c === it.given ? undefined : c);
  }
});
$("export").addEventListener("click", exportList);

api("/api/state").then((s) => { state = s; render(); }).catch((e) => say("cannot load the review: " + e.message, true));
