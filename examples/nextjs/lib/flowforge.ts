// One client for the route handlers, configured from the server's environment: the key
// never reaches the browser.
import { FlowForgeClient } from "../../../clients/typescript/src/index.js";

export const flowforge = new FlowForgeClient({
  baseUrl: process.env.FLOWFORGE_API_URL ?? "http://127.0.0.1:7071/api/",
  key: process.env.FLOWFORGE_API_KEY,
});

/** The orchestration a workflow of the app runs. */
export const PIPELINE = "medallion";

declare const process: { env: Record<string, string | undefined> };
