// Follows a running task's log on its page (server/web/tasks.py). The page
// already shows the log up to data-offset; this reads the rest as it comes
// from the task's output stream (newline-delimited JSON, one message per
// chunk: {output: base64, state, offset, size}) and appends it as text.
// Without JavaScript the page is the log so far, and a reload shows more.
"use strict";

(function () {
  const log = document.getElementById("log");
  if (!log || log.dataset.active !== "true") {
    return;
  }
  const status = document.getElementById("log-status");
  const stateBadge = document.getElementById("task-state");
  const decoder = new TextDecoder("utf-8");
  const ACTIVE = new Set(["PENDING", "RUNNING"]);
  // Reconnects after a dropped stream are bounded; a reload starts afresh.
  const MAX_RECONNECTS = 20;
  let offset = Number(log.dataset.offset || "0");
  let reconnects = 0;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  // The log box scrolls by itself; it keeps to the end while the reader is there.
  function atBottom() {
    return log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
  }

  function append(b64) {
    if (!b64) {
      return;
    }
    const raw = atob(b64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    const follow = atBottom();
    log.appendChild(document.createTextNode(decoder.decode(bytes, { stream: true })));
    offset += bytes.length;
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function showState(state) {
    if (stateBadge && state) {
      const badge = document.createElement("span");
      badge.className = "state state-" + state.toLowerCase();
      badge.textContent = state;
      stateBadge.replaceChildren(badge);
    }
  }

  // Returns the task's state once its stream ends.
  async function follow() {
    const response = await fetch(log.dataset.stream + "?offset=" + offset, {
      headers: { Accept: "application/x-ndjson" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        message = (await response.json()).error.message;
      } catch (e) {
        // Keep the status line.
      }
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const lines = new TextDecoder("utf-8");
    let buffer = "";
    let state = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return state;
      }
      buffer += lines.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) {
          const message = JSON.parse(line);
          append(message.output);
          state = message.state;
          showState(state);
        }
      }
    }
  }

  async function run() {
    log.scrollTop = log.scrollHeight;
    say("following the log…");
    while (reconnects <= MAX_RECONNECTS) {
      let state = "";
      try {
        state = await follow();
      } catch (e) {
        say("the log stream failed: " + e.message);
        return;
      }
      if (state && !ACTIVE.has(state)) {
        log.appendChild(document.createTextNode(decoder.decode()));
        say("the task ended (" + state + "); reload for its results.");
        return;
      }
      reconnects++;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    say("stopped following; reload to see more.");
  }

  run();
})();
