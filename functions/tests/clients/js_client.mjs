// The official Durable Functions JavaScript client (`durable-functions`, pinned in the root
// package.json) against a running `flowforge worker`, unchanged, in both of its modes:
//   url-template: the binding's creation/management URL templates, the key as `code=`;
//   rpc:          `rpcBaseUrl`, the host's local endpoint (no key, loopback only).
// Usage: node js_client.mjs <mode> <base url> <key or ""> <id prefix>
// Exits non-zero on the first disagreement; prints one line per call.
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { DurableClient } = require("durable-functions/lib/src/durableClient/DurableClient");

const [mode, base, key, prefix] = process.argv.slice(2);
const hub = "clients";
const q = `taskHub=${hub}&connection=Storage&code=${key}`;
const clientData =
  mode === "rpc"
    ? { taskHubName: hub, creationUrls: {}, managementUrls: {}, rpcBaseUrl: base }
    : {
        taskHubName: hub,
        // As the extension renders them (HttpApiHandler): placeholders and required query.
        creationUrls: {
          createNewInstancePostUri: `${base}orchestrators/{functionName}[/{instanceId}]?code=${key}`,
          createAndWaitOnNewInstancePostUri: `${base}orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&code=${key}`,
        },
        managementUrls: {
          id: "INSTANCEID",
          statusQueryGetUri: `${base}instances/INSTANCEID?${q}`,
          sendEventPostUri: `${base}instances/INSTANCEID/raiseEvent/{eventName}?${q}`,
          terminatePostUri: `${base}instances/INSTANCEID/terminate?reason={text}&${q}`,
          rewindPostUri: `${base}instances/INSTANCEID/rewind?reason={text}&${q}`,
          purgeHistoryDeleteUri: `${base}instances/INSTANCEID?${q}`,
          restartPostUri: `${base}instances/INSTANCEID/restart?${q}`,
          suspendPostUri: `${base}instances/INSTANCEID/suspend?reason={text}&${q}`,
          resumePostUri: `${base}instances/INSTANCEID/resume?reason={text}&${q}`,
        },
        baseUrl: base,
        requiredQueryStringParameters: `code=${key}`,
      };
const client = new DurableClient(clientData);
const said = (what) => console.log(`js ${mode}: ${what}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(id, wanted) {
  for (let i = 0; i < 600; i++) {
    const s = await client.getStatus(id);
    if (s.runtimeStatus === wanted) return s;
    await sleep(100);
  }
  throw new Error(`${id} never became ${wanted}`);
}

const t0 = new Date(Date.now() - 60_000);
const input = { files: ["a.csv", "bb.csv"], pause_ms: 0 };

// start without and with an id
const generated = await client.startNew("demo", { input });
assert.match(generated, /\S+/);
const id = await client.startNew("demo", { instanceId: `${prefix}-demo`, input });
assert.equal(id, `${prefix}-demo`);
said("startNew with and without an id");

// wait-for-completion-or-check-status: the output, as the extension answers it
const waited = await client.waitForCompletionOrCreateCheckStatusResponse(
  { url: `${base}orchestrators/demo` }, id,
  { timeoutInMilliseconds: 60_000, retryIntervalInMilliseconds: 100 });
assert.equal(waited.status, 200);
assert.deepEqual(await waited.json(), { sizes: [5120, 6144], total: 11264 });
said("waitForCompletionOrCreateCheckStatusResponse: 200 with the output");
await until(generated, "Completed");

// status with history, history output and input
const status = await client.getStatus(id, { showHistory: true, showHistoryOutput: true, showInput: true });
assert.equal(status.runtimeStatus, "Completed");
assert.deepEqual(status.input, input);
assert.ok(Array.isArray(status.history), "status.history is the history");
assert.equal(status.history.filter((e) => e.EventType === "TaskCompleted").length, 3);
said("getStatus with history and input");

// status-all and status-by with every filter
const all = await client.getStatusAll();
assert.ok(all.some((s) => s.instanceId === id) && all.some((s) => s.instanceId === generated));
const completed = await client.getStatusBy({ createdTimeFrom: t0, createdTimeTo: new Date(Date.now() + 60_000), runtimeStatus: ["Completed"] });
assert.ok(completed.some((s) => s.instanceId === id));
const running = await client.getStatusBy({ runtimeStatus: ["Running"] });
assert.ok(!running.some((s) => s.instanceId === id));
said("getStatusAll and getStatusBy (time range, statuses)");

// raise an event
const approve = await client.startNew("await_approval", { instanceId: `${prefix}-approve`, input: 600 });
await until(approve, "Running");
await client.raiseEvent(approve, "approve", "ada");
assert.equal((await until(approve, "Completed")).output, "approved by ada");
said("raiseEvent");

// suspend, resume, terminate
const held = await client.startNew("await_approval", { instanceId: `${prefix}-held`, input: 600 });
await until(held, "Running");
await client.suspend(held, "a pause");
await until(held, "Suspended");
await client.resume(held, "go on");
await until(held, "Running");
await client.terminate(held, "no longer needed");
const terminated = await until(held, "Terminated");
said(`suspend, resume, terminate (output ${JSON.stringify(terminated.output)})`);

// an error the client reports: an orchestration that does not exist
await assert.rejects(client.startNew("no_such_orchestration", { input: 1 }), /no orchestration named/);
said("startNew of an unknown orchestration is refused with the reason");

// rewind: a failed run (its activity fails: unknown dataset) is rewound and fails again
const bad = await client.startNew("medallion", {
  instanceId: `${prefix}-bad`, input: { workflow_id: "w", job_id: prefix, dataset: "no_such_dataset" },
});
await until(bad, "Failed");
await client.rewind(bad, "try again");
for (let i = 0; ; i++) {
  const s = await client.getStatus(bad, { showHistory: true });
  const rewound = s.history.some((e) => e.EventType === "ExecutionRewound");
  if (rewound && s.runtimeStatus === "Failed") break;
  assert.ok(i < 600, "the rewind was recorded and the run failed again");
  await sleep(100);
}
await assert.rejects(client.rewind(id, "completed"), /cannot be rewound/);
said("rewind (and a rewind of a completed instance refused)");

// purge one, then by filter
assert.equal((await client.purgeInstanceHistory(generated)).instancesDeleted, 1);
await assert.rejects(client.getStatus(generated), /404/);
const purged = await client.purgeInstanceHistoryBy({ createdTimeFrom: t0, runtimeStatus: ["Terminated"] });
assert.ok(purged.instancesDeleted >= 1, JSON.stringify(purged));
await assert.rejects(client.getStatus(held), /404/);
said(`purgeInstanceHistory and purgeInstanceHistoryBy (${purged.instancesDeleted} deleted)`);
console.log(`js ${mode}: all calls agree`);
