// The TypeScript client (built to dist/) against a live `flowforge worker`, with Node's
// test runner. functions/tests/official_clients.rs starts the worker and passes its
// address: FLOWFORGE_BASE (the API base URL) and FLOWFORGE_KEY.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FlowForgeClient, FlowForgeError, runId, toAppStatus } from "../dist/index.js";

const baseUrl = process.env.FLOWFORGE_BASE;
const key = process.env.FLOWFORGE_KEY;
if (!baseUrl) throw new Error("FLOWFORGE_BASE is not set: run through official_clients.rs");
const client = new FlowForgeClient({ baseUrl, key });
const wait = { timeoutMs: 120_000, intervalMs: 100 };

test("a run starts, is polled to completion and its status maps to succeeded", async () => {
  const started = await client.startRun("demo", {
    workflow_id: "ts-wf", job_id: "job-1", files: ["a.csv", "bb.csv"], pause_ms: 0,
  });
  assert.equal(started.id, runId("ts-wf", "job-1"));
  assert.match(started.statusQueryGetUri, /\/api\/instances\/ts-wf:job-1$/);
  const done = await client.waitForCompletion(started.id, wait);
  assert.equal(done.runtimeStatus, "Completed");
  assert.equal(toAppStatus(done.runtimeStatus), "succeeded");
  assert.deepEqual(done.output, { sizes: [5120, 6144], total: 11264 });
  assert.equal(done.input.job_id, "job-1");
});

test("the same job started twice is refused with a coded error", async () => {
  await client.startRun("demo", { workflow_id: "ts-wf", job_id: "job-2", files: [], pause_ms: 0 });
  await assert.rejects(
    client.startRun("demo", { workflow_id: "ts-wf", job_id: "job-2", files: [], pause_ms: 0 }),
    (error) => error instanceof FlowForgeError && error.status === 409 && error.code === "Conflict",
  );
  await client.waitForCompletion(runId("ts-wf", "job-2"), wait);
});

test("a failed run maps to the app's failed status", async () => {
  const started = await client.startRun("medallion", {
    workflow_id: "ts-wf", job_id: "job-bad", dataset: "no_such_dataset",
  });
  const done = await client.waitForCompletion(started.id, wait);
  assert.equal(done.runtimeStatus, "Failed");
  assert.equal(toAppStatus(done.runtimeStatus), "failed");
});

test("a workflow's runs are listed, filtered by status, across pages", async () => {
  await client.startRun("demo", { workflow_id: "ts-other", job_id: "x", files: [], pause_ms: 0 });
  const runs = await client.listRuns("ts-wf", { pageSize: 1 });
  const ids = runs.map((r) => r.instanceId).sort();
  assert.deepEqual(ids, ["ts-wf:job-1", "ts-wf:job-2", "ts-wf:job-bad"]);
  const failed = await client.listRuns("ts-wf", { statuses: ["Failed"] });
  assert.deepEqual(failed.map((r) => r.instanceId), ["ts-wf:job-bad"]);
});

test("a wrong key is a coded 401", async () => {
  const stranger = new FlowForgeClient({ baseUrl, key: "wrong" });
  await assert.rejects(
    stranger.getStatus("ts-wf:job-1"),
    (error) => error instanceof FlowForgeError && error.status === 401 && error.code === "Unauthorized",
  );
});
