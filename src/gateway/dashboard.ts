/**
 * The admin dashboard (`GET /`): one self-contained page, no external assets, that polls `/status`
 * every 2 s and computes request and error rates from successive snapshots. It asks for the routes
 * it shows and no more (the first 100 by name, or those matching its search box, which `/status`
 * filters), so the page and the gateway stay quick at a hundred thousand routes. Every value from
 * the status document goes in through `textContent` (names and accounts come from clients).
 */

/** The Content-Security-Policy sent with the page: nothing leaves the admin listener. */
export const DASHBOARD_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The dashboard page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tfgate</title>
<style>
  :root { --bg: #f5f6f8; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #e3e6ec;
          --ok: #1f9d55; --bad: #d64545; --warn: #d98b0b; --accent: #3d5afe; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--ink); }
  header { display: flex; align-items: center; gap: 16px; padding: 12px 24px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; letter-spacing: .02em; }
  header .meta { color: #aab2c5; font-size: 13px; }
  #live { margin-left: auto; font-size: 13px; display: flex; align-items: center; gap: 6px; }
  #live::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: var(--muted); }
  #live.ok::before { background: #4ade80; } #live.down::before { background: #f87171; }
  main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 40px; }
  .tiles { display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 12px; margin-bottom: 20px; }
  .tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  .tile .v { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .tile .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
  .tile.bad .v { color: var(--bad); }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 24px 0 8px; }
  .empty { color: var(--muted); padding: 14px; background: var(--card); border: 1px dashed var(--line); border-radius: 8px; }
  .route { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin-bottom: 10px; overflow: hidden; }
  .route-head { display: flex; align-items: baseline; gap: 12px; padding: 10px 14px; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  .fqdn { font-weight: 600; font-size: 15px; }
  .arrow { color: var(--muted); }
  .cluster { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; color: var(--muted); }
  .stats { margin-left: auto; display: flex; gap: 16px; font-variant-numeric: tabular-nums; color: var(--muted); }
  .stats b { color: var(--ink); font-weight: 600; } .stats .err b { color: var(--bad); }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 6px 14px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { font-weight: 500; color: var(--muted); font-size: 12px; }
  tr:last-child td { border-bottom: none; }
  .panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
  .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
  .badge { display: inline-flex; align-items: center; gap: 6px; font-weight: 500; }
  .badge::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: currentColor; }
  .healthy { color: var(--ok); } .ejected { color: var(--bad); } .failing { color: var(--warn); }
  .soon { color: var(--warn); font-weight: 600; } .expired { color: var(--bad); font-weight: 600; }
  .find { display: flex; align-items: center; gap: 12px; margin: 24px 0 8px; flex-wrap: wrap; }
  .find h2 { margin: 0; }
  .find input { font: inherit; padding: 5px 10px; border: 1px solid var(--line); border-radius: 6px; min-width: 260px; background: var(--card); color: var(--ink); }
  #shown { color: var(--muted); font-size: 13px; }
  .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
  @media (max-width: 900px) { .tiles { grid-template-columns: repeat(3, 1fr); } .cols { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header><h1>tfgate</h1><span class="meta" id="meta"></span><span id="live">connecting…</span></header>
<main>
  <div class="tiles">
    <div class="tile"><div class="v" id="t-rate">–</div><div class="k">requests / s</div></div>
    <div class="tile" id="tile-err"><div class="v" id="t-err">–</div><div class="k">errors / s (5xx)</div></div>
    <div class="tile"><div class="v" id="t-inflight">–</div><div class="k">in flight</div></div>
    <div class="tile"><div class="v" id="t-routes">–</div><div class="k">routes</div></div>
    <div class="tile" id="tile-down"><div class="v" id="t-down">–</div><div class="k">members unhealthy</div></div>
    <div class="tile"><div class="v" id="t-sessions">–</div><div class="k">sessions</div></div>
  </div>
  <div class="find">
    <h2>Names → clusters → members</h2>
    <input id="search" type="search" placeholder="filter by name…" aria-label="filter routes by name" autocomplete="off" spellcheck="false">
    <span id="shown"></span>
  </div>
  <div id="routes"></div>
  <div class="cols">
    <section><h2>Sessions</h2><div id="sessions"></div></section>
    <section><h2>Certificates</h2><div id="certificates"></div></section>
  </div>
</main>
<script>
"use strict";
var POLL_MS = 2000;
/** Routes asked for and shown at a time: the page never holds the whole table. */
var PAGE = 100;
var previous = null;
/** The search box's text as last sent, the poll timer, and the number of the latest request (older answers are dropped). */
var query = "";
var timer = null;
var sequence = 0;

function h(tag, attrs) {
  var el = document.createElement(tag);
  for (var k in attrs || {}) {
    if (k === "text") el.textContent = attrs[k];
    else if (k === "cls") el.className = attrs[k];
    else el.setAttribute(k, attrs[k]);
  }
  for (var i = 2; i < arguments.length; i++) {
    var c = arguments[i];
    if (c == null) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}
function table(headers, rows) {
  var head = h("tr", null);
  headers.forEach(function (t) { head.appendChild(h("th", { text: t })); });
  var t = h("table", null, h("thead", null, head));
  var body = h("tbody", null);
  rows.forEach(function (r) { body.appendChild(r); });
  t.appendChild(body);
  return h("div", { cls: "panel" }, t);
}
function row(cells) {
  var tr = h("tr", null);
  cells.forEach(function (c) { tr.appendChild(typeof c === "string" ? h("td", { text: c }) : c); });
  return tr;
}
function rate(n) { return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2); }
function age(s) {
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d";
}
function count(n) { return Number(n).toLocaleString("en-US"); }
function set(id, text) { document.getElementById(id).textContent = text; }
function fill(id, node) { var el = document.getElementById(id); el.replaceChildren(node); }

function render(s) {
  var dt = previous ? (Date.parse(s.time) - Date.parse(previous.time)) / 1000 : 0;
  // A Map: a route may be named "constructor" or "__proto__".
  var perRoute = new Map();
  if (previous && dt > 0) previous.routes.forEach(function (r) { perRoute.set(r.fqdn, r); });
  var unhealthy = s.membersUnhealthy;
  if (unhealthy == null) { unhealthy = 0; s.routes.forEach(function (r) { r.members.forEach(function (m) { if (!m.healthy) unhealthy++; }); }); }
  var routesTotal = s.routesTotal == null ? s.routes.length : s.routesTotal;
  var matched = s.routesMatched == null ? s.routes.length : s.routesMatched;

  set("meta", "version " + s.version + " · up " + age(s.uptimeSeconds));
  set("t-rate", previous && dt > 0 ? rate(Math.max(0, s.requests - previous.requests) / dt) : "–");
  var errRate = previous && dt > 0 ? Math.max(0, s.errors - previous.errors) / dt : 0;
  set("t-err", previous && dt > 0 ? rate(errRate) : "–");
  document.getElementById("tile-err").classList.toggle("bad", errRate > 0);
  set("t-inflight", String(s.inFlight));
  set("t-routes", count(routesTotal));
  set("t-down", String(unhealthy));
  document.getElementById("tile-down").classList.toggle("bad", unhealthy > 0);
  set("t-sessions", count(s.sessionsTotal == null ? s.sessions.length : s.sessionsTotal));
  var filter = s.routesQuery && s.routesQuery.q ? s.routesQuery.q : "";
  set("shown", filter
    ? count(matched) + " of " + count(routesTotal) + " match" + (matched > s.routes.length ? ", showing the first " + count(s.routes.length) : "")
    : matched > s.routes.length ? "showing the first " + count(s.routes.length) + " of " + count(routesTotal) + ": search to find others" : "");

  var routes = h("div", null);
  if (s.routes.length === 0) routes.appendChild(h("div", { cls: "empty", text: filter ? "No route's name contains “" + filter + "”." : "No routes yet: publish a cluster (tfgate publish, or the SDK) or give --routes." }));
  s.routes.forEach(function (r) {
    var before = perRoute.get(r.fqdn);
    var rps = before ? Math.max(0, r.requests - before.requests) / dt : null;
    var eps = before ? Math.max(0, r.errors - before.errors) / dt : null;
    var head = h("div", { cls: "route-head" },
      h("span", { cls: "fqdn", text: r.fqdn }),
      h("span", { cls: "arrow", text: "→" }),
      h("span", { cls: "cluster", title: "cluster id", text: "cluster " + r.cluster }),
      r.rewrite ? h("span", { cls: "cluster", text: "Host: " + r.rewrite }) : null,
      h("span", { cls: "stats" },
        h("span", null, h("b", { text: rps == null ? "–" : rate(rps) }), " req/s"),
        h("span", { cls: eps ? "err" : "" }, h("b", { text: eps == null ? "–" : rate(eps) }), " err/s"),
        h("span", null, h("b", { text: String(r.requests) }), " total")));
    var members = r.members.map(function (m) {
      var state = h("td", null, h("span", { cls: "badge " + m.state, text: m.state === "healthy" ? "healthy" : m.state === "ejected" ? "ejected (unhealthy)" : "failing (unhealthy)" }));
      var tr = row([h("td", { cls: "mono", text: m.address }), state, String(m.consecutiveFailures), String(m.inFlight), String(m.requests)]);
      tr.setAttribute("data-member", m.address);
      tr.setAttribute("data-state", m.state);
      return tr;
    });
    var card = h("div", { cls: "route", "data-fqdn": r.fqdn }, head,
      members.length ? table(["member", "health", "failures", "in flight", "requests"], members).firstChild : h("div", { cls: "empty", text: "no members" }));
    routes.appendChild(card);
  });
  fill("routes", routes);

  fill("sessions", s.sessions.length === 0 ? h("div", { cls: "empty", text: "No client sessions." }) :
    table(["account", "session", "state", "age", "names"], s.sessions.map(function (x) {
      var tr = row([x.account || "(unnamed)", h("td", { cls: "mono", text: x.rid.slice(0, 12) }),
        h("td", null, h("span", { cls: "badge " + (x.connected ? "healthy" : "failing"), text: x.connected ? "connected" : "grace" })),
        age(x.ageSeconds), x.fqdns.join(", ") + (x.fqdnCount > x.fqdns.length ? " … (" + count(x.fqdnCount) + " in all)" : "")]);
      tr.setAttribute("data-session", x.rid);
      return tr;
    })));

  fill("certificates", s.certificates.length === 0 ? h("div", { cls: "empty", text: "No certificates loaded (HTTPS off)." }) :
    table(["names", "source", "expires", "in"], s.certificates.map(function (c) {
      var cls = c.expiresInDays < 0 ? "expired" : c.expiresInDays < 14 ? "soon" : "";
      return row([c.names.join(", ") || c.origin, c.source, c.notAfter.slice(0, 10),
        h("td", { cls: cls, text: c.expiresInDays < 0 ? "expired" : c.expiresInDays + " days" })]);
    })));
  previous = s;
}

function poll() {
  clearTimeout(timer);
  var mine = ++sequence;
  fetch("status?limit=" + PAGE + (query ? "&q=" + encodeURIComponent(query) : ""), { cache: "no-store" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (s) {
      if (mine !== sequence) return;
      render(s);
      var live = document.getElementById("live");
      live.className = "ok";
      live.textContent = "live · " + new Date(s.time).toLocaleTimeString();
    })
    .catch(function (err) {
      if (mine !== sequence) return;
      var live = document.getElementById("live");
      live.className = "down";
      live.textContent = "gateway unreachable (" + err.message + ")";
    })
    .finally(function () { if (mine === sequence) timer = setTimeout(poll, POLL_MS); });
}
var typing = null;
document.getElementById("search").addEventListener("input", function (e) {
  clearTimeout(typing);
  var text = e.target.value.trim();
  typing = setTimeout(function () { if (text !== query) { query = text; poll(); } }, 250);
});
poll();
</script>
</body>
</html>
`;
