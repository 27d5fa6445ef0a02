// zkgate dashboard: reads the controller API, renders, refreshes every 2 s.
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

function renderService(svc) {
  const rows = (svc.instances || []).map((inst) => {
    const gws = (inst.gateways || []).map((g) => el("div", {}, g.id + " ", state(g.state), g.in_flight ? " " + g.in_flight + " in flight" : ""));
    const action = inst.marked
      ? el("button", { onclick: () => undrain(svc.service, inst.addr) }, "undrain")
      : el("button", { onclick: () => drain(svc.service, inst.addr) }, "drain");
    const mark = inst.mark ? inst.mark.reason + " (by " + inst.mark.by + ")" : "";
    return el("tr", { "data-instance": svc.service + "/" + inst.addr },
      el("td", {}, inst.addr), el("td", {}, state(inst.state)), el("td", {}, inst.status || ""),
      el("td", {}, mark), el("td", {}, ...gws), el("td", {}, inst.registered_ms ? ago(inst.registered_ms) : ""), el("td", {}, action));
  });
  return el("div", { class: "service", "data-service": svc.service },
    el("h3", {}, svc.service + " ", el("span", { class: "muted" }, (svc.instances || []).length + " instances")),
    el("table", {}, el("thead", {}, el("tr", {}, ...["instance", "state", "registry status", "mark", "per gateway", "registered", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)));
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
        el("td", {}, g.registry_revision), el("td", {}, g.marks_revision), el("td", {}, (g.marks || []).length), el("td", {}, ago(g.updated_ms)))));
    document.querySelector("#audit tbody").replaceChildren(...(audit.entries || []).map((a) =>
      el("tr", {}, el("td", {}, new Date(a.time_ms).toISOString()), el("td", {}, a.by), el("td", {}, a.action),
        el("td", {}, (a.service || "") + (a.addr ? "/" + a.addr : "")), el("td", {}, a.reason), el("td", {}, a.detail))));
    document.getElementById("leader").textContent = leader.leader ? "leader: " + leader.leader : "";
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
    showError(null);
  } catch (e) { showError(e); }
}

refresh();
setInterval(refresh, 2000);
