// The chat page: a WebSocket that resumes, and a small Markdown renderer that builds DOM
// nodes (text goes in through textContent only: model output can never become markup).
"use strict";

(function () {
  const root = document.getElementById("chat");
  if (!root) return;
  const csrf = root.dataset.csrf;
  const maxFrame = Number(root.dataset.maxFrame); // bytes: the server closes on a larger frame
  const list = document.getElementById("messages");
  const status = document.getElementById("status");
  const form = document.getElementById("composer");
  const input = document.getElementById("input");
  const picker = document.getElementById("file");
  const chips = document.getElementById("files");
  let pending = []; // uploaded files the next message carries: {id, name}

  let socket = null;
  let after = null; // the server's answer sequence when this page first connected
  let process = null; // the server process that sequence is of (a restart starts another)
  let retry = 500;
  const answers = new Map(); // answer id -> {el, rows, text, done} (rows: its earlier bubbles)
  const unacked = new Map(); // client id -> its send frame, re-sent after a reconnect
  const waiting = new Set(); // client ids said to wait (storage busy), not yet acknowledged
  const sent = new Map(); // client id -> its bubble, until acknowledged

  // --- Markdown, safely -------------------------------------------------------------------
  const SAFE_SCHEMES = ["http:", "https:", "mailto:"];

  function safeHref(url) {
    try {
      const parsed = new URL(url, location.href);
      return SAFE_SCHEMES.includes(parsed.protocol) ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function inline(parent, text) {
    const pattern = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)|(\[[^\]\n]+\]\([^)\s]+\))/g;
    let last = 0;
    let m;
    while ((m = pattern.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      const token = m[0];
      let node;
      if (m[1]) {
        node = document.createElement("code");
        node.textContent = token.slice(1, -1);
      } else if (m[2]) {
        node = document.createElement("strong");
        node.textContent = token.slice(2, -2);
      } else if (m[3]) {
        node = document.createElement("em");
        node.textContent = token.slice(1, -1);
      } else {
        const split = token.indexOf("](");
        const label = token.slice(1, split);
        const href = safeHref(token.slice(split + 2, -1));
        if (href) {
          node = document.createElement("a");
          node.href = href;
          node.rel = "noopener noreferrer nofollow";
          node.target = "_blank";
          node.textContent = label;
        } else {
          node = document.createTextNode(token);
        }
      }
      parent.appendChild(node);
      last = m.index + token.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function lines(parent, block) {
    block.split("\n").forEach((line, i) => {
      if (i > 0) parent.appendChild(document.createElement("br"));
      inline(parent, line);
    });
  }

  function renderMarkdown(target, text) {
    const frag = document.createDocumentFragment();
    const parts = text.split(/^```/m);
    parts.forEach((part, i) => {
      if (i % 2 === 1) {
        const newline = part.indexOf("\n");
        const lang = newline >= 0 ? part.slice(0, newline).trim() : "";
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        if (/^[\w+-]+$/.test(lang)) code.dataset.lang = lang;
        code.textContent = newline >= 0 ? part.slice(newline + 1).replace(/\n$/, "") : "";
        pre.appendChild(code);
        frag.appendChild(pre);
        return;
      }
      part.split(/\n{2,}/).forEach((block) => {
        if (!block.trim()) return;
        const rows = block.split("\n");
        const bullet = /^\s*[-*] /;
        const numbered = /^\s*\d+[.)] /;
        if (rows.every((r) => bullet.test(r)) || rows.every((r) => numbered.test(r))) {
          const ordered = numbered.test(rows[0]);
          const ul = document.createElement(ordered ? "ol" : "ul");
          rows.forEach((r) => {
            const li = document.createElement("li");
            inline(li, r.replace(ordered ? numbered : bullet, ""));
            ul.appendChild(li);
          });
          frag.appendChild(ul);
          return;
        }
        const heading = /^(#{1,6}) (.*)$/.exec(block);
        const p = document.createElement(heading ? "h3" : "p");
        lines(p, heading ? heading[2] : block);
        frag.appendChild(p);
      });
    });
    target.replaceChildren(frag);
  }

  // --- the message list -------------------------------------------------------------------
  function bubble(role, text, files) {
    const li = document.createElement("li");
    li.className = "msg " + role;
    const body = document.createElement("div");
    body.className = "body";
    li.appendChild(body);
    if (role === "user") body.textContent = text;
    else renderMarkdown(body, text);
    (files || []).forEach((f) => {
      const chip = document.createElement("div");
      chip.className = "attachment";
      chip.textContent = "📎 " + f.name;
      li.appendChild(chip);
    });
    list.appendChild(li);
    li.scrollIntoView({ block: "end" });
    return li;
  }

  function answer(event) {
    let a = answers.get(event.id);
    if (!a) {
      a = { el: bubble("assistant", ""), rows: [], text: "", done: false };
      a.el.dataset.answer = event.id;
      answers.set(event.id, a);
    }
    return a;
  }

  // a history item: an answer is known by its id, so a reconnect that replays it (another
  // server process has it buffered) does not show it twice
  function shownBefore(item) {
    const el = bubble(item.role === "user" ? "user" : "assistant", item.text);
    if (item.role === "user" || !item.id) return;
    el.dataset.answer = item.id;
    const before = answers.get(item.id);
    // an answer of several rows shows one bubble a row; the earlier ones are its `rows`
    const rows = before ? before.rows.concat([before.el]) : [];
    const text = (before ? before.text : "") + item.text;
    answers.set(item.id, { el: el, rows: rows, text: text, done: true });
  }

  function onDelta(event) {
    const a = answer(event);
    if (event.replace) {
      // the whole answer anew: not a continuation of this copy, which it replaces in full
      a.rows.forEach((el) => el.remove());
      a.rows = [];
      a.text = "";
    }
    const end = event.at + event.text.length;
    if (event.at > a.text.length || end <= a.text.length) return; // a gap or already shown
    a.text += event.text.slice(a.text.length - event.at);
    a.el.classList.add("streaming");
    renderMarkdown(a.el.firstChild, a.text);
    a.el.scrollIntoView({ block: "end" });
  }

  function onDone(event) {
    const a = answer(event);
    a.done = true;
    a.el.classList.remove("streaming");
    a.el.classList.add("done");
  }

  // --- the socket -------------------------------------------------------------------------
  function setStatus(text, ok) {
    status.textContent = text;
    status.classList.toggle("ok", !!ok);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws?csrf=" + encodeURIComponent(csrf));
    socket.addEventListener("open", () => {
      const have = {};
      answers.forEach((a, id) => { have[id] = a.text.length; });
      socket.send(JSON.stringify({ type: "hello", after: after, process: process, have: have }));
      unacked.forEach((frame) => socket.send(JSON.stringify(frame)));
    });
    socket.addEventListener("message", (msg) => {
      let event;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      switch (event.type) {
        case "history":
          event.items.forEach(shownBefore);
          break;
        case "ready":
          if (after === null || event.process !== process) {
            after = event.seq;
            process = event.process;
          }
          retry = 500;
          setStatus("connected", true);
          break;
        case "delta": onDelta(event); break;
        case "done": onDone(event); break;
        case "ack":
          unacked.delete(event.id);
          sent.delete(event.id);
          // a message that waited for storage is stored: its "waits" note is over
          if (waiting.delete(event.id) && waiting.size === 0) setStatus("connected", true);
          break;
        case "error":
          // only a message that waits for storage is sent once it can be: its note clears
          // at the ack; a refused one (an unknown file, too many) is acknowledged right
          // after its error, so it is dropped and its error stays shown
          if (event.wait && unacked.has(event.id)) waiting.add(event.id);
          else if (event.id && sent.has(event.id)) notSent(sent.get(event.id));
          setStatus(event.text, false);
          break;
      }
    });
    socket.addEventListener("close", (ev) => {
      if (ev.code === 4401) { // signed out (here or in another tab), or the login expired
        location.href = "/login";
        return;
      }
      setStatus("reconnecting…", false);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }

  // refused for good: the bubble must not look sent, or the typed text is silently lost
  function notSent(li) {
    if (li.classList.contains("not-sent")) return;
    li.classList.add("not-sent");
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = "not sent";
    li.appendChild(note);
  }

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function showPending() {
    chips.replaceChildren(...pending.map((f) => {
      const li = document.createElement("li");
      li.className = "attachment";
      li.textContent = "📎 " + f.name;
      return li;
    }));
  }

  async function upload(file) {
    const body = new FormData();
    body.append("file", file, file.name);
    setStatus("uploading " + file.name + "…", true);
    const resp = await fetch("/upload", { method: "POST", body: body, headers: { "X-CSRF-Token": csrf } });
    if (!resp.ok) {
      setStatus(file.name + ": " + (await resp.text()), false);
      return;
    }
    const got = await resp.json();
    pending.push({ id: got.id, name: got.name });
    showPending();
    setStatus("connected", true);
  }

  picker.addEventListener("change", async () => {
    for (const file of Array.from(picker.files)) await upload(file);
    picker.value = "";
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text && !pending.length) return;
    const frame = { type: "send", id: newId(), text: text, files: pending.map((f) => f.id) };
    const size = new Blob([JSON.stringify(frame)]).size;
    if (size > maxFrame) {
      // sent, it would close the socket, and be sent again at every reconnect: keep it here
      const kb = (n) => Math.ceil(n / 1024).toLocaleString();
      setStatus(`That message is too long to send here (${kb(size)} KB; at most ${kb(maxFrame)} KB). ` +
        "Attach it as a file instead.", false);
      return;
    }
    unacked.set(frame.id, frame);
    sent.set(frame.id, bubble("user", text, pending));
    pending = [];
    showPending();
    input.value = "";
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  connect();
})();
