// FlowForge Durable dashboard: plain ES module over the management API (no framework, no
// build step, no CDN). Every value from the API is put on the page as text, never as HTML.
// The key comes from the page's `code` query parameter (as a function key does) and is sent
// to the API as the x-functions-key header. The server puts this file inline in the page.

const query = new URLSearchParams(location.search);
const key = query.get("code");
const apiBase = new URL("../", location.href.split("#")[0]);
const STATUSES = ["Running", "Pending", "Completed", "Failed", "Terminated", "Suspended", "ContinuedAsNew"];
const PAGE = 50;
let refreshTimer = null;

class ApiFailure extends Error {
  constructor(status, body) {
    super(body && (body.error || body.Message) ? `${body.error || body.Message}` : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ accept: "application/json" }, options.headers || {});
  if (key) headers["x-functions-key"] = key;
  const reply = await fetch(new URL(path, apiBase), Object.assign({}, options, { headers }));
  const text = await reply.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!reply.ok) throw new ApiFailure(reply.status, typeof body === "object" ? body : { error: body });
  return { body, headers: reply.headers, status: reply.status };
}

// A small element builder: h("a", {href: "#"}, "text", child, ...). Strings become text nodes.
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function failure(error) {
  const text = error.status === 401
    ? "Not authorized: open this page with the API key (…/ui/?code=<key>)."
    : `Could not load: ${error.message}${error.code ? ` (${error.code})` : ""}`;
  return h("p", { class: "error", role: "alert", id: "error" }, text);
}

const when = (t) => (t ? new Date(t).toLocaleString() : "");
const json = (v) => (v === undefined || v === null ? "null" : JSON.stringify(v, null, 2));
const badge = (s) => h("span", { class: `badge ${s}`, "data-status": s }, s);
const runLink = (id) => `#/run/${encodeURIComponent(id)}`;

// ---- Runs -------------------------------------------------------------------------------

const runsState = { tokens: [null], page: 0, filters: {} };

async function renderRuns() {
  const f = runsState.filters;
  const params = new URLSearchParams({ top: String(PAGE) });
  if (f.statuses && f.statuses.length) params.set("runtimeStatus", f.statuses.join(","));
  if (f.prefix) params.set("instanceIdPrefix", f.prefix);
  if (f.workflow) params.set("workflowId", f.workflow);
  if (f.from) params.set("createdTimeFrom", new Date(f.from).toISOString());
  if (f.to) params.set("createdTimeTo", new Date(f.to).toISOString());
  const token = runsState.tokens[runsState.page];
  const headers = token ? { "x-ms-continuation-token": token } : {};
  let reply;
  try {
    reply = await api(`instances?${params}`, { headers });
  } catch (error) {
    show(h("h1", {}, "Runs"), failure(error));
    return;
  }
  const next = reply.headers.get("x-ms-continuation-token");
  runsState.tokens[runsState.page + 1] = next || undefined;
  let runs = reply.body;
  if (f.name) runs = runs.filter((r) => r.name === f.name);
  const counts = {};
  for (const r of runs) counts[r.runtimeStatus] = (counts[r.runtimeStatus] || 0) + 1;

  const form = h("form", { class: "filters", id: "filters", onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    runsState.filters = {
      statuses: data.getAll("status"), prefix: data.get("prefix") || "", name: data.get("name") || "",
      workflow: data.get("workflow") || "",
      from: data.get("from") || "", to: data.get("to") || "",
    };
    runsState.tokens = [null];
    runsState.page = 0;
    renderRuns();
  } },
    h("label", {}, "Status",
      h("select", { name: "status", multiple: true, size: 3 },
        STATUSES.map((s) => h("option", { value: s, selected: (f.statuses || []).includes(s) }, s)))),
    h("label", {}, "Orchestration", h("input", { name: "name", value: f.name || "", placeholder: "name" })),
    h("label", {}, "Id prefix", h("input", { name: "prefix", value: f.prefix || "" })),
    h("label", {}, "Workflow id", h("input", { name: "workflow", value: f.workflow || "" })),
    h("label", {}, "Created from", h("input", { type: "datetime-local", name: "from", value: f.from || "" })),
    h("label", {}, "Created to", h("input", { type: "datetime-local", name: "to", value: f.to || "" })),
    h("button", { type: "submit" }, "Filter"));

  const rows = runs.map((r) => h("tr", { "data-instance": r.instanceId },
    h("td", { class: "id" }, h("a", { href: runLink(r.instanceId) }, r.instanceId)),
    h("td", {}, r.name),
    h("td", {}, badge(r.runtimeStatus)),
    h("td", { class: "hide-narrow" }, when(r.createdTime)),
    h("td", { class: "hide-narrow" }, when(r.lastUpdatedTime))));
  const table = runs.length
    ? h("div", { class: "table-wrap" }, h("table", { id: "runs" },
      h("thead", {}, h("tr", {}, h("th", {}, "Instance"), h("th", {}, "Orchestration"), h("th", {}, "Status"),
        h("th", { class: "hide-narrow" }, "Created"), h("th", { class: "hide-narrow" }, "Updated"))),
      h("tbody", {}, rows)))
    : h("p", { class: "muted", id: "no-runs" }, "No runs match.");
  const pager = h("div", { class: "pager" },
    h("button", { type: "button", disabled: runsState.page === 0, onclick: () => { runsState.page -= 1; renderRuns(); } }, "← Newer"),
    h("span", { class: "muted" }, `page ${runsState.page + 1}`),
    h("button", { type: "button", disabled: !next, onclick: () => { runsState.page += 1; renderRuns(); } }, "Older →"));
  show(
    h("h1", {}, "Runs"),
    form,
    h("div", { class: "counts", "aria-label": "runs on this page by status" },
      Object.entries(counts).map(([s, n]) => h("span", { class: "count" }, badge(s), ` ${n}`))),
    table, pager,
    h("p", { class: "muted" }, "Counts are of this page. The list refreshes every 10 s while the tab is visible."));
  schedule(renderRuns, 10000);
}

// ---- One run ----------------------------------------------------------------------------

async function renderRun(id) {
  let reply;
  try {
    reply = await api(`instances/${encodeURIComponent(id)}?showHistory=true&showHistoryOutput=true&showInput=true`);
  } catch (error) {
    show(h("p", {}, h("a", { href: "#/" }, "← Runs")), h("h1", {}, id), failure(error));
    return;
  }
  const run = reply.body;
  const history = run.historyEvents || run.history || [];
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Status"), h("dd", { id: "run-status" }, badge(run.runtimeStatus)),
    h("dt", {}, "Orchestration"), h("dd", {}, run.name),
    h("dt", {}, "Created"), h("dd", {}, when(run.createdTime)),
    h("dt", {}, "Updated"), h("dd", {}, when(run.lastUpdatedTime)));
  const sections = [
    h("p", {}, h("a", { href: "#/" }, "← Runs")),
    h("h1", {}, run.instanceId),
    facts,
    actions(run),
    chained(run.instanceId),
  ];
  if (run.failureDetails) {
    sections.push(h("h2", {}, "Failure"), h("pre", { id: "failure" }, json(run.failureDetails)));
  }
  const produced = artifacts(run.output);
  if (produced) sections.push(h("h2", {}, "Artifacts"), produced);
  sections.push(
    h("h2", {}, "Timeline"), timeline(run, history),
    h("h2", {}, "Logs"), runLogs(run.instanceId),
    h("h2", {}, "Input"), h("pre", { id: "input" }, json(run.input)),
    h("h2", {}, "Output"), h("pre", { id: "output" }, json(run.output)),
    h("h2", {}, "Custom status"), h("pre", {}, json(run.customStatus)),
    h("h2", {}, "History"), historyTable(history));
  show(...sections);
  if (["Running", "Pending", "Suspended"].includes(run.runtimeStatus)) schedule(() => renderRun(id), 3000);
}

function actions(run) {
  const id = encodeURIComponent(run.instanceId);
  const act = (label, question, call, danger) => h("button", {
    type: "button", class: danger ? "danger" : "", "data-action": label.toLowerCase(),
    onclick: async () => {
      if (!window.confirm(question)) return;
      try {
        await call();
        if (label === "Purge") { location.hash = "#/"; return; }
        renderRun(run.instanceId);
      } catch (error) {
        document.getElementById("main").prepend(failure(error));
      }
    },
  }, label);
  const post = (path) => api(`instances/${id}/${path}`, { method: "POST" });
  const s = run.runtimeStatus;
  const live = ["Running", "Pending", "Suspended"].includes(s);
  const buttons = [];
  if (live) buttons.push(act("Terminate", `Terminate ${run.instanceId}?`, () => post("terminate?reason=terminated%20from%20the%20dashboard"), true));
  if (s === "Running" || s === "Pending") buttons.push(act("Suspend", `Suspend ${run.instanceId}?`, () => post("suspend?reason=suspended%20from%20the%20dashboard")));
  if (s === "Suspended") buttons.push(act("Resume", `Resume ${run.instanceId}?`, () => post("resume?reason=resumed%20from%20the%20dashboard")));
  if (s === "Failed") buttons.push(act("Rewind", `Rewind ${run.instanceId}: run its failed tasks again?`, () => post("rewind?reason=rewound%20from%20the%20dashboard")));
  if (!live) buttons.push(act("Restart", `Start ${run.instanceId} again with the same input?`, () => post("restart")));
  if (!live) buttons.push(act("Purge", `Delete ${run.instanceId} and its history for good?`, () => api(`instances/${id}`, { method: "DELETE" }), true));
  const raise = live ? h("form", { class: "actions", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const name = String(data.get("event") || "").trim();
    if (!name || !window.confirm(`Raise "${name}" on ${run.instanceId}?`)) return;
    try {
      await api(`instances/${id}/raiseEvent/${encodeURIComponent(name)}`, {
        method: "POST", headers: { "content-type": "application/json" }, body: String(data.get("data") || "null"),
      });
      renderRun(run.instanceId);
    } catch (error) {
      document.getElementById("main").prepend(failure(error));
    }
  } },
    h("label", {}, "Event ", h("input", { name: "event", placeholder: "name", required: true })),
    h("label", {}, "Data (JSON) ", h("input", { name: "data", value: "null" })),
    h("button", { type: "submit" }, "Raise event")) : null;
  return h("div", {}, h("div", { class: "actions", id: "actions" }, buttons), raise);
}

// A medallion run's output: bronze files, the Delta tables (silver, rejects, duplicates,
// gold) with the version that holds the run, silver's rejects by reason, gold's manifest
// and lineage event. Other outputs have no artifacts section.
function artifacts(output) {
  if (!output || typeof output !== "object" || !output.silver || !output.gold || !Array.isArray(output.bronze)) return null;
  const row = (layer, path, rows) => h("tr", {}, h("td", {}, layer), h("td", { class: "id" }, path), h("td", {}, String(rows)));
  const table = (commit) => {
    const version = commit.version === null || commit.version === undefined ? "committed earlier" : `version ${commit.version}`;
    return `${commit.table} (Delta, ${version}${commit.already_committed ? ", already committed" : ""})`;
  };
  const silver = output.silver;
  const rejected = Object.entries(silver.rejected || {});
  return h("div", { id: "artifacts" },
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Layer"), h("th", {}, "Where"), h("th", {}, "Rows"))),
      h("tbody", {},
        output.bronze.map((b) => row("bronze", b.path, b.rows)),
        silver.table ? row("silver", table(silver.table), `${silver.rows_out} of ${silver.rows_in}`) : null,
        silver.rejects ? row("rejects", table(silver.rejects), rejected.reduce((n, [, c]) => n + c, 0)) : null,
        silver.duplicate_rows ? row("duplicates dropped", table(silver.duplicate_rows), silver.duplicates || 0) : null,
        output.gold.table ? row("gold", table(output.gold.table), output.gold.rows) : null,
        row("gold manifest", output.gold.manifest_path, ""),
        output.gold.lineage_path ? row("lineage (OpenLineage)", output.gold.lineage_path, "") : null))),
    h("p", {}, `Duplicates dropped: ${silver.duplicates || 0}. Rejects by reason: `,
      rejected.length ? rejected.map(([reason, n]) => `${reason} ${n}`).join(", ") : "none"));
}

// Spans from history: activities (one per attempt), timers, sub-orchestrations, events.
export function spans(history, endOfRun) {
  const open = new Map();
  const out = [];
  const t = (e) => Date.parse(e.Timestamp);
  for (const e of history) {
    switch (e.EventType) {
      case "TaskScheduled":
        open.set(`t${e.EventId}`, out.push({ kind: "activity", label: e.FunctionName, start: t(e), end: null, state: "running" }) - 1);
        break;
      case "TaskCompleted": case "TaskFailed": {
        const i = open.get(`t${e.TaskScheduledId}`);
        if (i !== undefined) Object.assign(out[i], { end: t(e), state: e.EventType === "TaskCompleted" ? "ok" : "bad" });
        break;
      }
      case "TimerCreated":
        open.set(`t${e.EventId}`, out.push({ kind: "timer", label: `timer until ${when(e.FireAt)}`, start: t(e), end: null, state: "timer" }) - 1);
        break;
      case "TimerFired": {
        const i = open.get(`t${e.TimerId}`);
        if (i !== undefined) Object.assign(out[i], { end: t(e) });
        break;
      }
      case "SubOrchestrationInstanceCreated":
        open.set(`t${e.EventId}`, out.push({ kind: "sub", label: `${e.FunctionName} (${e.InstanceId})`, link: e.InstanceId, start: t(e), end: null, state: "sub" }) - 1);
        break;
      case "SubOrchestrationInstanceCompleted": case "SubOrchestrationInstanceFailed": {
        const i = open.get(`t${e.TaskScheduledId}`);
        if (i !== undefined) Object.assign(out[i], { end: t(e), state: e.EventType.endsWith("Completed") ? "sub" : "bad" });
        break;
      }
      case "EventRaised":
        out.push({ kind: "event", label: `event ${e.Name}`, start: t(e), end: t(e), state: "event" });
        break;
      case "ContinuedAsNew":
        out.push({ kind: "event", label: "continued as new", start: t(e), end: t(e), state: "event" });
        break;
      default:
    }
  }
  for (const s of out) if (s.end === null) s.end = endOfRun;
  return out;
}

function timeline(run, history) {
  const started = history.find((e) => e.EventType === "ExecutionStarted");
  const finished = ["Completed", "Failed", "Terminated", "ContinuedAsNew"].includes(run.runtimeStatus);
  const end = finished ? Date.parse(run.lastUpdatedTime) : Date.now();
  const items = spans(history, end);
  if (!started || !items.length) return h("p", { class: "muted", id: "timeline" }, "No steps yet.");
  const t0 = Date.parse(started.Timestamp);
  const t1 = Math.max(end, ...items.map((s) => s.end));
  const scale = Math.max(t1 - t0, 1);
  const shown = items.slice(0, 500);
  const lanes = shown.map((s) => {
    const left = ((s.start - t0) / scale) * 100;
    const width = ((s.end - s.start) / scale) * 100;
    const label = s.link ? h("a", { href: runLink(s.link) }, s.label) : s.label;
    const ms = Math.max(0, s.end - s.start);
    return h("div", { class: "lane", "data-kind": s.kind },
      h("span", { class: "label", title: `${s.label}: ${ms} ms` }, label),
      h("div", { class: "track" }, placed(h("div", { class: `bar ${s.state}`, title: `${s.label}: ${ms} ms` }), left, width)));
  });
  return h("div", { class: "timeline", id: "timeline" },
    h("p", { class: "muted" }, `${items.length} steps over ${((t1 - t0) / 1000).toFixed(2)} s`
      + (items.length > shown.length ? ` (first ${shown.length} shown)` : "")),
    lanes);
}

// Positions a bar through the CSS object model: the page's policy refuses style attributes.
function placed(bar, left, width) {
  bar.style.left = `${left.toFixed(3)}%`;
  bar.style.width = `${width.toFixed(3)}%`;
  return bar;
}

// Runs that start runs: a chained run's id is `<this run>-then-<chain>`, so both ends are
// found from the ids (the run this one was started after, the runs started after it).
function chained(id) {
  const box = h("p", { id: "chained", class: "muted" });
  const after = /^(.+)-then-[A-Za-z0-9_-]+$/.exec(id);
  if (after) box.append("Started after ", h("a", { href: runLink(after[1]) }, after[1]), ". ");
  api(`instances?instanceIdPrefix=${encodeURIComponent(`${id}-then-`)}&top=20`).then((reply) => {
    if (!reply.body.length) return;
    box.append("Started after this run: ");
    reply.body.forEach((r, i) => box.append(i ? ", " : "", h("a", { href: runLink(r.instanceId), "data-chained": r.instanceId }, r.instanceId), " ", badge(r.runtimeStatus)));
  }).catch(() => {});
  return box;
}

// What the run's activities logged, per attempt; pages load on demand ("More logs").
function runLogs(id) {
  const box = h("div", { id: "logs", class: "logs" }, h("p", { class: "muted" }, "Loading logs…"));
  const load = async (token) => {
    let reply;
    try {
      const headers = token ? { "x-ms-continuation-token": token } : {};
      reply = await api(`instances/${encodeURIComponent(id)}/logs?top=100`, { headers });
    } catch (error) {
      box.replaceChildren(failure(error));
      return;
    }
    box.querySelector(".more")?.remove();
    if (!token) box.replaceChildren();
    for (const attempt of reply.body.attempts) box.append(logAttempt(attempt));
    if (!box.querySelector(".attempt")) box.append(h("p", { class: "muted" }, "No logs: its activities logged nothing (yet)."));
    const next = reply.headers.get("x-ms-continuation-token");
    if (next) box.append(h("button", { class: "more", onclick: () => load(next) }, "More logs"));
  };
  load(null);
  return box;
}

function logAttempt(attempt) {
  const title = `${attempt.activity} #${attempt.activityId} · delivery ${attempt.delivery} · ${when(attempt.startedAt)}`;
  const rows = attempt.lines.map((line) => h("tr", { class: `level-${line.level}` },
    h("td", { class: "hide-narrow" }, new Date(line.timestamp).toLocaleTimeString()),
    h("td", {}, line.level),
    h("td", {}, line.message,
      Object.keys(line.fields || {}).length
        ? h("span", { class: "muted" }, " ", Object.entries(line.fields).map(([k, v]) => `${k}=${v}`).join(" "))
        : null)));
  if (attempt.droppedLines) rows.push(h("tr", {}, h("td", { colspan: 3, class: "muted" }, `${attempt.droppedLines} more lines not kept (limit per attempt)`)));
  return h("details", { class: "attempt", open: true, "data-activity": attempt.activity, "data-activity-id": attempt.activityId },
    h("summary", {}, title),
    h("div", { class: "table-wrap" }, h("table", {}, h("tbody", {}, rows))));
}

function historyTable(history) {
  const rows = history.map((e) => {
    const { EventType, Timestamp, ...rest } = e;
    return h("tr", {}, h("td", {}, EventType), h("td", { class: "hide-narrow" }, when(Timestamp)),
      h("td", {}, h("pre", {}, json(rest))));
  });
  return h("div", { class: "table-wrap" }, h("table", { id: "history" },
    h("thead", {}, h("tr", {}, h("th", {}, "Event"), h("th", { class: "hide-narrow" }, "Time"), h("th", {}, "Details"))),
    h("tbody", {}, rows)));
}

// ---- Schedules --------------------------------------------------------------------------

// Pause (with a reason) and resume (optionally running the paused occurrences), delete.
function scheduleState(s, out) {
  const name = encodeURIComponent(s.name);
  const act = async (path, doneText) => {
    try {
      const reply = await api(`schedules/${name}/${path}`, { method: "POST" });
      const caught = (reply.body.caughtUp || []).filter((o) => o.outcome === "started").length;
      out.replaceChildren(doneText + (caught ? `; ${caught} paused occurrence(s) started` : ""));
      renderSchedules();
    } catch (error) { out.replaceChildren(failure(error)); }
  };
  const pause = h("button", { type: "button", "data-action": "pause", onclick: () => {
    const reason = prompt(`Pause ${s.name}: why? (shown here)`, "");
    if (reason === null) return;
    act(`pause?${new URLSearchParams({ reason })}`, "Paused");
  } }, "Pause");
  const catchUp = h("input", { type: "checkbox", name: "catchUp" });
  const resume = h("span", {},
    h("button", { type: "button", "data-action": "resume", onclick: () =>
      act(`resume?catchUp=${catchUp.checked}`, "Resumed") }, "Resume"),
    h("label", {}, catchUp, " also run the occurrences missed while paused"));
  const remove = h("button", { type: "button", "data-action": "delete", onclick: async () => {
    if (!confirm(`Delete schedule ${s.name}? Its runs stay.`)) return;
    try {
      await api(`schedules/${name}`, { method: "DELETE" });
      renderSchedules();
    } catch (error) { out.replaceChildren(failure(error)); }
  } }, "Delete");
  return h("div", { class: "actions" }, s.paused ? resume : pause, remove);
}

// A new schedule: name, cron, zone, orchestration, input, overlap policy.
function newScheduleForm() {
  const out = h("p", { class: "muted", id: "new-schedule-result" });
  const form = h("form", { class: "filters", id: "new-schedule", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    let input = null;
    try { input = data.get("input") ? JSON.parse(data.get("input")) : null; } catch (error) {
      out.replaceChildren(h("span", { class: "error" }, `The input is not JSON: ${error.message}`));
      return;
    }
    const spec = { name: data.get("name"), cron: data.get("cron"), orchestration: data.get("orchestration"),
      input, overlap: data.get("overlap") };
    if (data.get("timeZone")) spec.timeZone = data.get("timeZone");
    try {
      await api("schedules", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(spec) });
      renderSchedules();
    } catch (error) { out.replaceChildren(failure(error)); }
  } },
    h("label", {}, "Name", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_-]+" })),
    h("label", {}, "Cron (6 fields)", h("input", { name: "cron", required: true, placeholder: "0 30 2 * * *" })),
    h("label", {}, "Time zone", h("input", { name: "timeZone", placeholder: "UTC" })),
    h("label", {}, "Orchestration", h("input", { name: "orchestration", required: true })),
    h("label", {}, "Input (JSON)", h("input", { name: "input", placeholder: "{}" })),
    h("label", {}, "If still running", h("select", { name: "overlap" },
      ["skip", "allow", "bufferOne", "cancelPrevious"].map((o) => h("option", { value: o }, o)))),
    h("button", { type: "submit" }, "Create"));
  return h("details", { class: "new-schedule" }, h("summary", {}, "New schedule"), form, out);
}

// Run now, and backfill a range (a dry run first shows what would start).
function scheduleActions(s) {
  const out = h("p", { class: "muted", "data-result": s.name });
  const name = encodeURIComponent(s.name);
  const runNow = h("button", { type: "button", "data-action": "trigger", onclick: async () => {
    if (!confirm(`Run ${s.name} now?`)) return;
    try {
      const reply = await api(`schedules/${name}/trigger`, { method: "POST" });
      out.replaceChildren("Started ", h("a", { href: runLink(reply.body.instanceId) }, reply.body.instanceId));
    } catch (error) { out.replaceChildren(failure(error)); }
  } }, "Run now");
  const form = h("form", { class: "filters backfill", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const dry = e.submitter && e.submitter.value === "dry";
    if (!data.get("from") || !data.get("to")) { out.replaceChildren("Give a range."); return; }
    if (!dry && !confirm(`Start every occurrence of ${s.name} in that range that has not run?`)) return;
    const params = new URLSearchParams({
      from: new Date(data.get("from")).toISOString(), to: new Date(data.get("to")).toISOString(),
      limit: String(data.get("limit") || 100), dryRun: String(dry),
    });
    try {
      const reply = await api(`schedules/${name}/backfill?${params}`, { method: "POST" });
      const counts = {};
      for (const o of reply.body.occurrences) counts[o.outcome] = (counts[o.outcome] || 0) + 1;
      out.replaceChildren(Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ") || "no occurrences in that range");
    } catch (error) { out.replaceChildren(failure(error)); }
  } },
    h("label", {}, "Backfill from", h("input", { type: "datetime-local", name: "from" })),
    h("label", {}, "to", h("input", { type: "datetime-local", name: "to" })),
    h("label", {}, "at most", h("input", { type: "number", name: "limit", min: 1, max: 1000, value: 100 })),
    h("button", { type: "submit", value: "dry" }, "Dry run"),
    h("button", { type: "submit", value: "run" }, "Backfill"));
  return h("div", { class: "actions" }, runNow, scheduleState(s, out), form, out);
}

async function renderSchedules() {
  let reply;
  try {
    reply = await api("schedules");
  } catch (error) {
    show(h("h1", {}, "Schedules"), failure(error));
    return;
  }
  const schedules = reply.body;
  if (!schedules.length) {
    show(h("h1", {}, "Schedules"), h("p", { class: "muted", id: "no-schedules" },
      "No schedules yet: create one here, over the API (POST schedules) or the CLI, or configure them (FLOWFORGE_SCHEDULES)."),
      newScheduleForm());
    return;
  }
  const cards = schedules.map((s) => h("section", { class: "schedule", "data-schedule": s.name },
    h("h2", {}, s.name, " ", s.paused ? h("span", { class: "badge", "data-paused": "" }, "Paused") : null),
    s.paused ? h("p", { class: "muted", "data-pause-reason": "" },
      `Paused ${when(s.pausedAt)}${s.pauseReason ? `: ${s.pauseReason}` : ""}`) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "Cron"), h("dd", {}, h("code", {}, s.cron), ` (${s.timeZone})`),
      h("dt", {}, "Orchestration"), h("dd", {}, s.orchestration),
      h("dt", {}, "When one is still running"), h("dd", {}, s.overlap,
        s.buffered ? h("span", { class: "muted" }, ` (held: ${s.buffered})`) : null),
      h("dt", {}, "Defined by"), h("dd", {}, s.origin === "config" ? "configuration" : "the API / dashboard"),
      h("dt", {}, "Next"), h("dd", {}, h("ul", { class: "next" }, s.next.map((t) => h("li", {}, when(t))))),
      h("dt", {}, "Latest"), h("dd", {}, h("ul", { class: "recent" }, s.recent.map((r) => h("li", {},
        when(r.occurrence), " ",
        r.runtimeStatus ? h("a", { href: runLink(r.instanceId) }, badge(r.runtimeStatus)) : h("span", { class: "muted" }, "not started")))))),
    scheduleActions(s)));
  show(h("h1", {}, "Schedules"), ...cards, newScheduleForm());
  schedule(renderSchedules, 30000);
}

// ---- Routing and refresh ----------------------------------------------------------------

function schedule(render, ms) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (document.visibilityState === "visible") render();
    else schedule(render, ms);
  }, ms);
}

function route() {
  clearTimeout(refreshTimer);
  const match = location.hash.match(/^#\/run\/(.+)$/);
  if (match) renderRun(decodeURIComponent(match[1]));
  else if (location.hash === "#/schedules") renderSchedules();
  else renderRuns();
  document.getElementById("main").focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
