const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const fmt = (x) => x === null || x === undefined ? "-" : Math.round(x).toLocaleString("en");
const when = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
function fill(id, rows) {
  const body = document.querySelector(id + " tbody"); body.innerHTML = "";
  for (const r of rows) { const tr = body.insertRow(); if (r.cls) tr.className = r.cls;
    r.cells.forEach((c, i) => cell(tr, c, (r.num || []).includes(i) ? "num" : (r.cellCls || [])[i])); }
}
function chart(id, series, pick, now) {
  const svg = document.getElementById(id), W = svg.width.baseVal.value, H = svg.height.baseVal.value;
  let max = 1, first = now;
  for (const pts of Object.values(series)) for (const p of pts) {
    max = Math.max(max, pick(p) || 0); first = Math.min(first, p[0]); }
  const span = Math.min(300, Math.max(30, now - first));
  let out = `<text x="4" y="12" font-size="10">${fmt(max)}</text><text x="4" y="${H - 3}" font-size="10">0</text>` +
    `<text x="${W - 4}" y="${H - 3}" font-size="10" text-anchor="end">last ${Math.round(span)} s</text>`;
  Object.entries(series).forEach(([name, pts], i) => {
    const xy = pts.filter(p => pick(p) !== null).map(p =>
      `${(W * (1 - (now - p[0]) / span)).toFixed(1)},${(H - 4 - (H - 16) * pick(p) / max).toFixed(1)}`);
    if (xy.length) out += `<polyline fill="none" stroke="${COLOURS[i % COLOURS.length]}" stroke-width="1.5" ` +
      `points="${xy.join(" ")}"/>`;
  });
  svg.innerHTML = out;
}
function draw(s) {
  const badge = document.getElementById("health");
  badge.textContent = s.health; badge.className = "badge " + s.health;
  document.getElementById("champion-version").textContent = s.champion ? String(s.champion.version) : "unknown";
  document.getElementById("champion-model").textContent = s.champion ?
    `${s.champion.name} run ${s.champion.run_id}` : "no champion (or MLflow unreachable)";
  document.getElementById("champion-why").textContent = s.champion ? (s.champion.reason || "-") : "";
  const rps = s.stages.filter(x => x.stage === "scorer" && x.health !== "unknown")
    .reduce((a, x) => a + (x.rps || 0), 0);
  document.getElementById("throughput").textContent = fmt(rps);
  const acc = s.accuracy || {}, pct = (x) => x === null || x === undefined ? "-" : (100 * x).toFixed(1) + " %";
  document.getElementById("accuracy").textContent = pct(acc.realised);
  document.getElementById("estimated").textContent = acc.estimated === null || acc.estimated === undefined
    ? "estimated: not available yet" : "estimated " + pct(acc.estimated);
  const box = document.getElementById("incidents"); box.innerHTML = "";
  if (!s.incidents.length) box.textContent = "no drift recorded";
  for (const i of s.incidents.slice().reverse()) {
    const h = document.createElement("h3"); h.className = "incident";
    h.textContent = `${when(i.opened_at)}  incident ${i.id.replace("incident-", "")}: ` +
      `${i.state}${i.id === s.open_incident ? " (open)" : ""}`;
    const t = document.createElement("table"); t.className = "incident-steps";
    t.appendChild(document.createElement("tbody"));
    for (const st of i.steps) { const tr = t.tBodies[0].insertRow();
      cell(tr, st.at ? when(st.at).slice(11) : ""); cell(tr, st.step, "step"); cell(tr, st.detail); }
    box.appendChild(h); box.appendChild(t);
  }
  document.getElementById("dead-letters").textContent = s.dead_letters.total === null
    ? "unknown" : fmt(s.dead_letters.total);
  document.getElementById("updated").textContent = when(s.at).slice(11);
  fill("#stages", s.stages.map(x => ({cls: x.health,
    cells: [x.stage, x.instance, x.health, x.reason, fmt(x.rps), fmt(x.lag), fmt(x.dead_letters)],
    num: [4, 5, 6], cellCls: [null, null, "health"]})));
  chart("chart-rps", s.series, p => p[1], s.at); chart("chart-lag", s.series, p => p[2], s.at);
  document.getElementById("legend").innerHTML = "";
  Object.keys(s.series).forEach((name, i) => { const span = document.createElement("span");
    span.textContent = "\u25A0 " + name + "  "; span.style.color = COLOURS[i % COLOURS.length];
    document.getElementById("legend").appendChild(span); });
  fill("#drift", s.drift.map(d => ({cells: [d.detector, d.state, `${d.events} event(s)`, d.last_event ?
    `last ${when(d.last_event.at)} at record ${d.last_event.index}: ` +
    `${Number(d.last_event.statistic).toPrecision(3)} vs ${Number(d.last_event.threshold).toPrecision(3)}` :
    "never fired"], cellCls: [null, d.state]})));
  fill("#lineage", s.lineage.map(l => ({cells: [when(l.at), `${l.kind} v${l.version}`,
    l.previous ? `from v${l.previous}` : "first", l.run_id || "-", l.reason || "-"]})));
  fill("#timeline", s.timeline.slice(0, 15).map(t => ({cells: [when(t.at), t.kind, t.label]})));
  const tl = document.getElementById("chart-timeline"), W = tl.width.baseVal.value;
  const ts = s.timeline.map(t => t.at), lo = Math.min(...ts, s.at - 60), hi = s.at;
  tl.innerHTML = s.timeline.map(t => { const x = (8 + (W - 16) * (t.at - lo) / Math.max(hi - lo, 1)).toFixed(1);
    const c = t.kind === "drift_event" || t.kind === "incident" ? "#d33" : t.kind === "incident_update" ? "#e77"
      : t.kind === "promotion" ? "#2a7" : t.kind === "failure" ? "#e90" : "#888";
    return `<line x1="${x}" x2="${x}" y1="${t.kind === "decision" ? 30 : 8}" y2="52" stroke="${c}" ` +
      `stroke-width="2"><title>${when(t.at)} ${t.label.replace(/[<&]/g, "")}</title></line>`; }).join("");
  document.getElementById("errors").textContent = s.errors.join(" | ");
}
const initial = JSON.parse(document.getElementById("initial").textContent);
const REFRESH_MS = Math.trunc(Number(initial.refresh) * 1000);  // int(refresh * 1000), as the server had it
draw(initial);
async function poll() {
  try { const r = await fetch("/api/status", {cache: "no-store"}); if (r.ok) draw(await r.json()); }
  catch (e) { document.getElementById("errors").textContent = "console unreachable: " + e; }
  setTimeout(poll, REFRESH_MS);
}
setTimeout(poll, REFRESH_MS);
