/**
 * A typed client of the FlowForge Durable management API, for the web app: what its
 * `run` and `executions` route handlers do. fetch-based, no runtime dependencies.
 *
 * Runs of a workflow get the instance id `<workflow_id>:<job_id>`, so starting the same job
 * twice is refused (409) rather than run twice, and a workflow's runs are listed by id
 * prefix without reading every run.
 */

/** Durable Functions' runtime statuses, as the API sends them. */
export type RuntimeStatus =
  | "Pending"
  | "Running"
  | "Completed"
  | "ContinuedAsNew"
  | "Failed"
  | "Terminated"
  | "Suspended";

/** The web app's statuses of a run. */
export type AppStatus = "queued" | "running" | "paused" | "succeeded" | "failed" | "cancelled";

/** A run's status as the API answers `GET instances/{id}`. */
export interface RunStatus<Output = unknown, Input = unknown> {
  name: string;
  instanceId: string;
  runtimeStatus: RuntimeStatus;
  input: Input | null;
  output: Output | null;
  customStatus: unknown;
  createdTime: string;
  lastUpdatedTime: string;
}

/** The management URLs of a started run (Durable Functions' check-status body). */
export interface CheckStatus {
  id: string;
  statusQueryGetUri: string;
  sendEventPostUri: string;
  terminatePostUri: string;
  purgeHistoryDeleteUri: string;
  restartPostUri: string;
  suspendPostUri: string;
  resumePostUri: string;
}

/** What the web app sends to start a run: its workflow and job ids, and anything else. */
export interface RunInput {
  workflow_id: string;
  job_id: string;
  [parameter: string]: unknown;
}

/** An error answer of the API: its HTTP status and stable code (docs/api-errors.md). */
export class FlowForgeError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "FlowForgeError";
  }
}

export interface ClientOptions {
  /** The API's base URL, e.g. `https://flows.example.com/api/`. */
  baseUrl: string;
  /** The API key (sent as `x-functions-key`); keep it on the server side. */
  key?: string;
  /** A fetch implementation (the global one by default). */
  fetch?: typeof fetch;
  /** Longest a single request may take, in ms (default 30 s). */
  requestTimeoutMs?: number;
}

export interface WaitOptions {
  /** Give up after this long, in ms (default 10 minutes). */
  timeoutMs?: number;
  /** Poll interval when the API sends no Retry-After, in ms (default 1 s). */
  intervalMs?: number;
  /** Stops the wait. */
  signal?: AbortSignal;
}

export interface ListOptions {
  statuses?: RuntimeStatus[];
  createdFrom?: Date;
  createdTo?: Date;
  /** Page size asked of the API (1–1000). */
  pageSize?: number;
  /** Stop after this many runs. */
  limit?: number;
}

/** Maps a runtime status to the web app's status. */
export function toAppStatus(status: RuntimeStatus): AppStatus {
  switch (status) {
    case "Pending":
      return "queued";
    case "Running":
    case "ContinuedAsNew":
      return "running";
    case "Suspended":
      return "paused";
    case "Completed":
      return "succeeded";
    case "Failed":
      return "failed";
    case "Terminated":
      return "cancelled";
  }
}

/** Whether a run has ended. */
export function isFinished(status: RuntimeStatus): boolean {
  return status === "Completed" || status === "Failed" || status === "Terminated";
}

/** The instance id of a job of a workflow. */
export function runId(workflowId: string, jobId: string): string {
  return `${workflowId}:${jobId}`;
}

export class FlowForgeClient {
  private readonly base: string;
  private readonly fetcher: typeof fetch;

  constructor(private readonly options: ClientOptions) {
    this.base = options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Starts `orchestration` for a job of a workflow; 409 (`Conflict`) if that job runs. */
  async startRun(orchestration: string, input: RunInput): Promise<CheckStatus> {
    const id = runId(input.workflow_id, input.job_id);
    const path = `orchestrators/${encodeURIComponent(orchestration)}/${encodeURIComponent(id)}`;
    const response = await this.request("POST", path, input);
    return (await response.json()) as CheckStatus;
  }

  /** The status of a run, with its input. */
  async getStatus<Output = unknown>(instanceId: string): Promise<RunStatus<Output>> {
    const response = await this.request("GET", `instances/${encodeURIComponent(instanceId)}`);
    return (await response.json()) as RunStatus<Output>;
  }

  /** Polls until the run ends (honouring Retry-After); returns its final status. */
  async waitForCompletion<Output = unknown>(
    instanceId: string,
    wait: WaitOptions = {},
  ): Promise<RunStatus<Output>> {
    const deadline = Date.now() + (wait.timeoutMs ?? 600_000);
    for (;;) {
      const response = await this.request("GET", `instances/${encodeURIComponent(instanceId)}`);
      const status = (await response.json()) as RunStatus<Output>;
      if (isFinished(status.runtimeStatus)) return status;
      const retryAfter = Number(response.headers.get("retry-after"));
      const pause = retryAfter > 0 ? retryAfter * 1000 : (wait.intervalMs ?? 1000);
      if (Date.now() + pause > deadline) {
        throw new FlowForgeError(408, "WaitTimedOut", `${instanceId} is still ${status.runtimeStatus}`);
      }
      await sleep(Math.min(pause, wait.intervalMs ?? pause), wait.signal);
    }
  }

  /** Runs of a workflow (those started by {@link startRun}), newest pages followed. */
  async listRuns(workflowId: string, list: ListOptions = {}): Promise<RunStatus[]> {
    const query = new URLSearchParams({ instanceIdPrefix: `${workflowId}:`, showInput: "true" });
    if (list.statuses?.length) query.set("runtimeStatus", list.statuses.join(","));
    if (list.createdFrom) query.set("createdTimeFrom", list.createdFrom.toISOString());
    if (list.createdTo) query.set("createdTimeTo", list.createdTo.toISOString());
    if (list.pageSize) query.set("top", String(list.pageSize));
    const runs: RunStatus[] = [];
    let token: string | null = null;
    do {
      const headers: Record<string, string> = token ? { "x-ms-continuation-token": token } : {};
      const response = await this.request("GET", `instances?${query}`, undefined, headers);
      runs.push(...((await response.json()) as RunStatus[]));
      token = response.headers.get("x-ms-continuation-token");
    } while (token && (list.limit === undefined || runs.length < list.limit));
    return list.limit === undefined ? runs : runs.slice(0, list.limit);
  }

  /** Asks a running run to stop. */
  async terminate(instanceId: string, reason: string): Promise<void> {
    const query = new URLSearchParams({ reason });
    await this.request("POST", `instances/${encodeURIComponent(instanceId)}/terminate?${query}`);
  }

  private async request(
    method: string,
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...extraHeaders };
    if (this.options.key) headers["x-functions-key"] = this.options.key;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await this.fetcher(new URL(path, this.base), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 30_000),
    });
    if (response.ok) return response;
    let code = "Http" + response.status;
    let message = response.statusText;
    try {
      const error = (await response.json()) as { code?: string; error?: string };
      code = error.code ?? code;
      message = error.error ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new FlowForgeError(response.status, code, message);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}
