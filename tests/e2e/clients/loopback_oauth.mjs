// The OAuth side of a desktop MCP client, for the SDK scripts of this folder: a public client
// that listens on a loopback port for the authorization redirect (RFC 8252 §7.3), checks
// `state`, and keeps what the SDK hands it in memory. Where a client would open a browser it
// prints the authorization URL as a JSON line; the test plays the person at the browser.
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

/** One line of JSON on stdout, the only thing the scripts write there. */
export function emit(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/**
 * `fetch` that keeps what dynamic registration sent and got back (RFC 7591 §3), so a test can
 * see which metadata the SDK itself sends; every request passes through unchanged.
 */
export const registrations = [];
export async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  if (init?.method === "POST" && new URL(url).pathname.endsWith("/register")) {
    const answer = await response.clone().json();
    registrations.push({ sent: JSON.parse(init.body), answer });
  }
  return response;
}

/** Fail with the error on stderr and exit 1: the test shows stderr when a client fails. */
export function failOn(promise) {
  promise.catch((error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  });
}

/**
 * `{provider, callback}`: an OAuthClientProvider (the same shape in SDK v1 and v2) whose
 * metadata is what a desktop client names, without `application_type` (SDK v2 adds one itself,
 * v1 does not); `callback`, the redirect's query once the browser arrives.
 */
export async function loopbackProvider(clientName) {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const redirectUrl = `http://127.0.0.1:${server.address().port}/callback`;
  const state = randomBytes(16).toString("base64url");
  const callback = new Promise((resolve, reject) => {
    server.once("request", (request, response) => {
      const query = new URL(request.url, redirectUrl).searchParams;
      const good = query.get("state") === state && query.has("code");
      response.writeHead(good ? 200 : 400, { "content-type": "text/plain" });
      response.end(good ? "Signed in; you can close this window.\n" : "Sign-in failed.\n");
      server.close();
      if (good) resolve(query);
      else reject(new Error(`the authorization redirect carried no code: ${query}`));
    });
  });
  let client;
  let tokens;
  let verifier;
  const provider = {
    get redirectUrl() {
      return redirectUrl;
    },
    get clientMetadata() {
      return {
        client_name: clientName,
        redirect_uris: [redirectUrl],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
      };
    },
    state: () => state,
    clientInformation: () => client,
    saveClientInformation: (information) => {
      client = information;
    },
    tokens: () => tokens,
    saveTokens: (saved) => {
      tokens = saved;
    },
    redirectToAuthorization: (url) => emit({ authorize: url.href }),
    saveCodeVerifier: (saved) => {
      verifier = saved;
    },
    codeVerifier: () => verifier,
  };
  return { provider, callback };
}
