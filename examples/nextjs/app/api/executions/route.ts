// GET /api/executions?workflow_id=…&status=failed — a workflow's runs for the executions
// table, as the seed's executions/route.ts listed Prefect flow runs.
import {
  FlowForgeError,
  type AppStatus,
  type RuntimeStatus,
  toAppStatus,
} from "../../../../../clients/typescript/src/index.js";
import { flowforge } from "../../../lib/flowforge.js";

const RUNTIME: Record<AppStatus, RuntimeStatus[]> = {
  queued: ["Pending"],
  running: ["Running", "ContinuedAsNew"],
  paused: ["Suspended"],
  succeeded: ["Completed"],
  failed: ["Failed"],
  cancelled: ["Terminated"],
};

export async function GET(request: Request): Promise<Response> {
  const query = new URL(request.url).searchParams;
  const workflowId = query.get("workflow_id");
  if (!workflowId) return Response.json({ error: "workflow_id is required" }, { status: 400 });
  const wanted = query.get("status") as AppStatus | null;
  if (wanted && !(wanted in RUNTIME)) {
    return Response.json({ error: `unknown status '${wanted}'` }, { status: 400 });
  }
  try {
    const runs = await flowforge.listRuns(workflowId, {
      statuses: wanted ? RUNTIME[wanted] : undefined,
      limit: 200,
    });
    return Response.json(
      runs.map((run) => ({
        run_id: run.instanceId,
        job_id: (run.input as { job_id?: string } | null)?.job_id ?? null,
        status: toAppStatus(run.runtimeStatus),
        started_at: run.createdTime,
        updated_at: run.lastUpdatedTime,
      })),
    );
  } catch (error) {
    const status = error instanceof FlowForgeError ? error.status : 502;
    return Response.json({ error: String(error) }, { status });
  }
}
