// The official TypeScript SDK v1 (@modelcontextprotocol/sdk), as Claude Code and Cursor embed
// it: connects to the MCP endpoint argv[2] over Streamable HTTP (the initialize era, the only
// one v1 speaks), signs in by OAuth when the server asks (discovery, dynamic registration,
// PKCE), lists the tools and calls argv[3] with the JSON arguments argv[4].
// Prints JSON lines: {"authorize": url} when a person must sign in, then the outcome.
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  emit,
  failOn,
  loopbackProvider,
  recordingFetch,
  registrations,
} from "./loopback_oauth.mjs";

const [url, tool, args = "{}"] = process.argv.slice(2);
const { provider, callback } = await loopbackProvider("TypeScript SDK v1");

async function connected() {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    authProvider: provider,
    fetch: recordingFetch,
  });
  const client = new Client({ name: "atrium-matrix-sdk-v1", version: "1.0.0" });
  try {
    await client.connect(transport);
    return { client, transport };
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    await transport.finishAuth((await callback).get("code"));
    return connected();
  }
}

async function main() {
  const { client, transport } = await connected();
  const listed = await client.listTools();
  const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  emit({
    protocolVersion: transport.protocolVersion,
    registrations,
    tools: listed.tools.map((each) => each.name),
    result,
  });
  await client.close();
}

failOn(main());
