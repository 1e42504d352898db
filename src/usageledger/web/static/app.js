// usageledger dashboard: reads only the read API (GET /v1/...), with the HttpOnly cookie.
"use strict";

const COLORS = ["#2f6fed", "#12b76a", "#f79009", "#9e77ed", "#f04438", "#0ba5ec", "#98a2b3"];
const ZONES = ["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
  "Asia/Tokyo", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Sydney"];
const full = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
function usd(text) { return "$" + Number(text).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { window.location.assign("/"); throw new Error("signed out"); }
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = error.message || String(error);
}

function isoDay(date) { return date.toISOString().slice(0, 10); }
function addDays(day, n) { const d = new Date(day + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + n); return isoDay(d); }
function todayIn(tz) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
}

const state = { me: null, tz: "UTC", from: "", to: "" };

function renderTotals(totals) {
  const box = $("totals");
  box.replaceChildren();
  const items = [
    ["Total tokens", totals.total_tokens], ["Input", totals.input_tokens],
    ["Cached input", totals.cached_input_tokens], ["Output", totals.output_tokens],
  ];
  for (const [label, value] of items) {
    const stat = el("div", { class: "stat", "data-metric": label });
    stat.append(el("div", { class: "label" }, label), el("div", { class: "value" }, compact.format(value)),
      el("div", { class: "exact" }, full.format(value)));
    box.append(stat);
  }
  const cost = el("div", { class: "stat", "data-metric": "Cost" });
  cost.append(el("div", { class: "label" }, "Cost (USD)"), el("div", { class: "value" }, usd(totals.cost_usd)),
    el("div", { class: "exact" }, totals.cost_usd));
  box.append(cost);
}

function renderHeatmap(data) {
  const box = $("heatmap");
  box.replaceChildren();
  const size = 12, gap = 2, weeks = Math.ceil(data.cells.length / 7);
  const root = svg("svg", { viewBox: `0 0 ${weeks * (size + gap)} ${7 * (size + gap)}`, role: "img" });
  const shades = ["#eef0f3", "#c6dbff", "#8fb5ff", "#4f86f7", "#1d4fd8"];
  data.cells.forEach((cell, i) => {
    const rect = svg("rect", { x: Math.floor(i / 7) * (size + gap), y: cell.weekday * (size + gap),
      width: size, height: size, rx: 2, fill: shades[cell.level], class: "cell", "data-day": cell.day });
    const title = svg("title");
    title.textContent = `${cell.day}: ${full.format(cell.total_tokens)} tokens`;
    rect.append(title);
    rect.addEventListener("click", () => openDay(cell.day));
    root.append(rect);
  });
  box.append(root);
  $("streaks").textContent = `${data.active_days} active days · current streak ${data.current_streak} · longest ${data.longest_streak}`;
}

// Charts are drawn in the container's own pixels (viewBox width = its width), so their text is
// FONT px on every screen instead of shrinking with the SVG; they are redrawn when it resizes.
const FONT = 11;
const drawn = { daily: null, hourly: null };
function chartWidth(box) { return Math.max(240, Math.round(box.clientWidth || 720)); }
function chartHeight(width, min, max) { return Math.round(Math.min(max, Math.max(min, width * 0.3))); }

// A chart of many days is one Tab stop (the newest day); the arrow keys, Home and End move
// between days ("roving tabindex"), so a year of bars does not cost 365 presses of Tab.
function moveFocus(from, to) {
  from.setAttribute("tabindex", "-1");
  to.setAttribute("tabindex", "0");
  to.focus();
}

// One day is one transparent column (rect.day) drawn ABOVE its coloured segments (rect.seg) and
// as tall as the plot, the empty part above the stack included: the day's only target for the
// pointer, the keyboard and assistive technology, so a click anywhere on the bar or above it
// opens the day whatever the segments' sizes. Segments are pictures (pointer-events: none); the
// column's title lists them, one line per model.
function renderDaily(days, series) {
  const box = $("daily");
  box.replaceChildren();
  const width = chartWidth(box), height = chartHeight(width, 170, 280), pad = 40;
  drawn.daily = { width, args: [days, series] };
  const max = Math.max(1, ...days.map((d) => d.total_tokens));
  const step = (width - pad) / Math.max(days.length, 1);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height + 22}`, role: "group",
    "aria-label": "Daily tokens by model, one bar per day: arrow keys move, Enter opens the day" });
  for (const frac of [0.5, 1]) {
    const y = height - frac * (height - 10);
    root.append(svg("line", { x1: pad, x2: width, y1: y, y2: y, stroke: "#e4e7ec" }));
    const label = svg("text", { x: 0, y: y + 4, "font-size": FONT, fill: "#667085", "aria-hidden": "true" });
    label.textContent = compact.format(max * frac);
    root.append(label);
  }
  const columns = [];
  days.forEach((day, i) => {
    let y = height;
    const lines = [];
    series.forEach((s, k) => {
      const value = s.values[i] || 0;
      if (!value) return;
      const h = (value / max) * (height - 10);
      y -= h;
      root.append(svg("rect", { x: pad + i * step + 1, y, width: Math.max(step - 2, 1), height: h,
        fill: COLORS[k % COLORS.length], class: "seg", "data-day": day.day }));
      lines.push(`${s.label}: ${full.format(value)} tokens`);
    });
    const summary = `${day.day}: ${full.format(day.total_tokens)} tokens`;
    const column = svg("rect", { x: pad + i * step, y: 0, width: step, height, fill: "transparent",
      class: "day", "data-day": day.day, "data-total": day.total_tokens, role: "button",
      tabindex: i === days.length - 1 ? 0 : -1, "aria-label": `${summary}, open the day` });
    const title = svg("title");
    title.textContent = [summary, ...lines].join("\n");
    column.append(title);
    column.addEventListener("click", () => openDay(day.day));
    column.addEventListener("keydown", (event) => {
      const next = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: days.length - 1 }[event.key];
      if (event.key === "Enter" || event.key === " ") openDay(day.day);
      else if (columns[next]) moveFocus(column, columns[next]);
      else return;
      event.preventDefault();
    });
    columns.push(column);
  });
  root.append(...columns);  // after every segment, so on top of them
  if (days.length) {
    for (const [i, anchor] of [[0, "start"], [days.length - 1, "end"]]) {
      const t = svg("text", { x: pad + i * step + (anchor === "end" ? step : 0), y: height + 16,
        "font-size": FONT, fill: "#667085", "text-anchor": anchor });
      t.textContent = days[i].day;
      root.append(t);
    }
  }
  box.append(root);
  const legend = $("legend");
  legend.replaceChildren();
  series.forEach((s, k) => {
    const item = el("span");
    const swatch = el("i");
    swatch.style.background = COLORS[k % COLORS.length];
    item.append(swatch, document.createTextNode(s.label));
    legend.append(item);
  });
}

function table(node, headers, rows) {
  node.replaceChildren();
  const head = el("tr");
  headers.forEach(([label, num]) => head.append(el("th", num ? { class: "num" } : {}, label)));
  node.append(head);
  for (const row of rows) {
    const tr = el("tr");
    row.forEach((cell, i) => tr.append(el("td", headers[i][1] ? { class: "num" } : {}, cell)));
    node.append(tr);
  }
}

function when(iso) { return iso ? iso.replace("T", " ").slice(0, 16) + " UTC" : "—"; }

function renderHourly(data) {
  const box = $("hourly");
  box.replaceChildren();
  const width = chartWidth(box), height = chartHeight(width, 130, 200);
  drawn.hourly = { width, args: [data] };
  const max = Math.max(1, ...data.slots.map((s) => s.total_tokens));
  const step = width / data.slots.length;
  const every = step * 8 >= FONT * 4 ? 8 : 16;  // room for an "HH:MM" label
  const root = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, role: "img", "data-slots": data.slots.length });
  data.slots.forEach((slot, i) => {
    const h = (slot.total_tokens / max) * (height - 6);
    const rect = svg("rect", { x: i * step + 1, y: height - h, width: Math.max(step - 2, 1), height: h, fill: "#2f6fed", class: "slot" });
    const title = svg("title");
    title.textContent = `${slot.label}: ${full.format(slot.total_tokens)} tokens`;
    rect.append(title);
    root.append(rect);
    if (i % every === 0) {
      const t = svg("text", { x: i * step, y: height + 15, "font-size": FONT, fill: "#667085" });
      t.textContent = slot.label;
      root.append(t);
    }
  });
  box.append(root);
}

function redrawCharts() {
  if (drawn.daily && chartWidth($("daily")) !== drawn.daily.width) renderDaily(...drawn.daily.args);
  if (drawn.hourly && !$("day-detail").hidden && chartWidth($("hourly")) !== drawn.hourly.width) {
    renderHourly(...drawn.hourly.args);
  }
}

async function openDay(day) {
  try {
    const data = await api("/v1/usage/hourly", { day, tz: state.tz });
    $("day-detail").hidden = false;
    $("day-title").textContent = `${day} (${state.tz}) · ${full.format(data.totals.total_tokens)} tokens · ${usd(data.totals.cost_usd)}`;
    renderHourly(data);
    $("day-detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (error) { showError(error); }
}

// A newer load wins: newestOnly() gives each load a check that turns true once a later load of
// the same kind started, so an older, slower answer never overwrites a newer one.
function newestOnly() {
  let latest = 0;
  return () => { const mine = ++latest; return () => mine !== latest; };
}
const dashboardLoad = newestOnly(), boardLoad = newestOnly();

async function loadDashboard() {
  showError(null);
  const stale = dashboardLoad();
  const params = { from: state.from, to: state.to, tz: state.tz };
  try {
    const [summary, models, devices] = await Promise.all([
      api("/v1/usage/summary", params), api("/v1/usage/models", params), api("/v1/devices"),
    ]);
    if (stale()) return;
    renderTotals(summary.totals);
    table($("models"), [["Source"], ["Model"], ["Tokens", true], ["Share", true], ["Cost (USD)", true]],
      models.models.map((m) => [m.source, m.model, full.format(m.total_tokens),
        (Number(m.share) * 100).toFixed(1) + "%", usd(m.cost_usd)]));
    $("unpriced").textContent = models.unpriced_models.length
      ? `No price known for: ${models.unpriced_models.join(", ")} (counted as $0).` : "";
    table($("devices"), [["Device"], ["Last upload"], ["First day"], ["Last day"]],
      devices.devices.map((d) => [d.name, when(d.last_upload_at), d.first_day || "—", d.last_day || "—"]));
    const top = models.models.slice(0, 5);
    const daily = await api("/v1/usage/daily", params);
    const series = await Promise.all(top.map(async (m) => {
      const one = await api("/v1/usage/daily", { ...params, source: m.source, model: m.model });
      return { label: `${m.model} (${m.source})`, values: one.days.map((d) => d.total_tokens) };
    }));
    const rest = daily.days.map((d, i) => d.total_tokens - series.reduce((a, s) => a + (s.values[i] || 0), 0));
    if (rest.some((v) => v > 0)) series.push({ label: "other", values: rest });
    if (stale()) return;
    renderDaily(daily.days, series);
    const heat = await api("/v1/usage/heatmap", { to: state.to, weeks: 52, tz: state.me.time_zone });
    if (stale()) return;
    renderHeatmap(heat);
  } catch (error) { if (!stale()) showError(error); }
}

function applyPreset() {
  const preset = $("preset").value;
  if (preset === "custom") return;
  state.to = todayIn(state.tz);
  state.from = addDays(state.to, -(Number(preset) - 1));
  $("from").value = state.from;
  $("to").value = state.to;
}

async function initDashboard() {
  state.me = await api("/v1/me");
  state.tz = state.me.time_zone;
  $("who").textContent = state.me.display_name || state.me.name;
  const zones = new Set([state.me.time_zone, ...ZONES]);
  for (const zone of zones) $("tz").append(el("option", { value: zone }, zone));
  $("tz").value = state.tz;
  applyPreset();
  $("preset").addEventListener("change", () => { applyPreset(); loadDashboard(); });
  $("from").addEventListener("change", () => { $("preset").value = "custom"; });
  $("to").addEventListener("change", () => { $("preset").value = "custom"; });
  $("apply").addEventListener("click", () => {
    state.tz = $("tz").value;
    if ($("preset").value === "custom") { state.from = $("from").value; state.to = $("to").value; } else applyPreset();
    $("day-detail").hidden = true;
    loadDashboard();
  });
  let resizing = 0;
  window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(redrawCharts, 80); });
  await loadDashboard();
}

async function loadBoard(period) {
  showError(null);
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.period === period));
  const stale = boardLoad();  // a slower answer for a tab clicked earlier is dropped
  try {
    const board = await api("/v1/leaderboard", { period, limit: 50, offset: 0 });
    if (stale()) return;
    const unpriced = board.entries.some((e) => e.unpriced_tokens > 0)
      ? " · costs leave out models without a price" : "";
    $("board-meta").textContent = board.built_at
      ? `${board.total_entries} people · built ${when(board.built_at)}` + (board.your_rank ? ` · you are #${board.your_rank}` : "") + unpriced
      : "The leaderboard has not been built yet (usageledger leaderboard refresh).";
    table($("board"), [["#", true], ["Name"], ["Tokens", true], ["Cost (USD)", true]],
      board.entries.map((e) => [String(e.rank), e.display_name, full.format(e.total_tokens), usd(e.cost_usd)]));
    $("board").dataset.period = period;
  } catch (error) { if (!stale()) showError(error); }
}

async function initLeaderboard() {
  const me = await api("/v1/me");
  $("who").textContent = me.display_name || me.name;
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => loadBoard(b.dataset.period)));
  await loadBoard("week");
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const start = page === "leaderboard" ? initLeaderboard : initDashboard;
  start().catch(showError);
});
