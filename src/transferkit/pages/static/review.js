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
    el("img", {src: "/thumb?key=" + encodeURIComponent(it.key), alt: it.name, loading: "lazy"}),
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
  if (k === "ArrowRight" || k === "ArrowDown") { move(1); ev.preventDefault(); }
  else if (k === "ArrowLeft" || k === "ArrowUp") { move(-1); ev.preventDefault(); }
  else if (k === "u") undo();
  else if (k === "e") exportList();
  else if (!state.items.length) return;
  else if (k === "k") decide(focus, "keep");
  else if (k === "x") decide(focus, "exclude");
  else if (/^[0-9]$/.test(k)) {
    const c = state.classes[(+k + 9) % 10];  // 1 -> the first class, 0 -> the tenth
    if (c === undefined) { say(`no class ${k}: there are ${state.classes.length}`, true); return; }
    const it = state.items[focus];
    decide(focus, c === it.given ? "keep" : "relabel", c === it.given ? undefined : c);
  }
});
$("export").addEventListener("click", exportList);

api("/api/state").then((s) => { state = s; render(); }).catch((e) => say("cannot load the review: " + e.message, true));
