// Atrium console: a chat with an agent, streamed. The form posts as it would without script,
// asking for the run's server-sent events (Accept: text/event-stream); each event is shown as
// it comes: text appended, a tool call listed when it starts and marked when it finishes.
// Everything the agent or a tool says is set as text (textContent), never as HTML.
(function () {
  "use strict";
  function item(list, role, who) {
    var li = document.createElement("li");
    li.className = "message " + role;
    var label = document.createElement("span");
    label.className = "who";
    label.textContent = who;
    li.appendChild(label);
    list.appendChild(li);
    return li;
  }
  function textOf(li) {
    var div = li.querySelector(":scope > .text");
    if (!div) {
      div = document.createElement("div");
      div.className = "text";
      li.insertBefore(div, li.querySelector(":scope > ul.calls"));
    }
    return div;
  }
  function callsOf(li) {
    var ul = li.querySelector(":scope > ul.calls");
    if (!ul) {
      ul = document.createElement("ul");
      ul.className = "calls";
      li.appendChild(ul);
    }
    return ul;
  }
  function Run(form, list, state) {
    this.form = form;
    this.list = list;
    this.state = state;
    this.reply = null;
    this.calls = {};
  }
  Run.prototype.show = function (name, data) {
    if (name === "started") {
      this.form.elements.conversation_id.value = data.conversation_id;
      this.list.setAttribute("data-conversation", data.conversation_id);
      this.state.textContent = "Running…";
      this.reply = item(this.list, "assistant", "Agent");
    } else if (name === "text") {
      var div = textOf(this.reply);
      div.textContent += data.text;
    } else if (name === "tool_started") {
      var li = document.createElement("li");
      li.className = "call";
      li.setAttribute("data-state", "running");
      li.setAttribute("data-tool", data.name);
      li.textContent = data.name + " …";
      callsOf(this.reply).appendChild(li);
      this.calls[data.call_id] = li;
    } else if (name === "tool_finished") {
      var call = this.calls[data.call_id];
      if (call) {
        call.setAttribute("data-state", data.ok ? "ok" : "failed");
        call.textContent = data.name + (data.ok ? " ✓ " : " ✗ ") + Math.round(data.duration_ms) + " ms" +
          (data.error ? ": " + data.error : "");
      }
    } else if (name === "finished") {
      this.list.setAttribute("data-run", "finished");
      this.state.textContent = "Done: " + data.tool_calls + " tool call(s), " + data.rounds + " model request(s).";
    } else if (name === "failed") {
      this.list.setAttribute("data-run", "failed");
      this.state.textContent = "The run failed: " + data.error;
    }
  };
  Run.prototype.frame = function (frame) {
    var name = "message", data = "";
    frame.split("\n").forEach(function (line) {
      if (line.indexOf("event: ") === 0) { name = line.slice(7); }
      else if (line.indexOf("data: ") === 0) { data += line.slice(6); }
    });
    if (data) { this.show(name, JSON.parse(data)); }
  };
  Run.prototype.refused = function (response) {
    var self = this;
    return response.text().then(function (html) {
      var page = new DOMParser().parseFromString(html, "text/html");
      var message = page.querySelector(".message");
      self.list.setAttribute("data-run", "refused");
      self.state.textContent = message ? message.textContent : "Refused (" + response.status + ").";
    });
  };
  Run.prototype.read = function (response) {
    var self = this, reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { return; }
        buffer += decoder.decode(chunk.value, {stream: true});
        var frames = buffer.split("\n\n");
        buffer = frames.pop();
        frames.forEach(function (frame) { self.frame(frame); });
        return pump();
      });
    }
    return pump();
  };
  function start() {
    var form = document.getElementById("chat");
    if (!form || !window.fetch || !window.TextDecoder) { return; }
    var list = document.getElementById("transcript");
    var state = document.getElementById("run-state");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = form.elements.message.value;
      if (!text.trim()) { return; }
      var body = new URLSearchParams(new FormData(form));
      var said = item(list, "user", "You");
      textOf(said).textContent = text;
      form.elements.message.value = "";
      button.disabled = true;
      list.setAttribute("data-run", "running");
      state.textContent = "Sending…";
      var run = new Run(form, list, state);
      fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin",
        headers: {"Accept": "text/event-stream"}
      }).then(function (response) {
        return response.ok ? run.read(response) : run.refused(response);
      }).catch(function () {
        list.setAttribute("data-run", "failed");
        state.textContent = "The connection broke off.";
      }).then(function () { button.disabled = false; });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
