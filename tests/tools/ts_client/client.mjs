// The official TypeScript SDK as hosts embed it: connect, list tools (which caches each
// tool's outputSchema validator), then call tools and report what the SDK hands back.
//
// stdin, line 1 (the client connects at once, so a stdio server boots while the caller prepares):
//     {"transport": "http", "url": "...", "token": "..."}
//  or {"transport": "stdio", "command": "...", "args": [...], "env": {...}, "cwd": "..."}
// stdin, line 2: {"calls": [{"name": "...", "arguments": {...}}, ...], "parallel": how many at once}
// stdout: {"tools": [names], "results": [{"result": CallToolResult} | {"thrown": {code, message}}]}
// NODE_PATH is not honoured by ESM imports, so the SDK is imported from the folder that
// `npm install` filled (ATLILITH_TS_SDK_DIR), which may lie outside the repository.
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import path from "node:path";

const sdkDir = process.env.ATLILITH_TS_SDK_DIR;
if (!sdkDir) throw new Error("set ATLILITH_TS_SDK_DIR to the folder holding node_modules");
const sdk = (p) => import(pathToFileURL(path.join(sdkDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);

const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { StdioClientTransport } = await sdk("client/stdio.js");

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const line = async () => JSON.parse((await lines.next()).value);
const request = await line();
const transport =
  request.transport === "stdio"
    ? new StdioClientTransport({
        command: request.command,
        args: request.args,
        env: request.env,
        cwd: request.cwd,
        stderr: "inherit",
      })
    : new StreamableHTTPClientTransport(new URL(request.url), {
        requestInit: { headers: { Authorization: `Bearer ${request.token}` } },
      });

const client = new Client({ name: "atlilith-ts-test", version: "1.0.0" });
await client.connect(transport);
const { calls, parallel } = await line();
const listed = await client.listTools();
// The calls do not depend on each other: a few at a time, answers kept in order.
const results = new Array(calls.length);
let next = 0;
async function worker() {
  while (next < calls.length) {
    const i = next++;
    const call = calls[i];
    try {
      results[i] = { result: await client.callTool({ name: call.name, arguments: call.arguments }) };
    } catch (error) {
      results[i] = { thrown: { code: error?.code ?? null, message: String(error?.message ?? error) } };
    }
  }
}
await Promise.all(Array.from({ length: parallel ?? 1 }, worker));
await client.close();
process.stdout.write(JSON.stringify({ tools: listed.tools.map((t) => t.name), results }));
