/* 示例银行 坐席工作台 — the agent console at /agent.
   Plain ES2020, no framework, no build step. Talks to /api/agent/* and /api/supervisor/* with the session token
   from login, and listens on /api/agent/ws (authenticated by its first frame) for queue changes and customers'
   messages. Every piece of data is rendered with textContent, never as HTML; customer text arrives masked. */
(() => {
  "use strict";

  const { $, el, readJson, formats: { clock, dayClock }, ApiError, errorText, toast } = BankConsole;
  const stored = BankConsole.storedSession("bankbot.agent");
  const POLL_MS = 5000;
  const MAX_BACKOFF_MS = 30000;
  const PRESENCE = { online: "在线", away: "小休", offline: "离线" };
  const ROLE = { agent: "坐席", supervisor: "主管", admin: "管理员" };
  const ROLE_NAME = { user: "客户", bot: "机器人", agent: "坐席" };

  const state = {
    token: stored.token(),
    me: stored.me(),
    waiting: [],
    mine: [],
    fetchedAt: 0,
    openId: null,           // the handoff shown in the centre
    context: null,
    unread: new Set(),
    canned: [],
    groups: [],
    closed: [],             // my recently closed chats (with the customer's rating)
    meta: { channels: {}, reasons: {} },  // labels from GET /api/agent/meta (the server's one table of each)
    socket: null,
    attempt: 0,
    retryTimer: null,
    pollTimer: null,
    pingTimer: null,
    view: "desk",
    overview: null,
    watchId: null,
    refreshTimer: null,
  };

  // ------------------------------------------------------------------ helpers (the shared ones: console.js)

  const parseTime = (stamp) => BankConsole.parseTime(stamp) || new Date();  // an entry without a time: now

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}秒`;
    if (s < 3600) return `${Math.floor(s / 60)}分${String(s % 60).padStart(2, "0")}秒`;
    return `${Math.floor(s / 3600)}小时${Math.floor((s % 3600) / 60)}分`;
  }

  // channels' and hand-over reasons' Chinese names come from the server (GET /api/agent/meta)
  function channelName(code) {
    if (!code) return "";
    const info = state.meta.channels[code];
    return info ? info.label : "其他渠道";
  }

  function reasonLabel(kind) {
    const info = state.meta.reasons[kind];
    return info ? info.label : "";
  }

  function loadMeta() {
    return api("GET", "/api/agent/meta").then((meta) => {
      state.meta = {
        channels: Object.fromEntries((meta.channels || []).map((c) => [c.name, c])),
        reasons: Object.fromEntries((meta.reasons || []).map((r) => [r.kind, r])),
      };
      renderQueue();
      if (state.context) renderContext(state.context);
      if (state.overview && state.view === "supervisor") renderOverview();  // it may have come first
    }).catch(failed);
  }

  function stars(rating) {
    const n = Math.max(0, Math.min(5, Number(rating) || 0));
    return `${"★".repeat(n)}${"☆".repeat(5 - n)} ${n}分`;
  }

  // "转接自 小王：客户想赎回理财" — where a chat I got came from (a colleague's transfer or a supervisor's reassignment)
  function transferText(transfer) {
    if (!transfer) return "";
    const from = transfer.from_agent || "排队";
    const head = transfer.via === "reassign" ? `主管改派自 ${from}` : `转接自 ${from}`;
    return transfer.note ? `${head}：${transfer.note}` : head;
  }

  function customerName(summary) {
    const c = summary && summary.customer;
    return c && c.name ? c.name : "访客";
  }

  const api = BankConsole.apiClient({
    token: () => state.token,
    onUnauthorized: () => { signedOut("登录已失效，请重新登录。"); },
  });

  function failed(error) {
    if (error instanceof ApiError && error.status === 401) return;
    toast(errorText(error));
  }

  // ------------------------------------------------------------------ login / logout

  BankConsole.bindLogin({ api, state, stored, start, signOut: () => signedOut() });

  function signedOut(message) {
    state.token = null;
    state.me = null;
    stored.clear();
    stopLive();
    closeChat();
    state.waiting = [];
    state.mine = [];
    state.unread.clear();
    $("console-view").hidden = true;
    $("login-view").hidden = false;
    const error = $("login-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("login-username").focus();
  }

  function start() {
    $("login-view").hidden = true;
    $("console-view").hidden = false;
    renderMe();
    showView("desk");
    loadMeta();
    refreshQueue();
    connect();
    loadCanned();
    api("GET", "/api/agent/groups").then((list) => { state.groups = list || []; }).catch(failed);
  }

  function renderMe() {
    const me = state.me || {};
    const number = me.employee_no ? `工号${me.employee_no} · ` : "";
    $("agent-name").textContent = `${me.display_name || me.username || ""}（${number}${ROLE[me.role] || me.role || ""}）`;
    $("agent-groups").textContent = (me.groups || []).length ? `技能组：${me.groups.join("、")}` : "";
    $("agent-groups").title = $("agent-groups").textContent;
    for (const button of document.querySelectorAll(".presence button")) {
      button.setAttribute("aria-pressed", String(button.dataset.presence === me.presence));
    }
    $("tab-supervisor").hidden = !(me.role === "supervisor" || me.role === "admin");
  }

  // ------------------------------------------------------------------ presence

  for (const button of document.querySelectorAll(".presence button")) {
    button.addEventListener("click", async () => {
      try {
        state.me = await api("POST", "/api/agent/presence", { presence: button.dataset.presence });
        stored.saveMe(state.me);
        renderMe();
        toast(`状态已切换为：${PRESENCE[state.me.presence] || state.me.presence}`, 1800);
        refreshQueue();
      } catch (e) { failed(e); }
    });
  }

  // ------------------------------------------------------------------ queue

  async function refreshQueue() {
    if (!state.token) return;
    try {
      const queue = await api("GET", "/api/agent/queue");
      const known = new Set(state.mine.map((s) => s.handoff_id));
      state.waiting = queue.waiting || [];
      state.mine = queue.mine || [];
      state.closed = queue.closed || [];
      state.fetchedAt = Date.now();
      if (queue.agent && typeof queue.agent === "object") {  // if the server reports my account (presence) too
        state.me = { ...state.me, ...queue.agent };
        stored.saveMe(state.me);
        renderMe();
      }
      const fresh = state.mine.filter((s) => !known.has(s.handoff_id));
      renderQueue();
      const readOnly = state.context && !state.context.mine;  // a closed chat opened to read it stays open
      if (state.openId !== null && !readOnly && !state.mine.some((s) => s.handoff_id === state.openId)) {
        const wasOpen = state.openId;
        closeChat();
        toast(`会话 #${wasOpen} 已不在您的接待列表中（已转接、重新分配、结束，或断线后重新排队）。`);
      }
      if (state.openId === null && state.mine.length) {
        openChat((fresh[0] || state.mine[0]).handoff_id);  // a chat assigned to me opens by itself
      } else if (fresh.length && state.openId !== null) {
        for (const s of fresh) state.unread.add(s.handoff_id);
        renderQueue();
        toast(`新会话已分配给您：${customerName(fresh[0])}`);
      }
    } catch (e) { failed(e); }
  }

  function renderQueue() {
    const waitingList = $("waiting-list");
    waitingList.replaceChildren(...state.waiting.map((s) => queueCard(s, false)));
    $("waiting-empty").hidden = state.waiting.length > 0;
    $("waiting-count").textContent = String(state.waiting.length);
    $("waiting-count").classList.toggle("hot", state.waiting.length > 0);
    const mineList = $("mine-list");
    mineList.replaceChildren(...state.mine.map((s) => queueCard(s, true)));
    $("mine-empty").hidden = state.mine.length > 0;
    $("mine-count").textContent = String(state.mine.length);
    $("closed-list").replaceChildren(...state.closed.map(closedCard));
    $("closed-section").hidden = state.closed.length === 0;
    tickWaits();
  }

  function queueCard(summary, mine) {
    const card = el("li", `qcard${mine ? " mine" : ""}`);
    card.dataset.handoff = String(summary.handoff_id);
    card.dataset.wait = String(summary.waiting_seconds || 0);
    if (mine && summary.handoff_id === state.openId) card.classList.add("selected");
    if (mine && state.unread.has(summary.handoff_id)) card.classList.add("unread");

    const top = el("div", "row");
    top.append(el("span", `tag${summary.priority <= 1 ? " urgent" : ""}`, summary.group));
    top.append(mine ? opener(summary, customerName(summary)) : el("span", "who", customerName(summary)));
    if (summary.customer && summary.customer.tier) top.append(el("span", "tier", summary.customer.tier));
    top.append(el("span", "wait", duration(summary.waiting_seconds || 0)));
    card.append(top);
    card.append(el("p", "reason", `${channelName(summary.channel)} · ${reasonOf(summary)}`));
    if (summary.transfer) card.append(el("p", "transfer-note", transferText(summary.transfer)));
    if (summary.last_message) card.append(el("p", "last", `“${summary.last_message}”`));

    if (mine) {
      card.addEventListener("click", () => openChat(summary.handoff_id));
    } else {
      const accept = el("button", "accept primary", "接入");
      accept.type = "button";
      accept.setAttribute("aria-label", `接入 ${customerName(summary)}（${summary.group}）`);
      accept.addEventListener("click", () => acceptChat(summary.handoff_id, accept));
      card.append(accept);
    }
    return card;
  }

  function reasonOf(summary) {
    // the detail says the reason in full ("业务办理多次验证失败（身份核验未通过）"): the kind's label only without one
    return summary.detail || reasonLabel(summary.reason) || summary.reason || "";
  }

  // a chat I closed: who, the result, and the customer's rating and comment; opens read-only
  function closedCard(summary) {
    const card = el("li", "qcard closed");
    card.dataset.handoff = String(summary.handoff_id);
    if (summary.handoff_id === state.openId) card.classList.add("selected");
    const top = el("div", "row");
    top.append(el("span", "tag", summary.group), opener(summary, customerName(summary)));
    top.append(el("span", "wait", summary.disposition || "已结束"));
    card.append(top);
    card.append(el("p", "rating-line", summary.rating ? `客户评价 ${stars(summary.rating)}` : "客户未评价"));
    if (summary.comment) card.append(el("p", "last", `“${summary.comment}”`));
    card.addEventListener("click", () => openChat(summary.handoff_id));
    return card;
  }

  // the card's keyboard way in: a button named by what it shows (the whole card opens the chat on a click)
  function opener(summary, text) {
    const button = el("button", "who opener", text);
    button.type = "button";
    button.title = `打开会话 #${summary.handoff_id}`;
    button.addEventListener("click", (event) => { event.stopPropagation(); openChat(summary.handoff_id); });
    return button;
  }

  function tickWaits() {
    const elapsed = (Date.now() - state.fetchedAt) / 1000;
    for (const card of document.querySelectorAll("#waiting-list .qcard, #mine-list .qcard")) {
      const seconds = Number(card.dataset.wait) + elapsed;
      const wait = card.querySelector(".wait");
      if (!wait) continue;
      wait.textContent = card.closest("#waiting-list") ? `等待 ${duration(seconds)}` : duration(seconds);
      wait.classList.toggle("long", card.closest("#waiting-list") !== null && seconds > 120);
    }
  }
  setInterval(tickWaits, 1000);

  async function acceptChat(handoffId, button) {
    button.disabled = true;
    try {
      const context = await api("POST", `/api/agent/handoffs/${handoffId}/accept`);
      await refreshQueue();
      showChat(handoffId, context);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) toast(e.message || "这个会话已被其他坐席接起。");
      else failed(e);
      refreshQueue();
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ the open chat

  async function openChat(handoffId) {
    state.unread.delete(handoffId);
    try {
      const context = await api("GET", `/api/agent/handoffs/${handoffId}/context`);
      showChat(handoffId, context);
    } catch (e) { failed(e); }
  }

  function showChat(handoffId, context) {
    const switching = state.openId !== handoffId;
    state.openId = handoffId;
    state.context = context;
    state.unread.delete(handoffId);
    renderQueue();
    $("chat-placeholder").hidden = true;
    $("chat-pane").hidden = false;
    $("context-empty").hidden = true;
    $("context-pane").hidden = false;

    const h = context.handoff || {};
    $("chat-title").textContent = `${customerName(context)} · ${h.group || ""}`;
    $("chat-sub").textContent = `会话 #${handoffId} · ${channelName(context.channel)} · 转人工原因：${context.reason || ""}`;
    $("chat-transfer").textContent = transferText(context.transfer);
    $("chat-transfer").hidden = !context.transfer;
    const ended = !context.mine;
    $("chat-ended").hidden = !ended;
    $("chat-ended").textContent = ended ? endedText(context) : "";
    $("composer").hidden = ended;
    $("transfer-open").hidden = ended;
    $("close-open").hidden = ended;
    renderTranscript($("transcript"), context.transcript || []);
    renderContext(context);
    if (switching && !ended) {
      $("reply").value = "";
      $("reply").focus();
    }
  }

  function endedText(context) {
    const h = context.handoff || {};
    const state_ = h.status === "closed" ? `会话已结束${context.disposition ? `（${context.disposition}）` : ""}`
      : "这个会话不在您的接待列表中，仅可查看";
    if (!context.rating) return `${state_} · 客户未评价`;
    return `${state_} · 客户评价 ${stars(context.rating)}${context.comment ? ` · “${context.comment}”` : ""}`;
  }

  function closeChat() {
    state.openId = null;
    state.context = null;
    $("chat-pane").hidden = true;
    $("chat-placeholder").hidden = false;
    $("context-pane").hidden = true;
    $("context-empty").hidden = false;
    renderQueue();
  }

  function renderTranscript(list, items) {
    list.replaceChildren(...items.map(entry));
    list.scrollTop = list.scrollHeight;
  }

  const ROLE_LABEL = { user: "客户", bot: "智能客服", agent: "人工坐席", note: "内部备注（仅坐席可见）", system: "系统" };

  function entry(item) {
    const role = ROLE_LABEL[item.role] ? item.role : "system";
    const row = el("div", `entry ${role}`);  // the transcript is a role=log, not a list
    const time = parseTime(item.timestamp);
    if (role !== "system") {
      const meta = el("div", "meta");
      const who = item.role === "user" ? customerName(state.context)
        : (role === "agent" && item.author ? `${ROLE_LABEL[role]} ${item.author}` : ROLE_LABEL[role]);
      meta.append(el("span", "", who));
      meta.append(document.createTextNode(" "));
      // a quick-reply button the customer clicked arrives as its payload, e.g. /request_human
      if (role === "user" && /^\/[A-Za-z_]+/.test(item.text || "")) meta.append(el("span", "payload-tag", "快捷按钮"));
      const stamp = el("time", "", clock.format(time));
      stamp.dateTime = time.toISOString();
      meta.append(stamp);
      row.append(meta);
    }
    const bubble = el("div", "bubble", role === "system" ? `${item.text} · ${clock.format(time)}` : item.text);
    if (item.attachment) bubble.append(attachmentView(item.attachment));
    row.append(bubble);
    if (role === "agent" && item.delivery) row.append(deliveryView(item));
    if (role === "user" && (item.intent || (item.entities || []).length)) {
      const nlu = el("div", "nlu");
      if (item.intent && item.intent.name) {
        const confidence = typeof item.intent.confidence === "number" ? ` ${item.intent.confidence.toFixed(2)}` : "";
        const intent = el("span", `intent${item.intent.name === "nlu_fallback" ? " fallback" : ""}`,
                          `意图 ${item.intent.name}${confidence}`);
        intent.title = "机器人识别的意图与置信度";
        nlu.append(intent);
      }
      for (const e of item.entities || []) nlu.append(el("span", "entity", `${e.entity}=${e.value}`));
      row.append(nlu);
    }
    return row;
  }

  // an undelivered reply: why, and what the agent can do (send it again, or have the customer called back)
  function deliveryView(item) {
    const d = item.delivery;
    const box = el("div", `delivery ${d.delivered ? "ok" : "failed"}`);
    if (d.delivered) {
      box.append(el("span", "", "重试后已送达"));
      return box;
    }
    box.append(el("span", "why", `未送达（${d.reason || "原因未知"}）`));
    const mine = Boolean(state.context && state.context.mine);  // not in a supervisor's read-only view
    if (d.callback_handoff_id) {
      box.append(el("span", "", `已转回电工单 #${d.callback_handoff_id}`));
    } else if (mine && item.seq !== undefined && state.openId !== null) {
      const retry = el("button", "", "重试");
      retry.type = "button";
      retry.setAttribute("aria-label", "重试发送这条消息");
      retry.addEventListener("click", () => retryReply(item.seq, retry));
      const ticket = el("button", "", "转回电工单");
      ticket.type = "button";
      ticket.addEventListener("click", () => callbackReply(item.seq, ticket));
      box.append(retry, ticket);
    }
    return box;
  }

  async function retryReply(seq, button) {
    const id = state.openId;
    button.disabled = true;
    try {
      const result = await api("POST", `/api/agent/handoffs/${id}/messages/${seq}/retry`);
      toast(result.delivered ? (result.note || "已重新发送，客户已收到") : `仍未送达：${result.reason || "原因未知"}`);
    } catch (e) { failed(e); }
    if (state.openId === id) await reloadOpenChat();
  }

  async function callbackReply(seq, button) {
    const id = state.openId;
    button.disabled = true;
    try {
      const result = await api("POST", `/api/agent/handoffs/${id}/messages/${seq}/callback`);
      toast(`已转回电工单 #${result.ticket_id}，主管视图“待回电工单”可见`);
    } catch (e) { failed(e); }
    if (state.openId === id) await reloadOpenChat();
  }

  async function reloadOpenChat() {
    const id = state.openId;
    try {
      const context = await api("GET", `/api/agent/handoffs/${id}/context`);
      if (state.openId === id) showChat(id, context);
    } catch (e) { failed(e); }
  }

  // an image or a file the customer sent: fetched with the session's token (never a token in a URL)
  function attachmentView(attachment) {
    const box = el("div", "attachment");
    const path = `/api/agent/attachments/${encodeURIComponent(attachment.id)}`;
    const size = attachment.size ? ` · ${Math.max(1, Math.round(attachment.size / 1024))}KB` : "";
    const load = async () => {
      const response = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
      if (!response.ok) throw new Error(String(response.status));
      return URL.createObjectURL(await response.blob());
    };
    if (attachment.kind === "image") {
      const img = el("img");
      img.alt = attachment.filename || "客户发送的图片";
      box.append(img);
      load().then((url) => { img.src = url; })
        .catch(() => { box.replaceChildren(el("span", "attachment-error", "图片无法加载")); });
    } else {
      const link = el("a", "attachment-file", `📎 ${attachment.filename || "附件"}${size}`);
      link.href = "#";
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        try {
          const url = await load();
          const save = el("a");
          save.href = url;
          save.download = attachment.filename || "附件";
          save.click();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
        } catch { toast("附件无法下载，请稍后重试。"); }
      });
      box.append(link);
    }
    return box;
  }

  function appendEntry(item) {
    const list = $("transcript");
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    const node = entry(item);
    list.append(node);
    if (nearBottom || item.role !== "user") list.scrollTop = list.scrollHeight;
    return node;
  }

  function loadCanned() {
    api("GET", "/api/agent/canned").then((list) => { state.canned = list || []; renderCannedHint(); }).catch(failed);
  }
  document.addEventListener("agent-library:canned-changed", loadCanned);  // managed in the 快捷回复 tab

  function renderContext(context) {
    const customer = context.customer;
    $("ctx-name").textContent = customer ? (customer.name || customer.id) : "未登录访客";
    $("ctx-tier").textContent = customer && customer.tier ? customer.tier : "—";
    const verified = el("span", `badge ${customer && customer.verified ? "ok" : "no"}`,
                        customer && customer.verified ? "已核身" : "未核身");
    $("ctx-verified").replaceChildren(verified);
    $("ctx-channel").textContent = channelName(context.channel) || "—";
    $("ctx-linked").textContent = (context.linked_channels || [])
      .map((l) => l.text || channelName(l.channel)).join("；") || "—";
    $("ctx-transfer-section").hidden = !context.transfer;
    $("ctx-transfer").textContent = transferText(context.transfer);
    $("ctx-reason").textContent = context.reason || "—";
    $("ctx-summary").textContent = context.summary || "—";
    const conversationId = context.handoff && context.handoff.conversation_id;
    if (conversationId && window.AgentLibrary) {
      window.AgentLibrary.labelEditor(conversationId, $("ctx-labels")).catch(failed);
    }
    $("ctx-form").textContent = context.active_form || "无";
    const slots = Object.entries(context.slots || {});
    $("ctx-slots").replaceChildren(...slots.flatMap(([k, v]) => [el("dt", "", k), el("dd", "", v)]));
    $("ctx-slots-empty").hidden = slots.length > 0;
    const earlier = context.earlier_conversations || [];
    $("ctx-earlier").replaceChildren(...earlier.map(earlierConversation));
    $("ctx-earlier-empty").hidden = earlier.length > 0;
    renderSuggestions(context.suggestions || []);
  }

  function earlierConversation(c) {
    const item = el("li", "");
    const details = el("details", "earlier");
    details.append(el("summary", "",
      `${dayClock.format(parseTime(c.started_at))} · ${channelName(c.channel)}：${c.summary}`));
    for (const line of c.transcript || []) {
      details.append(el("p", `earlier-line ${line.role}`, `${ROLE_NAME[line.role] || ""}：${line.text}`));
    }
    item.append(details);
    return item;
  }

  function renderSuggestions(items) {
    $("kb-list").replaceChildren(...items.map((s) => {
      const item = el("li", "kb-item");
      const q = el("div", "q");
      q.append(el("span", "", s.question));
      if (typeof s.confidence === "number") q.append(el("span", "conf", `匹配度 ${Math.round(s.confidence * 100)}%`));
      item.append(q);
      item.append(el("p", "a", (s.answer || "").replace(/\*\*/g, "").trim()));
      const insert = el("button", "", "插入");
      insert.type = "button";
      insert.setAttribute("aria-label", `插入答案：${s.question}`);
      insert.addEventListener("click", () => {
        const reply = $("reply");
        const answer = (s.answer || "").trim();
        reply.value = reply.value.trim() ? `${reply.value.trimEnd()}\n${answer}` : answer;
        $("note-mode").checked = false;
        syncNoteMode();
        reply.focus();
      });
      item.append(insert);
      return item;
    }));
    $("kb-empty").hidden = items.length > 0;
  }

  $("kb-search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = $("kb-query").value.trim();
    if (!q) return;
    try {
      renderSuggestions(await api("GET", `/api/agent/knowledge?q=${encodeURIComponent(q)}`) || []);
      if (!$("kb-list").children.length) $("kb-empty").textContent = "没有找到相关知识";
    } catch (e) { failed(e); }
  });

  // refresh the open chat from the server (after a customer message: shows the bot's parse of it)
  function refreshOpenChatSoon() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(async () => {
      const id = state.openId;
      if (id === null) return;
      try {
        const context = await api("GET", `/api/agent/handoffs/${id}/context`);
        if (state.openId !== id) return;
        const list = $("transcript");
        const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
        state.context = context;
        renderTranscript(list, context.transcript || []);
        if (!atBottom) list.scrollTop = list.scrollHeight;
        renderContext(context);
      } catch (e) { failed(e); }
    }, 1200);
  }

  // ------------------------------------------------------------------ composer

  function syncNoteMode() {
    const note = $("note-mode").checked;
    $("composer").classList.toggle("note-mode", note);
    $("send").textContent = note ? "添加备注" : "发送";
    $("reply").placeholder = note ? "内部备注仅坐席可见，不会发送给客户" : "输入回复，Enter 发送，Shift+Enter 换行；输入 / 使用快捷短语";
  }
  $("note-mode").addEventListener("change", syncNoteMode);

  $("reply").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "Escape") {
      $("canned-menu").hidden = true;
    }
  });
  $("reply").addEventListener("input", renderCannedMenu);

  function renderCannedHint() {
    $("canned-hint").textContent = state.canned.length ? `快捷短语：${state.canned.map((c) => c.code).join("  ")}` : "";
    $("canned-hint").title = state.canned.map((c) => `${c.code} ${c.text}`).join("\n");
  }

  function renderCannedMenu() {
    const value = $("reply").value;
    const menu = $("canned-menu");
    const matches = value.startsWith("/") && !value.includes(" ") ? state.canned.filter((c) => c.code.startsWith(value)) : [];
    menu.hidden = matches.length === 0;
    menu.replaceChildren(...matches.map((c) => {
      const li = el("li");
      const button = el("button");
      button.type = "button";
      button.append(el("b", "", c.code), document.createTextNode(c.text));
      button.addEventListener("click", () => {
        $("reply").value = c.text;
        menu.hidden = true;
        $("reply").focus();
      });
      li.append(button);
      return li;
    }));
  }

  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const reply = $("reply");
    const text = reply.value.trim();
    const id = state.openId;
    if (!text || id === null) return;
    const note = $("note-mode").checked;
    $("canned-menu").hidden = true;
    $("send").disabled = true;
    try {
      if (note) {
        await api("POST", `/api/agent/handoffs/${id}/notes`, { text });
        if (state.openId === id) appendEntry({ role: "note", text, timestamp: new Date().toISOString() });
      } else {
        const sent = await api("POST", `/api/agent/handoffs/${id}/messages`, { text });
        const delivery = sent.delivered ? null : { delivered: false, reason: sent.reason };
        if (state.openId === id) appendEntry({ role: "agent", text: sent.text, timestamp: sent.timestamp, seq: sent.seq, delivery,
                                             author: state.me && state.me.display_name });
        if (!sent.delivered) toast(sent.warning || `消息未送达：${sent.reason || ""}`, 6000);
      }
      if (state.openId === id) reply.value = "";
    } catch (e) {
      failed(e);
      if (e instanceof ApiError && e.status === 409) refreshQueue();
    } finally {
      $("send").disabled = false;
      reply.focus();
    }
  });

  // ------------------------------------------------------------------ transfer and close

  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.querySelector("[data-cancel]").addEventListener("click", () => dialog.close());
  }

  // the dialog offers every skill group and the colleagues online now, with their load (a full one is shown, not
  // choosable); the value says which: "group:理财" or "agent:7"
  $("transfer-open").addEventListener("click", async () => {
    let colleagues = [];
    try {
      if (!state.groups.length) state.groups = await api("GET", "/api/agent/groups");
      colleagues = await api("GET", "/api/agent/colleagues");
    } catch (e) { failed(e); return; }
    const select = $("transfer-target");
    const current = state.context && state.context.handoff ? state.context.handoff.group : null;
    const groups = el("optgroup");
    groups.label = "技能组";
    groups.append(...state.groups.map((g) => {
      const option = el("option", "", g === current ? `${g}（当前）` : g);
      option.value = `group:${g}`;
      return option;
    }));
    const people = el("optgroup");
    people.label = "在线同事";
    const online = colleagues.filter((c) => !c.me && c.presence === "online");
    people.append(...online.map((c) => {
      const full = c.load >= c.max_chats;
      const number = c.employee_no ? `（工号${c.employee_no}）` : "";
      const option = el("option", "", `${c.display_name}${number} · 接待中 ${c.load}/${c.max_chats}${full ? " · 已满" : ""}`);
      option.value = `agent:${c.id}`;
      option.disabled = full;
      return option;
    }));
    if (!online.length) {
      const none = el("option", "", "暂无其他在线同事");
      none.disabled = true;
      people.append(none);
    }
    select.replaceChildren(groups, people);
    const other = state.groups.find((g) => g !== current);
    if (other) select.value = `group:${other}`;
    $("transfer-note").value = "";
    $("transfer-error").hidden = true;
    $("transfer-dialog").showModal();
  });

  $("transfer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = state.openId;
    if (id === null) return;
    const [kind, ...rest] = $("transfer-target").value.split(":");
    const target = rest.join(":");
    const body = { note: $("transfer-note").value.trim() };
    if (kind === "agent") body.agent_id = Number(target);
    else body.group = target;
    try {
      const result = await api("POST", `/api/agent/handoffs/${id}/transfer`, body);
      $("transfer-dialog").close();
      toast(`会话 #${id} ${result.message || "已转接"}`);
      closeChat();
      refreshQueue();
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {  // refused: said in the dialog, the chat stays mine
        $("transfer-error").textContent = e.message;
        $("transfer-error").hidden = false;
      } else failed(e);
    }
  });

  $("close-open").addEventListener("click", () => {
    $("close-form").querySelector("input[value='已解决']").checked = true;
    $("close-dialog").showModal();
  });

  $("close-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = state.openId;
    if (id === null) return;
    const disposition = new FormData($("close-form")).get("disposition");
    try {
      await api("POST", `/api/agent/handoffs/${id}/close`, { disposition });
      $("close-dialog").close();
      toast(`会话 #${id} 已结束（${disposition}），已邀请客户评价`);
      state.mine = state.mine.filter((s) => s.handoff_id !== id);
      closeChat();
      refreshQueue();
    } catch (e) { failed(e); }
  });

  // ------------------------------------------------------------------ live updates

  function setLive(mode) {
    const status = $("live-status");
    status.dataset.state = mode;
    status.textContent = { live: "实时连接", polling: "连接中断，每5秒刷新", connecting: "正在连接…" }[mode];
  }

  // the session token goes in the socket's first frame, never in its URL (URLs end up in access logs)
  function connect() {
    if (!state.token || state.socket) return;
    clearTimeout(state.retryTimer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${location.host}/api/agent/ws`);
    } catch {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "auth", token: state.token }));
    });
    socket.addEventListener("message", (event) => {
      const frame = readJson(event.data);
      if (!frame) return;
      if (frame.type === "welcome") onWelcome(socket);
      else onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      clearInterval(state.pingTimer);
      if (!state.token) return;
      if (event.code === 4401) {
        signedOut("登录已失效，请重新登录。");
        return;
      }
      startPolling();
      scheduleReconnect();
    });
  }

  function onWelcome(socket) {
    state.attempt = 0;
    setLive("live");
    stopPolling();
    refreshQueue();  // whatever happened while the socket was down
    clearInterval(state.pingTimer);
    // each keep-alive also lets the server re-check the session (logged out elsewhere, expired, disabled)
    state.pingTimer = setInterval(() => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
    }, 25000);
  }

  function scheduleReconnect() {
    const ceiling = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** state.attempt);
    state.attempt += 1;
    setLive("polling");
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(connect, ceiling / 2 + Math.random() * ceiling / 2);
  }

  function startPolling() {
    if (state.pollTimer) return;
    state.pollTimer = setInterval(() => {
      refreshQueue();
      if (state.view === "supervisor") refreshOverview();
    }, POLL_MS);
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function stopLive() {
    clearTimeout(state.retryTimer);
    clearInterval(state.pingTimer);
    stopPolling();
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close();
  }

  function onFrame(frame) {
    if (frame.type === "queue") {
      refreshQueue();
      if (state.view === "supervisor") refreshOverview();
    } else if (frame.type === "message") {
      const id = frame.handoff_id;
      for (const s of state.mine) if (s.handoff_id === id) s.last_message = frame.text;
      if (id === state.openId) {
        renderQueue();
        appendEntry({ role: "user", text: frame.text, timestamp: frame.timestamp, attachment: frame.attachment });
        refreshOpenChatSoon();
      } else {
        state.unread.add(id);
        if (!state.mine.some((s) => s.handoff_id === id)) refreshQueue();
        else renderQueue();
      }
      if (state.watchId === id) watch(id);
    } else if (frame.type === "ops_alert") {
      showOpsAlert(frame.alert || {});
    }
  }

  /** A service-level alert (bot/ops/alerts.py), pushed to supervisors and admins once when it starts: a banner
      under the top bar with a link to the dashboard, until dismissed. */
  function showOpsAlert(alert) {
    const me = state.me || {};
    if (!(me.role === "supervisor" || me.role === "admin")) return;
    let box = $("ops-alerts");
    if (!box) {
      box = el("div", "ops-alerts");
      box.id = "ops-alerts";
      box.setAttribute("role", "alert");
      $("toast").after(box);
    }
    const key = `${alert.kind || ""}:${alert.group || ""}`;
    for (const old of box.querySelectorAll(".ops-alert")) if (old.dataset.key === key) old.remove();
    const item = el("p", "ops-alert");
    item.dataset.key = key;
    const title = alert.kind === "service_level" ? "服务水平告警" : "排队超时告警";
    const link = el("a", null, "查看运营看板");
    link.href = "/ops";
    link.target = "_blank";
    link.rel = "noopener";
    const close = el("button", "ghost small", "知道了");
    close.type = "button";
    close.addEventListener("click", () => item.remove());
    item.append(el("strong", null, title), el("span", "ops-alert-text", alert.message || ""), link, close);
    box.append(item);
  }

  window.addEventListener("online", () => { if (!state.socket && state.token) connect(); });

  // ------------------------------------------------------------------ supervisor view

  function showView(view) {
    state.view = view;
    $("desk-view").hidden = view !== "desk";
    $("supervisor-view").hidden = view !== "supervisor";
    $("tab-desk").setAttribute("aria-pressed", String(view === "desk"));
    $("tab-supervisor").setAttribute("aria-pressed", String(view === "supervisor"));
    clearInterval(showView.timer);
    if (view === "supervisor") {
      refreshOverview();
      showView.timer = setInterval(refreshOverview, POLL_MS);  // waiting times and loads move on their own
    }
  }
  $("tab-desk").addEventListener("click", () => showView("desk"));
  $("tab-supervisor").addEventListener("click", () => showView("supervisor"));

  async function refreshOverview() {
    if (!state.token || state.view !== "supervisor") return;
    try {
      state.overview = await api("GET", "/api/supervisor/overview");
      renderOverview();
    } catch (e) { failed(e); }
  }

  function cell(text, className) {
    return el("td", className, text);
  }

  function renderOverview() {
    const o = state.overview || { groups: [], agents: [], live: [] };
    $("sup-groups").tBodies[0].replaceChildren(...o.groups.map((g) => {
      const row = el("tr");
      row.append(cell(g.name), cell(String(g.waiting), `num${g.waiting ? " hot" : ""}`),
                 cell(g.waiting ? duration(g.longest_wait_seconds) : "—", "num"));
      return row;
    }));
    const names = new Map(o.agents.map((a) => [a.id, a.display_name]));
    $("sup-agents").tBodies[0].replaceChildren(...o.agents.map((a) => {
      const row = el("tr");
      const presence = el("td");
      presence.append(el("i", `dot ${a.presence}`), document.createTextNode(` ${PRESENCE[a.presence] || a.presence}`));
      row.append(cell(a.display_name), presence, cell(`${a.load} / ${a.max_chats}`, `num${a.load >= a.max_chats ? " hot" : ""}`));
      return row;
    }));
    $("sup-live").tBodies[0].replaceChildren(...o.live.map((s) => {
      const row = el("tr");
      row.dataset.handoff = String(s.handoff_id);
      if (s.handoff_id === state.watchId) row.classList.add("selected");
      row.append(cell(`#${s.handoff_id}`), cell(s.group), cell(customerName(s)),
                 cell(names.get(s.agent_id) || "—"), cell(s.detail || s.reason || ""), cell(duration(s.waiting_seconds), "num"));
      const action = el("td");
      const box = el("div", "reassign");
      const select = el("select");
      select.setAttribute("aria-label", `重新分配会话 #${s.handoff_id} 给`);
      for (const a of o.agents) {
        const option = el("option", "", `${a.display_name}（${PRESENCE[a.presence] || a.presence}）`);
        option.value = String(a.id);
        if (a.id === s.agent_id) option.selected = true;
        select.append(option);
      }
      const button = el("button", "", "重新分配");
      button.type = "button";
      button.addEventListener("click", async (event) => {
        event.stopPropagation();
        try {
          await api("POST", `/api/supervisor/handoffs/${s.handoff_id}/reassign`, { agent_id: Number(select.value) });
          toast(`会话 #${s.handoff_id} 已重新分配给${names.get(Number(select.value)) || "坐席"}`);
          refreshOverview();
        } catch (e) { failed(e); }
      });
      select.addEventListener("click", (event) => event.stopPropagation());
      box.append(select, button);
      action.append(box);
      row.append(action);
      row.addEventListener("click", () => watch(s.handoff_id));
      return row;
    }));
    $("sup-live-empty").hidden = o.live.length > 0;
    const callbacks = o.callbacks || [];
    $("sup-callbacks").tBodies[0].replaceChildren(...callbacks.map((s) => {
      const row = el("tr");
      row.append(cell(`#${s.handoff_id}`), cell(s.group), cell(customerName(s)), cell(channelName(s.channel)),
                 cell(s.detail || ""), cell(s.created_at ? dayClock.format(parseTime(s.created_at)) : "—", "num"));
      return row;
    }));
    $("sup-callbacks-empty").hidden = callbacks.length > 0;
    const rated = o.rated || [];
    $("sup-rated").tBodies[0].replaceChildren(...rated.map((s) => {
      const row = el("tr");
      row.append(cell(`#${s.handoff_id}`), cell(s.group), cell(customerName(s)), cell(s.agent || "—"),
                 cell(stars(s.rating), "stars"), cell(s.comment || "—", "comment"));
      return row;
    }));
    $("sup-rated-empty").hidden = rated.length > 0;
  }

  async function watch(handoffId) {
    state.watchId = handoffId;
    try {
      const context = await api("GET", `/api/agent/handoffs/${handoffId}/context`);
      if (state.watchId !== handoffId) return;
      $("sup-watch").hidden = false;
      $("sup-watch-sub").textContent = `会话 #${handoffId} · ${customerName(context)} · ${context.handoff.group} · ${context.summary || ""}`;
      const saved = state.context;
      state.context = context;  // entry() names the customer from it
      renderTranscript($("sup-transcript"), context.transcript || []);
      state.context = saved;
      for (const row of $("sup-live").tBodies[0].rows) row.classList.toggle("selected", row.dataset.handoff === String(handoffId));
    } catch (e) { failed(e); }
  }

  // ------------------------------------------------------------------ boot

  if (state.token && state.me) start();
  else $("login-username").focus();
})();
