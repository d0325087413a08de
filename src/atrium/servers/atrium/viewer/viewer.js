// The artifact viewer of Atrium's `atrium` server, an MCP App (SEP-1865, "MCP Apps").
//
// It talks JSON-RPC over postMessage with its host and nobody else, builds every node with
// createElement/textContent (no markup is ever made from data), and fetches nothing itself:
// the document's CSP allows this script alone and no connection. What it shows comes from
// the host: the `atrium` tool's result (`ui/notifications/tool-result`), or, when a result
// carries only the resource link of its artifact, `resources/read` of that link through the
// host.
"use strict";
(() => {
  const PROTOCOL_VERSION = "2026-01-26";
  const ARTIFACT_PREFIX = "artifact://atrium/";
  const MAX_ROWS = 500;
  const MAX_DEPTH = 3;
  const host = window.parent;
  const root = document.getElementById("artifact");
  const pending = new Map();
  let nextId = 1;
  let hostCapabilities = {};

  // -- the wire --------------------------------------------------------------------------

  function send(message) {
    // The view cannot know its host's origin (it lives in a sandboxed, opaque-origin frame);
    // what it sends is the host's own data back, or requests the host decides on.
    host.postMessage(Object.assign({ jsonrpc: "2.0" }, message), "*");
  }

  function request(method, params) {
    const id = nextId++;
    send({ id: id, method: method, params: params });
    return new Promise((resolve, reject) => pending.set(id, { resolve: resolve, reject: reject }));
  }

  function notify(method, params) {
    send({ method: method, params: params });
  }

  function settle(message) {
    const waiting = pending.get(message.id);
    if (waiting === undefined) return;
    pending.delete(message.id);
    if (message.error) {
      waiting.reject(new Error(String(message.error.message || "the host refused the request")));
    } else {
      waiting.resolve(message.result);
    }
  }

  function handle(message) {
    const params = message.params || {};
    switch (message.method) {
      case "ui/notifications/tool-input":
        showInput(params.arguments || {});
        return;
      case "ui/notifications/tool-result":
        showResult(params);
        return;
      case "ui/notifications/tool-cancelled":
        showNote("The command was cancelled" + (params.reason ? ": " + params.reason : "."));
        return;
      case "ui/notifications/host-context-changed":
        applyContext(params);
        return;
      case "ui/resource-teardown":
      case "ping":
        send({ id: message.id, result: {} });
        return;
      default:
        if (message.id !== undefined) {
          send({ id: message.id, error: { code: -32601, message: "Method not found" } });
        }
    }
  }

  window.addEventListener("message", (event) => {
    if (event.source !== host) return; // only the host speaks to the view
    const message = event.data;
    if (message === null || typeof message !== "object" || message.jsonrpc !== "2.0") return;
    if (message.method === undefined) settle(message);
    else handle(message);
  });

  // -- what the host tells ---------------------------------------------------------------

  function applyContext(context) {
    const html = document.documentElement;
    if (context.theme === "light" || context.theme === "dark") html.dataset.theme = context.theme;
    const variables = (context.styles && context.styles.variables) || {};
    for (const name of Object.keys(variables)) {
      const value = variables[name];
      if (name.startsWith("--") && typeof value === "string") html.style.setProperty(name, value);
    }
  }

  function showInput(args) {
    if (typeof args.command !== "string") return;
    clear();
    root.append(header(args.command, null), note("Running…"));
  }

  function showResult(result) {
    const run = result.structuredContent;
    if (isRun(run)) {
      showRun(run);
      return;
    }
    const link = (result.content || []).find(
      (block) =>
        block && block.type === "resource_link" && String(block.uri).startsWith(ARTIFACT_PREFIX),
    );
    if (link && hostCapabilities.serverResources) {
      readArtifact(String(link.uri));
      return;
    }
    clear();
    root.append(pre(textOf(result) || "(no output)"));
  }

  function readArtifact(uri) {
    showNote("Reading " + uri + "…");
    request("resources/read", { uri: uri }).then(
      (answer) => {
        const first = answer && answer.contents && answer.contents[0];
        const artifact = parseJson(first && first.text);
        if (artifact && isRun(artifact.content)) showRun(artifact.content);
        else showNote("The artifact " + uri + " is not a command run.");
      },
      (error) => showNote("Could not read " + uri + ": " + error.message),
    );
  }

  // -- rendering -------------------------------------------------------------------------

  function isRun(value) {
    return isObject(value) && typeof value.command === "string" && typeof value.stdout === "string";
  }

  function showRun(run) {
    clear();
    root.append(header(run.command, run));
    if (typeof run.duration_ms === "number") {
      root.append(note(run.duration_ms + " ms" + (run.artifact_id ? " · " + run.artifact_id : "")));
    }
    root.append(output(run.stdout));
    if (run.stderr) {
      const details = element("details");
      details.open = run.exit_code !== 0;
      details.append(element("summary", null, "stderr"), pre(run.stderr));
      root.append(details);
    }
  }

  function header(command, run) {
    const box = element("header");
    box.append(element("code", null, "atrium " + command));
    if (run !== null) {
      const ok = run.exit_code === 0;
      const label = run.exit_code === null ? "stopped at the time limit" : "exit " + run.exit_code;
      box.append(element("span", "status " + (ok ? "ok" : "failed"), label));
    }
    return box;
  }

  // Output that parses as JSON rows becomes a table; anything else stays text, as printed.
  function output(text) {
    const data = parseJson(text);
    if (Array.isArray(data) || isObject(data)) {
      const box = element("div", "scroll");
      box.append(value(data, 0));
      return box;
    }
    return pre(text || "(no output)");
  }

  function value(data, depth) {
    if (Array.isArray(data) && data.length > 0 && data.every(isObject)) return rows(data, depth);
    if (depth >= MAX_DEPTH && (Array.isArray(data) || isObject(data))) {
      return element("code", null, JSON.stringify(data));
    }
    if (Array.isArray(data)) return list(data, depth);
    if (isObject(data)) return pairs(data, depth);
    if (data === null) return element("span", "null", "null");
    return document.createTextNode(String(data));
  }

  function rows(items, depth) {
    const columns = [];
    for (const item of items) {
      for (const key of Object.keys(item)) if (!columns.includes(key)) columns.push(key);
    }
    const table = element("table");
    const head = table.createTHead().insertRow();
    for (const column of columns) head.append(element("th", null, column));
    const body = table.createTBody();
    for (const item of items.slice(0, MAX_ROWS)) {
      const row = body.insertRow();
      for (const column of columns) {
        const cell = row.insertCell();
        if (column in item) cell.append(value(item[column], depth + 1));
      }
    }
    if (items.length > MAX_ROWS) {
      const more = body.insertRow().insertCell();
      more.colSpan = columns.length;
      more.append(note(items.length - MAX_ROWS + " more rows not shown"));
    }
    return table;
  }

  function pairs(object, depth) {
    const table = element("table");
    const body = table.createTBody();
    for (const key of Object.keys(object)) {
      const row = body.insertRow();
      row.append(element("th", null, key));
      row.insertCell().append(value(object[key], depth + 1));
    }
    return table;
  }

  function list(items, depth) {
    if (items.length === 0) return element("span", "null", "(none)");
    const ul = element("ul");
    for (const item of items.slice(0, MAX_ROWS)) {
      const li = element("li");
      li.append(value(item, depth + 1));
      ul.append(li);
    }
    return ul;
  }

  function textOf(result) {
    return (result.content || [])
      .filter((block) => block && block.type === "text")
      .map((block) => String(block.text))
      .join("\n");
  }

  function parseJson(text) {
    if (typeof text !== "string") return undefined;
    try {
      return JSON.parse(text);
    } catch (_error) {
      return undefined;
    }
  }

  function isObject(data) {
    return data !== null && typeof data === "object" && !Array.isArray(data);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pre(text) {
    return element("pre", null, text);
  }

  function note(text) {
    return element("p", "note", text);
  }

  function showNote(text) {
    clear();
    root.append(note(text));
  }

  function clear() {
    root.replaceChildren();
  }

  // -- start -----------------------------------------------------------------------------

  if (host === window) {
    showNote("This viewer shows a result of the atrium tool inside an MCP host (MCP Apps).");
    return;
  }
  let reported = "";
  new ResizeObserver(() => {
    const box = document.documentElement.getBoundingClientRect();
    const size = Math.ceil(box.width) + "x" + Math.ceil(box.height);
    if (size === reported) return;
    reported = size;
    notify("ui/notifications/size-changed", {
      width: Math.ceil(box.width),
      height: Math.ceil(box.height),
    });
  }).observe(document.documentElement);

  request("ui/initialize", {
    protocolVersion: PROTOCOL_VERSION,
    appInfo: { name: "atrium-artifact-viewer", version: "1" },
    appCapabilities: { availableDisplayModes: ["inline"] },
  }).then(
    (result) => {
      hostCapabilities = (result && result.hostCapabilities) || {};
      applyContext((result && result.hostContext) || {});
      notify("ui/notifications/initialized", {});
    },
    (error) => showNote("The host did not start the viewer: " + error.message),
  );
})();
