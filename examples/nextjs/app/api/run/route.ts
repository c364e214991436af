// POST /api/run — the web app starts a run of a workflow, as the seed's run/route.ts did
// against Prefect: { workflow_id, job_id, parameters } in, the run's id and status out.
// GET /api/run?id=… — the run's status (for the page that polls it).
import { FlowForgeError, toAppStatus } from "../../../../../clients/typescript/src/index.js";
import { PIPELINE, flowforge } from "../../../lib/flowforge.js";

interface RunRequest {
  workflow_id: string;
  job_id: string;
  parameters?: Record<string, unknown>;
}

export async function POST(request: Request): Promise<Response> {
  let body: RunRequest;
  try {
    body = (await request.json()) as RunRequest;
  } catch {
    return Response.json({ error: "the body must be JSON" }, { status: 400 });
  }
  if (!body.workflow_id || !body.job_id) {
    return Response.json({ error: "workflow_id and job_id are required" }, { status: 400 });
  }
  try {
    const started = await flowforge.startRun(PIPELINE, {
      dataset: "flights",
      ...body.parameters,
      workflow_id: body.workflow_id,
      job_id: body.job_id,
    });
    return Response.json({ run_id: started.id, status: "queued" }, { status: 202 });
  } catch (error) {
    return failure(error);
  }
}

export async function GET(request: Request): Promise<Response> {
  const id = new URL(request.url).searchParams.get("id");
  if (!id) return Response.json({ error: "id is required" }, { status: 400 });
  try {
    const run = await flowforge.getStatus(id);
    return Response.json({
      run_id: run.instanceId,
      status: toAppStatus(run.runtimeStatus),
      output: run.output,
      updated_at: run.lastUpdatedTime,
    });
  } catch (error) {
    return failure(error);
  }
}

function failure(error: unknown): Response {
  if (error instanceof FlowForgeError) {
    // 409: that job already has a run; 404: no such run; 503: retry later.
    return Response.json({ error: error.message, code: error.code }, { status: error.status });
  }
  return Response.json({ error: "the orchestration service did not answer" }, { status: 502 });
}
