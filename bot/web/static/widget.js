// 示例银行 online customer service: an embeddable chat widget in plain ES2020, no dependencies.
//
//   <script src="https://bot.example/widget.js" data-server="https://bot.example" defer></script>
//
// On a page where the customer is signed in (online banking), add data-token="<the app channel's signed token>"
// so the visitor is linked to the bank customer and the conversation can continue across channels.
//
// Message text is only ever put into the page with textContent / text nodes, never as HTML.
(() => {
  "use strict";

  const script = document.currentScript;
  const serverBase = (() => {
    const configured = script && script.dataset.server;
    const url = configured ? new URL(configured, location.href) : new URL(".", script ? script.src : location.href);
    return url.href.replace(/\/+$/, "");
  })();

  const MAX_CHARS = 2000;
  const RECONNECT_BASE_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  const VISITOR_KEY = "bankbot.visitor_credential";
  const PENDING_KEY = "bankbot.pending";
  const OPEN_KEY = "bankbot.open";
  const STATUS_TEXT = {
    connecting: "连接中…",
    online: "在线 · 智能客服为您服务",
    reconnecting: "已断开，正在重连…",
    offline: "网络已断开，恢复后自动重连…",
  };
  const CANCEL_QUEUE_TEXT = "取消转人工";  // the server's phrase for leaving the queue (bot/handoff/triggers.py)
  const RATING_COMMENT_MAX = 200;
  const RATING_TITLE = /^[1-5]分$/;

  // ---------------------------------------------------------------- storage (may be disabled by the browser)
  const storage = (area) => ({
    get(key) {
      try { return area().getItem(key); } catch { return null; }
    },
    set(key, value) {
      try { area().setItem(key, value); } catch { /* storage blocked: keep the value for this page only */ }
    },
  });
  const local = storage(() => window.localStorage);
  const session = storage(() => window.sessionStorage);

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not (a bank's test page over plain http)
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // the server issues the visitor credential on the first connection; it is what lets this browser read its
  // history again, so it stays in this browser only
  let visitor = local.get(VISITOR_KEY);

  let pending = [];  // messages not yet acknowledged: {id, text, title, ts}; resent with the same id
  try { pending = JSON.parse(local.get(PENDING_KEY) || "[]"); } catch { pending = []; }
  const savePending = () => local.set(PENDING_KEY, JSON.stringify(pending));

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    node.append(...children);  // strings become text nodes
    return node;
  }

  function icon(path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.append(p);
    return svg;
  }

  // 客服小王（工号1024）, as the server words it (bot/handoff/notices.py agent_title)
  function agentTitle(name, employeeNo) {
    const title = `客服${name || ""}`;
    return employeeNo ? `${title}（工号${employeeNo}）` : title;
  }

  const NO_ZONE = /T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;  // a server time without its zone is UTC

  function hhmm(timestamp) {
    const d = timestamp ? new Date(NO_ZONE.test(timestamp) ? `${timestamp}Z` : timestamp) : new Date();
    if (Number.isNaN(d.getTime())) return "";
    return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  }

  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  // [title](url), a bare http(s) URL, or **bold**: the little Markdown the web answers use.
  const RICH = /\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|(https?:\/\/[^\s<>"'，。；、！？）》」]+[^\s<>"'，。；、！？）》」.,;:!?)])|\*\*([^*\n]+)\*\*/g;

  function appendRich(parent, text) {
    let last = 0;
    for (const m of text.matchAll(RICH)) {
      parent.append(text.slice(last, m.index));
      if (m[4] !== undefined) {
        parent.append(el("strong", { text: m[4] }));
      } else {
        const href = safeUrl(m[2] || m[3]);
        parent.append(href
          ? el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow", text: m[1] || m[3] })
          : m[0]);
      }
      last = m.index + m[0].length;
    }
    parent.append(text.slice(last));
  }

  // ---------------------------------------------------------------- the widget's DOM (in a shadow root)
  const host = el("div", { id: "bankbot-widget" });
  host.style.display = "none";  // until widget.css has loaded: no flash of unstyled widget
  const root = host.attachShadow({ mode: "open" });
  const css = el("link", { rel: "stylesheet", href: `${serverBase}/widget.css` });
  const show = () => { host.style.display = ""; };
  css.addEventListener("load", show);
  css.addEventListener("error", show);

  const CHAT_ICON = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-4.5 3.6A.3.3 0 0 1 4 21.4V18a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z";
  const CLOSE_ICON = "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z";
  const SEND_ICON = "M3.4 20.4 21 12 3.4 3.6 3.4 10.1 15 12 3.4 13.9z";
  const DOWNLOAD_ICON = "M11 3h2v9.2l3.3-3.3 1.4 1.4-5.7 5.7-5.7-5.7 1.4-1.4 3.3 3.3zM4 18h16v2H4z";

  const launcher = el("button", {
    class: "launcher", type: "button", "aria-label": "打开在线客服", "aria-expanded": "false",
    "aria-controls": "bbw-panel",
  }, icon(CHAT_ICON), el("span", { class: "launcher-text", text: "在线客服" }), el("span", { class: "badge", hidden: "" }));

  const status = el("p", { class: "status", id: "bbw-status", role: "status", text: STATUS_TEXT.connecting });
  const closeButton = el("button", { class: "close", type: "button", "aria-label": "关闭客服窗口" }, icon(CLOSE_ICON));
  const downloadButton = el("button", {
    class: "head-button", type: "button", "aria-label": "下载聊天记录", title: "下载聊天记录",
  }, icon(DOWNLOAD_ICON));
  const header = el("header", { class: "head", role: "none" },  // the panel's title bar, not a second banner
    el("div", { class: "avatar", "aria-hidden": "true", text: "银" }),
    el("div", { class: "head-text" }, el("h2", { class: "title", id: "bbw-title", text: "在线客服" }), status),
    downloadButton, closeButton);

  // while waiting for a person: a way out of the queue
  const cancelQueueButton = el("button", { class: "cancel-queue", type: "button", text: "取消排队" });
  const queueBar = el("div", { class: "queuebar", hidden: "" },
    el("span", { class: "queuebar-text", text: "正在为您转接人工客服，请稍候" }), cancelQueueButton);

  const log = el("div", {
    class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "聊天记录",
    tabindex: "0",
  });
  const typing = el("div", { class: "typing", hidden: "" },
    el("div", { class: "bubble", role: "status", "aria-label": "客服正在输入" },
      el("span", { class: "dot" }), el("span", { class: "dot" }), el("span", { class: "dot" })));
  const scroller = el("div", { class: "scroller" }, log, typing);

  const input = el("textarea", {
    id: "bbw-input", class: "input", rows: "1", maxlength: String(MAX_CHARS), placeholder: "请输入您的问题…",
    autocomplete: "off", enterkeyhint: "send", "aria-describedby": "bbw-hint",
  });
  const sendButton = el("button", { class: "send", type: "submit", "aria-label": "发送消息" },
    icon(SEND_ICON), el("span", { text: "发送" }));
  const form = el("form", { class: "composer" },
    el("label", { class: "sr-only", for: "bbw-input", text: "输入您的问题" }), input, sendButton);
  const hint = el("p", { class: "hint", id: "bbw-hint", text: "按 Enter 发送，Shift+Enter 换行 · 请勿发送密码和验证码" });

  const panel = el("section", {
    class: "panel", id: "bbw-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "bbw-title",
    hidden: "",
  }, header, queueBar, scroller, form, hint);

  root.append(css, launcher, panel);

  // ---------------------------------------------------------------- rendering messages
  const answered = new Set();  // message ids whose replies are on screen (skips replayed duplicate replies)

  function scrollToEnd() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  function retireQuickReplies() {
    for (const button of log.querySelectorAll(".quick button")) button.disabled = true;
    for (const box of log.querySelectorAll(".rating")) box.remove();  // the customer wrote something else
  }

  // `agent`: {name, employeeNo} when a person at the desk wrote it; `source`: the server's source of a bot message
  function addMessage({ role, text, timestamp, buttons, messageId, state, agent, source }) {
    if (role === "user") retireQuickReplies();
    const body = el("span", { class: "text" });
    if (role === "bot") appendRich(body, (text || "").trim()); else body.append(text || "");
    const speaker = role === "user" ? "我" : agent ? agentTitle(agent.name) : "智能客服";
    const who = el("span", { class: "sr-only", text: `${speaker}说：` });
    const bubble = el("div", { class: "bubble" }, who, body);
    const meta = el("div", { class: "meta" }, el("time", { text: hhmm(timestamp) }));
    if (timestamp) meta.firstChild.setAttribute("datetime", timestamp);
    const row = el("div", { class: `msg ${role}${agent ? " agent" : ""}` }, bubble, meta);
    if (agent) {
      row.prepend(el("div", { class: "sender", "aria-hidden": "true" },
        el("span", { class: "tag", text: "人工" }), agentTitle(agent.name)));
    }
    if (messageId) row.dataset.id = messageId;
    if (state) setState(row, state);
    if (role === "bot" && buttons && buttons.length) {
      const rating = source === "satisfaction" || buttons.every((b) => RATING_TITLE.test(b.title || ""));
      const quick = el("div", { class: "quick", role: "group", "aria-label": rating ? "评分" : "快捷回复" });
      for (const b of buttons) {
        const onclick = rating ? () => chooseRating(row, b) : () => send(b.payload, b.title);
        quick.append(el("button", { type: "button", text: b.title, onclick }));
      }
      row.append(quick);
    }
    log.append(row);
    scrollToEnd();
    return row;
  }

  // a score chosen: an optional comment, then one message "4分 意见" (or "4分" when skipped)
  function chooseRating(row, button) {
    const score = (button.title || "").replace(/[^1-5]/g, "") || String(button.payload);
    for (const b of row.querySelectorAll(".quick button")) {
      b.setAttribute("aria-pressed", String(b.textContent === button.title));
    }
    row.querySelector(".rating")?.remove();
    const id = `bbw-comment-${uuid()}`;
    const comment = el("textarea", {
      id, class: "comment", rows: "3", maxlength: String(RATING_COMMENT_MAX), placeholder: "例如：回答很清楚",
    });
    const count = el("span", { class: "count", "aria-live": "polite", text: `0/${RATING_COMMENT_MAX}` });
    comment.addEventListener("input", () => { count.textContent = `${comment.value.length}/${RATING_COMMENT_MAX}`; });
    const finish = (withComment) => {
      const text = withComment ? comment.value.trim().slice(0, RATING_COMMENT_MAX) : "";
      box.remove();
      send(text ? `${score}分 ${text}` : `${score}分`);
    };
    const box = el("form", { class: "rating", "aria-label": "补充评价" },
      el("label", { for: id, text: "补充您的意见（选填）" }), comment,
      el("div", { class: "rating-actions" }, count,
        el("button", { type: "button", class: "skip", text: "跳过", onclick: () => finish(false) }),
        el("button", { type: "submit", class: "submit", text: "提交" })));
    box.addEventListener("submit", (event) => { event.preventDefault(); finish(true); });
    row.append(box);
    scrollToEnd();
    comment.focus();
  }

  // a hand-over notice ("客服小王为您服务"): a centred line of the conversation, not anyone's bubble
  function addSystemLine(text, timestamp) {
    const line = el("div", { class: "sysline", role: "note" }, el("span", { text }));
    if (timestamp) line.title = hhmm(timestamp);
    log.append(line);
    scrollToEnd();
  }

  function setState(row, state) {
    row.classList.toggle("pending", state === "pending");
    row.classList.toggle("failed", state === "failed");
    const meta = row.querySelector(".meta");
    let label = meta.querySelector(".state");
    if (!label) { label = el("span", { class: "state" }); meta.append(label); }
    label.textContent = state === "pending" ? "发送中…" : state === "failed" ? "未发送" : "";
  }

  function rowFor(messageId) {
    return Array.from(log.querySelectorAll(".msg.user")).find((row) => row.dataset.id === messageId);
  }

  function addNotice(text) {
    log.append(el("div", { class: "notice", text }));
    scrollToEnd();
  }

  function addWelcome() {
    addMessage({
      role: "bot",
      text: "您好，欢迎来到示例银行在线客服！我是智能客服小智，7×24小时为您服务。请问有什么可以帮您？",
      buttons: [
        { title: "银行卡丢了怎么办", payload: "银行卡丢了怎么办" },
        { title: "信用卡账单查询", payload: "信用卡账单怎么查" },
        { title: "转账限额", payload: "转账限额是多少" },
      ],
    });
  }

  function renderHistory(messages) {
    log.replaceChildren();
    answered.clear();
    let lastButtons = [];
    let lastUser = null;
    for (const m of messages) {
      if (m.role === "user") {
        // a quick reply is stored as its payload: show the button's title, as when it was clicked
        const clicked = lastButtons.find((b) => b.payload === m.text);
        addMessage({ role: "user", text: clicked ? clicked.title : m.text, timestamp: m.timestamp, messageId: m.message_id });
        lastUser = m.message_id;
      } else if (m.source === "handoff_notice") {
        addSystemLine(m.text, m.timestamp);
      } else {
        const agent = m.source === "agent" ? { name: m.agent, employeeNo: m.employee_no } : null;
        addMessage({ role: "bot", text: m.text, timestamp: m.timestamp, buttons: m.buttons, agent, source: m.source });
        lastButtons = m.buttons || [];
        if (lastUser) answered.add(lastUser);
      }
    }
    const known = new Set(messages.map((m) => m.message_id).filter(Boolean));
    pending = pending.filter((p) => !known.has(p.id));  // processed, but the ack was lost with the connection
    savePending();
    if (!messages.length && !pending.length) addWelcome();
    for (const p of pending) addMessage({ role: "user", text: p.title || p.text, timestamp: p.ts, messageId: p.id, state: "pending" });
  }

  // ---------------------------------------------------------------- the connection
  let socket = null;
  let ready = false;       // history received on this socket: safe to send
  let attempt = 0;
  let retryTimer = null;
  const inflight = new Set();  // ids sent on the current socket

  // who has the conversation: the bot, the queue (its status text) or a person ({name, employeeNo})
  let serving = { kind: "bot" };
  let connection = "connecting";

  function setStatus(key) {
    connection = key;
    showServing();
  }

  function serve(next) {
    serving = next;
    showServing();
  }

  function showServing() {
    const online = connection === "online";
    const kind = online ? serving.kind : connection;
    queueBar.hidden = serving.kind !== "queue";
    panel.dataset.serving = serving.kind;
    panel.dataset.status = online && serving.kind === "queue" ? "queued" : connection;
    if (!online) status.textContent = STATUS_TEXT[kind];
    else if (kind === "queue") status.textContent = serving.text || "排队中，请稍候";
    else if (kind === "agent") status.textContent = `在线 · ${agentTitle(serving.name, serving.employeeNo)}为您服务`;
    else status.textContent = STATUS_TEXT.online;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (socket) return;
    setStatus(attempt ? "reconnecting" : "connecting");
    const url = new URL(`${serverBase}/ws/chat`);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.href);
    socket = ws;
    ready = false;
    inflight.clear();
    ws.addEventListener("open", () => {
      // credentials travel in the first frame, never in the URL (URLs end up in logs)
      const hello = { type: "hello" };
      if (visitor) hello.visitor = visitor;
      const token = script && script.dataset.token;
      if (token) hello.token = token;
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      onFrame(frame);
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      ready = false;
      showTyping(false);
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (retryTimer) return;
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** attempt);
    const delay = ceiling / 2 + Math.random() * ceiling / 2;  // jitter: a restarted server is not hit all at once
    attempt += 1;
    setStatus(navigator.onLine === false ? "offline" : "reconnecting");
    retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener("online", () => { if (!socket && started) connect(); });

  function flush() {
    if (!socket || !ready) return;
    for (const p of pending) {
      if (inflight.has(p.id)) continue;
      inflight.add(p.id);
      const frame = { type: "message", text: p.text, message_id: p.id };
      if (p.title) frame.title = p.title;
      socket.send(JSON.stringify(frame));
    }
  }

  function settle(messageId) {
    pending = pending.filter((p) => p.id !== messageId);
    savePending();
    inflight.delete(messageId);
    if (!inflight.size) showTyping(false);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "welcome":  // the socket knows who we are: keep the (possibly new) credential, then load the history
        if (frame.visitor) {
          visitor = frame.visitor;
          local.set(VISITOR_KEY, visitor);
        }
        if (socket) socket.send(JSON.stringify({ type: "history" }));
        break;
      case "history":  // where a hand-over stands follows in a queue or handoff frame
        renderHistory(Array.isArray(frame.messages) ? frame.messages : []);
        serving = { kind: "bot" };
        ready = true;
        attempt = 0;
        setStatus("online");
        flush();
        break;
      case "typing":
        showTyping(true);
        break;
      case "bot": {
        if (frame.duplicate && answered.has(frame.reply_to)) break;
        if (frame.source === "handoff_notice") {  // e.g. 客服小王（工号1024）为您服务, said in the customer's turn
          addSystemLine(frame.text, frame.timestamp);
          break;
        }
        const byAgent = frame.source === "agent" || frame.from === "agent";
        const agent = byAgent ? { name: frame.agent || serving.name, employeeNo: frame.employee_no || serving.employeeNo } : null;
        addMessage({ role: "bot", text: frame.text, timestamp: frame.timestamp, buttons: frame.buttons, agent, source: frame.source });
        if (panel.hidden) launcher.querySelector(".badge").hidden = false;
        break;
      }
      case "handoff":  // a person joined, passed the chat on, left, or it went back to the queue
        onHandoff(frame);
        break;
      case "ack": {
        settle(frame.message_id);
        answered.add(frame.message_id);
        const row = rowFor(frame.message_id);
        if (row) setState(row, "sent");
        break;
      }
      case "queue":  // waiting for a person: the place in the queue in the status line, cleared at 0
        if (frame.position > 0 && frame.text) serve({ kind: "queue", text: frame.text });
        else if (serving.kind === "queue") serve({ kind: "bot" });  // cancelled; a person who joined stays
        break;
      case "error": {
        if (frame.message_id) {
          settle(frame.message_id);
          const row = rowFor(frame.message_id);
          if (row) setState(row, "failed");
        } else {
          showTyping(false);
        }
        addNotice(frame.message || "抱歉，出现了问题，请稍后再试。");
        break;
      }
      default:
        break;
    }
  }

  function onHandoff(frame) {
    if (frame.text) addSystemLine(frame.text, frame.timestamp);
    if (frame.status === "agent_joined") serve({ kind: "agent", name: frame.agent, employeeNo: frame.employee_no });
    else if (frame.status === "agent_left") serve({ kind: "bot" });
    else if (frame.status === "transferred" || frame.status === "requeued") serve({ kind: "queue", text: frame.text });
    if (frame.text && panel.hidden) launcher.querySelector(".badge").hidden = false;
  }

  function showTyping(on) {
    typing.hidden = !on;
    if (on) scrollToEnd();
  }

  // ---------------------------------------------------------------- sending
  function send(text, title) {
    const clean = String(text || "").trim();
    if (!clean) return;
    if (clean.length > MAX_CHARS) {
      addNotice(`消息太长了，请控制在 ${MAX_CHARS} 字以内。`);
      return;
    }
    const item = { id: uuid(), text: clean, title: title || null, ts: new Date().toISOString() };
    pending.push(item);
    savePending();
    addMessage({ role: "user", text: title || clean, timestamp: item.ts, messageId: item.id, state: "pending" });
    start();
    flush();
  }

  cancelQueueButton.addEventListener("click", () => send(CANCEL_QUEUE_TEXT));

  // ---------------------------------------------------------------- the transcript, as a text file
  async function downloadTranscript() {
    if (!visitor) {
      addNotice("还没有聊天记录可以下载。");
      return;
    }
    downloadButton.disabled = true;
    try {
      const response = await fetch(`${serverBase}/widget/transcript`, {
        headers: { Authorization: `Bearer ${visitor}` }, cache: "no-store",
      });
      if (!response.ok) throw new Error(String(response.status));
      const url = URL.createObjectURL(await response.blob());
      const d = new Date();
      const day = `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, "0")}${String(d.getDate()).padStart(2, "0")}`;
      const link = el("a", { href: url, download: `聊天记录-${day}.txt`, hidden: "" });
      root.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch {
      addNotice("聊天记录下载失败，请稍后再试。");
    } finally {
      downloadButton.disabled = false;
    }
  }
  downloadButton.addEventListener("click", downloadTranscript);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    autosize();
    send(text);
    input.focus();
  });

  input.addEventListener("keydown", (event) => {
    // isComposing / 229: Enter that confirms a pinyin candidate must not send the message
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function autosize() {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 120)}px`;
  }
  input.addEventListener("input", autosize);

  // ---------------------------------------------------------------- opening and closing
  let started = false;
  function start() {
    if (started) return;
    started = true;
    connect();
  }

  function open() {
    panel.hidden = false;
    host.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "在线客服已打开");
    launcher.querySelector(".badge").hidden = true;
    session.set(OPEN_KEY, "1");
    start();
    scrollToEnd();
    input.focus();
  }

  function close() {
    panel.hidden = true;
    host.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "打开在线客服");
    session.set(OPEN_KEY, "0");
    launcher.focus();
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });

  // A small API for the host page, e.g. a "问问智能客服" link next to a help topic.
  window.BankChat = {
    open,
    close,
    ask(question) {
      open();
      send(question);
    },
  };

  function mount() {
    document.body.append(host);
    if (session.get(OPEN_KEY) === "1") open();
    else if (pending.length) start();  // unsent messages from before a reload go out without waiting
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
