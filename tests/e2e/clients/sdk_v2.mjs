// The official TypeScript SDK v2 (@modelcontextprotocol/client): connects to the MCP endpoint
// argv[2] over Streamable HTTP in the era argv[5] names ("auto": probe with server/discover,
// as v2 clients that speak 2026-07-28 do; "legacy": the initialize handshake), signs in by
// OAuth when the server asks (discovery, dynamic registration, PKCE), lists the tools and
// calls argv[3] with the JSON arguments argv[4].
// Prints JSON lines: {"authorize": url} when a person must sign in, then the outcome.
import {
  Client,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from "@modelcontextprotocol/client";
import {
  emit,
  failOn,
  loopbackProvider,
  recordingFetch,
  registrations,
} from "./loopback_oauth.mjs";

const [url, tool, args = "{}", mode = "auto"] = process.argv.slice(2);
const { provider, callback } = await loopbackProvider("TypeScript SDK v2");

async function connected() {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    authProvider: provider,
    fetch: recordingFetch,
  });
  const client = new Client(
    { name: "atrium-matrix-sdk-v2", version: "2.0.0" },
    { versionNegotiation: { mode } },
  );
  try {
    await client.connect(transport);
    return client;
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    await transport.finishAuth(await callback); // checks `iss` too (RFC 9207)
    return connected();
  }
}

async function main() {
  const client = await connected();
  const listed = await client.listTools();
  const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  emit({
    protocolVersion: client.getNegotiatedProtocolVersion(),
    registrations,
    tools: listed.tools.map((each) => each.name),
    result,
  });
  await client.close();
}

failOn(main());
