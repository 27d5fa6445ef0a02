// zkgate dashboard: reads the controller API, renders, refreshes every 2 s
// (while it does, the controller polls the gateways for traffic figures).
"use strict";

const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("zkgate-token") || "";
tokenInput.addEventListener("change", () => {
  localStorage.setItem("zkgate-token", tokenInput.value);
  refresh();
});

function headers() {
  const h = { "Content-Type": "application/json" };
  if (tokenInput.value) h["Authorization"] = "Bearer " + tokenInput.value;
  return h;
}

async function api(method, path, body) {
  const resp = await fetch(path, { method, headers: headers(), body: body ? JSON.stringify(body) : undefined });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || method + " " + path + ": HTTP " + resp.status);
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function state(s) { return el("span", { class: "state " + s, "data-state": s }, s); }
function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 90 ? s.toFixed(0) + "s ago" : (s / 60).toFixed(0) + "m ago";
}

function showError(err) {
  const p = document.getElementById("error");
  p.hidden = !err;
  p.textContent = err ? String(err.message || err) : "";
}

async function drain(service, addr) {
  const reason = prompt("Reason for draining " + service + "/" + addr + "?", "maintenance");
  if (!reason) return;
  try {
    await api("PUT", "/v1/services/" + encodeURIComponent(service) + "/instances/" + encodeURIComponent(addr) + "/drain", { reason });
    refresh();
  } catch (e) { showError(e); }
}

async function undrain(service, addr) {
  try {
    await api("DELETE", "/v1/services/" + encodeURIComponent(service) + "/instances/" + encodeURIComponent(addr) + "/drain");
    refresh();
  } catch (e) { showError(e); }
}

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmtRate(r) { return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2).replace(/\.?0+$/, "") || "0"; }

// chart draws an instance's requests/s (and errors/s, red) over the
// history the controller keeps (one point per poll, about a minute).
function chart(traffic) {
  const W = 180, H = 40, hist = (traffic && traffic.history) || [];
  const root = svg("svg", { class: "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H, "data-chart": String(hist.length) });
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#f6f8fa" }));
  if (hist.length < 2) {
    root.append(svg("text", { x: 4, y: H / 2 + 4, fill: "#8b949e", "font-size": 10 }, "waiting for samples…"));
    return root;
  }
  const t0 = hist[0].at_ms, t1 = hist[hist.length - 1].at_ms, span = Math.max(t1 - t0, 60000);
  const max = Math.max(1, ...hist.map((p) => Math.max(p.rps, p.errors_per_s)));
  const x = (p) => (W - 2 - (t1 - p.at_ms) * (W - 4) / span).toFixed(1);
  const y = (v) => (H - 2 - v * (H - 12) / max).toFixed(1);
  const line = (key, color) => svg("polyline", { points: hist.map((p) => x(p) + "," + y(p[key])).join(" "), fill: "none", stroke: color, "stroke-width": 1.5 });
  const area = svg("polygon", { points: x(hist[0]) + "," + (H - 2) + " " + hist.map((p) => x(p) + "," + y(p.rps)).join(" ") + " " + x(hist[hist.length - 1]) + "," + (H - 2), fill: "#cfe3fb" });
  root.append(area, line("rps", "#1f6feb"));
  if (hist.some((p) => p.errors_per_s > 0)) root.append(line("errors_per_s", "#d1242f"));
  root.append(svg("text", { x: 3, y: 9, fill: "#57606a", "font-size": 9 }, "max " + fmtRate(max) + "/s"));
  return root;
}

function trafficCell(inst) {
  const t = inst.traffic;
  if (!t) return el("td", { class: "traffic" }, el("span", { class: "muted" }, "no figures yet"));
  const nums = el("div", { class: "nums" },
    el("b", { "data-rps": String(t.rps) }, fmtRate(t.rps)), " req/s · ", String(t.in_flight), " in flight",
    t.errors_per_s ? el("span", { class: "errs" }, " · " + fmtRate(t.errors_per_s) + " err/s") : "");
  return el("td", { class: "traffic" }, chart(t), nums);
}

function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// timeline shows an instance's state changes: the first with its clock
// time, the others as the time since the first.
function timeline(entries) {
  if (!entries || !entries.length) return "";
  const t0 = entries[0].at_ms;
  const box = el("div", { class: "timeline", "data-timeline": entries.map((e) => e.state).join(",") });
  entries.forEach((e, i) => {
    if (i) box.append(el("span", { class: "arrow" }, "→"));
    box.append(el("span", { class: "step" }, state(e.state), el("small", {}, i ? "+" + ((e.at_ms - t0) / 1000).toFixed(1) + "s" : clock(e.at_ms))));
  });
  return box;
}

// gatewayCell lists each live gateway: its ack of the mark (state, in
// flight) when there is one, and what it sends the instance.
function gatewayCell(inst) {
  const byGw = (inst.traffic && inst.traffic.by_gateway) || {};
  const ids = new Set([...(inst.gateways || []).map((g) => g.id), ...Object.keys(byGw)]);
  const acks = Object.fromEntries((inst.gateways || []).map((g) => [g.id, g]));
  return [...ids].sort().map((id) => {
    const g = acks[id], t = byGw[id];
    return el("div", { class: "gw", "data-gateway-ack": id },
      id + " ",
      g ? state(g.state) : "",
      g && g.in_flight ? " " + g.in_flight + " in flight" : "",
      t ? el("span", { class: "muted" }, " " + fmtRate(t.rps) + "/s") : "");
  });
}

function renderService(svc) {
  const rows = (svc.instances || []).map((inst) => {
    const action = inst.marked
      ? el("button", { onclick: () => undrain(svc.service, inst.addr) }, "undrain")
      : el("button", { onclick: () => drain(svc.service, inst.addr) }, "drain");
    const mark = inst.mark
      ? el("div", {}, inst.mark.reason + " (by " + inst.mark.by + ")",
        inst.mark.deploy_id ? el("div", { class: "deploy", "data-deploy": inst.mark.deploy_id }, "deploy " + inst.mark.deploy_id) : "")
      : "";
    return el("tr", { "data-instance": svc.service + "/" + inst.addr },
      el("td", {}, inst.addr, el("div", { class: "muted" }, inst.registered_ms ? "registered " + ago(inst.registered_ms) : "")),
      el("td", {}, state(inst.state), inst.status && inst.status !== "UP" ? el("div", { class: "muted" }, inst.status) : ""),
      trafficCell(inst),
      el("td", {}, mark, timeline(inst.timeline)),
      el("td", {}, ...gatewayCell(inst)),
      el("td", {}, action));
  });
  const tr = svc.traffic, errs = tr && tr.errors ? Object.entries(tr.errors) : [];
  return el("div", { class: "service", "data-service": svc.service },
    el("h3", {}, svc.service + " ", el("span", { class: "muted" }, (svc.instances || []).length + " instances · " + svc.live_gateways + " gateways")),
    ...errs.map(([id, e]) => el("p", { class: "error" }, "traffic of gateway " + id + ": " + e)),
    el("table", {}, el("thead", {}, el("tr", {}, ...["instance", "state", "traffic (last minute)", "mark · timeline", "per gateway: ack · req/s", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)));
}

// deploys sums up, per deploy id, the instances whose timelines carry it:
// how many went through the drain and are back serving.
function renderDeploys(services) {
  const deploys = new Map();
  for (const svc of services) {
    for (const inst of svc.instances || []) {
      const ids = new Set((inst.timeline || []).map((e) => e.deploy_id).filter(Boolean));
      if (inst.mark && inst.mark.deploy_id) ids.add(inst.mark.deploy_id);
      for (const id of ids) {
        if (!deploys.has(id)) deploys.set(id, []);
        deploys.get(id).push({ svc: svc.service, inst });
      }
    }
  }
  if (!deploys.size) return [el("p", { class: "muted" }, "no deploy ids in the marks seen")];
  return [...deploys.entries()].map(([id, list]) => {
    const done = list.filter(({ inst }) => !inst.marked && inst.state === "serving").length;
    return el("div", { class: "deploy-row", "data-deploy-progress": id },
      el("b", {}, id), " ", done + " of " + list.length + " instance(s) back serving",
      el("progress", { max: String(list.length), value: String(done) }),
      el("span", { class: "muted" }, " " + list.map(({ svc, inst }) => svc + "/" + inst.addr + " " + inst.state).join(", ")));
  });
}

async function refresh() {
  try {
    const [list, gws, audit, leader] = await Promise.all([
      api("GET", "/v1/services"), api("GET", "/v1/gateways"), api("GET", "/v1/audit?limit=20"), api("GET", "/v1/leader"),
    ]);
    // One service that cannot be read (gone since it was listed, or
    // refused) is shown as such; it never hides the others.
    const names = (list.services || []).map((s) => s.name);
    const settled = await Promise.allSettled(names.map((n) => api("GET", "/v1/services/" + encodeURIComponent(n))));
    document.getElementById("deploys").replaceChildren(...renderDeploys(settled.filter((r) => r.status === "fulfilled").map((r) => r.value)));
    const parts = settled.map((r, i) => r.status === "fulfilled" ? renderService(r.value)
      : el("div", { class: "service", "data-service-error": names[i] }, el("h3", {}, names[i]), el("p", { class: "error" }, String(r.reason.message || r.reason))));
    const skipped = list.skipped || [];
    if (skipped.length) {
      parts.push(el("p", { class: "muted", "data-skipped": String(skipped.length) },
        skipped.length + " registry service(s) skipped, their names are not ones zkgate can drain: " + skipped.map((n) => JSON.stringify(n)).join(", ")));
    }
    const box = document.getElementById("services");
    box.replaceChildren(...(parts.length ? parts : [el("p", { class: "muted" }, "no services registered")]));
    document.querySelector("#gateways tbody").replaceChildren(...(gws.gateways || []).map((g) =>
      el("tr", { "data-gateway": g.id }, el("td", {}, g.id), el("td", {}, g.listen), el("td", {}, g.version),
        el("td", {}, g.registry_revision), el("td", {}, g.marks_revision), el("td", {}, (g.marks || []).length), el("td", {}, ago(g.updated_ms)),
        el("td", { "data-probe-ready": String(!!g.probe_ready), title: g.probe_note || "" }, g.probe_ready ? "ready" : "no (holds drains for the window)"))));
    document.querySelector("#audit tbody").replaceChildren(...(audit.entries || []).map((a) =>
      el("tr", {}, el("td", {}, new Date(a.time_ms).toISOString()), el("td", {}, a.by), el("td", {}, a.action),
        el("td", {}, (a.service || "") + (a.addr ? "/" + a.addr : "")), el("td", {}, a.reason), el("td", {}, a.deploy_id || ""), el("td", {}, a.detail))));
    document.getElementById("leader").textContent = leader.leader ? "leader: " + leader.leader : "";
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
    showError(null);
  } catch (e) { showError(e); }
}

refresh();
setInterval(refresh, 2000);
