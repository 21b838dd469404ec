/* 示例银行 坐席工作台 — the desk's library: 历史会话 (search past conversations, read one, label it) and
   快捷回复 (manage canned replies). Plain ES2020, no framework. Uses the console's session token (agent.js keeps
   it in sessionStorage) for /api/agent/conversations, /api/agent/labels and /api/agent/canned-replies.
   Everything is rendered with textContent; customer text arrives masked.

   For the chat view: AgentLibrary.labelEditor(conversationId, container) puts the conversation's labels, with
   add and remove, into `container`. After any change to canned replies the document gets the event
   "agent-library:canned-changed", so the reply box's picker can reload /api/agent/canned. */
(() => {
  "use strict";

  const { $, el, parseTime, formats: { clock }, ApiError, errorText, showError } = BankConsole;
  const stored = BankConsole.storedSession("bankbot.agent");  // agent.js's login
  const ROLE_LABEL = { user: "客户", bot: "智能客服", agent: "人工坐席", note: "内部备注（仅坐席可见）", system: "系统" };
  const TABS = { library: "library-view", canned: "canned-view" };
  const CONSOLE_VIEWS = ["desk-view", "supervisor-view"];

  const state = {
    view: null,            // "library" | "canned" | null (a view of agent.js)
    page: 1,
    total: 0,
    pageSize: 20,
    query: {},
    openId: null,
    labelChoices: { suggested: [], in_use: [] },
    replies: [],
    scopes: [],
    editing: null,         // id of the canned reply in the form
  };

  // ------------------------------------------------------------------ helpers (the shared ones: console.js)

  const formatDay = (stamp) => BankConsole.formatTime(stamp, "dateTime");
  const api = BankConsole.apiClient({ token: stored.token, onUnauthorized: () => "登录已失效，请刷新页面后重新登录。" });

  // ------------------------------------------------------------------ tabs

  function showMine(view) {
    // let agent.js leave its own views first (it stops the supervisor's refresh when the desk is shown)
    if (state.view === null) $("tab-desk").click();
    state.view = view;
    for (const id of CONSOLE_VIEWS) $(id).hidden = true;
    for (const [name, id] of Object.entries(TABS)) $(id).hidden = name !== view;
    for (const tab of document.querySelectorAll(".tabs .tab")) {
      tab.setAttribute("aria-pressed", String(tab.id === `tab-${view}`));
    }
    if (view === "library") enterLibrary();
    if (view === "canned") loadReplies();
  }

  function leaveMine() {
    if (state.view === null) return;
    state.view = null;
    for (const id of Object.values(TABS)) $(id).hidden = true;
    $("tab-library").setAttribute("aria-pressed", "false");
    $("tab-canned").setAttribute("aria-pressed", "false");
  }

  $("tab-library").addEventListener("click", () => showMine("library"));
  $("tab-canned").addEventListener("click", () => showMine("canned"));
  // whatever shows one of agent.js's views (its tabs, a new chat, logging out) takes the library away
  const watcher = new MutationObserver(() => {
    if (state.view !== null && CONSOLE_VIEWS.some((id) => !$(id).hidden)) leaveMine();
  });
  for (const id of CONSOLE_VIEWS) watcher.observe($(id), { attributes: true, attributeFilter: ["hidden"] });
  watcher.observe($("console-view"), { attributes: true, attributeFilter: ["hidden"] });

  // ------------------------------------------------------------------ 历史会话: search

  let entered = false;
  function enterLibrary() {
    loadLabelChoices();
    if (!entered) {
      entered = true;
      search(1);
    }
  }

  async function loadLabelChoices() {
    try {
      state.labelChoices = await api("GET", "/api/agent/labels");
    } catch { return; }
    const names = [...new Set([...state.labelChoices.suggested, ...state.labelChoices.in_use])];
    $("lib-label-choices").replaceChildren(...names.map((name) => {
      const option = el("option");
      option.value = name;
      return option;
    }));
  }

  function formQuery() {
    const query = {};
    for (const input of $("lib-form").querySelectorAll("input[name]")) {
      const value = input.value.trim();
      if (value) query[input.name] = value;
    }
    return query;
  }

  $("lib-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const tail = $("lib-tail").value.trim();
    if (tail && !/^\d{4}$/.test(tail)) {
      showError("lib-error", new ApiError(422, "请输入手机号或卡号的后四位数字。"));
      $("lib-tail").focus();
      return;
    }
    state.query = formQuery();
    search(1);
  });
  $("lib-form").addEventListener("reset", () => {
    setTimeout(() => { state.query = {}; search(1); }, 0);  // after the fields are cleared
  });
  $("lib-prev").addEventListener("click", () => search(state.page - 1));
  $("lib-next").addEventListener("click", () => search(state.page + 1));

  async function search(page) {
    const params = new URLSearchParams({ ...state.query, page: String(page) });
    showError("lib-error", null);
    $("lib-count").textContent = "正在查找…";
    try {
      const result = await api("GET", `/api/agent/conversations?${params}`);
      state.page = result.page;
      state.total = result.total;
      state.pageSize = result.page_size;
      renderResults(result.items);
    } catch (e) {
      $("lib-count").textContent = "";
      showError("lib-error", e);
    }
  }

  function renderResults(items) {
    const filtered = Object.keys(state.query).length > 0;
    $("lib-count").textContent = state.total ? `${filtered ? "找到" : "共"} ${state.total} 条会话` :
      (filtered ? "没有符合条件的会话" : "暂无可查看的历史会话");
    $("lib-results").replaceChildren(...items.map(resultCard));
    const pages = Math.max(1, Math.ceil(state.total / state.pageSize));
    $("lib-pager").hidden = pages <= 1;
    $("lib-page").textContent = `第 ${state.page} / ${pages} 页`;
    $("lib-prev").disabled = state.page <= 1;
    $("lib-next").disabled = state.page >= pages;
  }

  /** How the conversation went, in one line: "借记卡与账户 · 小王 · 已结束 · 评分 5", or "智能客服独立解答". */
  function outcome(item) {
    const h = item.handoff;
    if (!h) return "智能客服独立解答，未转人工";
    return [h.group, h.agent, h.status_label, h.rating ? `评分 ${h.rating}` : null].filter(Boolean).join(" · ");
  }

  function customerText(customer) {
    if (!customer) return "访客（未登录）";
    return customer.name ? `${customer.name}（${customer.id}）` : `客户号 ${customer.id}`;
  }

  function resultCard(item) {
    const li = el("li");
    const button = el("button", "lib-result");
    button.type = "button";
    button.dataset.id = item.conversation_id;
    if (item.conversation_id === state.openId) button.setAttribute("aria-current", "true");
    const top = el("span", "row");
    top.append(el("span", "tag", item.channel_label), el("span", "who", customerText(item.customer)),
               el("time", "when", formatDay(item.started_at)));
    const summary = el("span", "line", item.summary || "（无客户消息）");
    button.append(top, summary);
    button.append(el("span", "line muted", outcome(item)));
    if (item.labels.length) {
      const chips = el("span", "chips");
      chips.append(...item.labels.map((label) => el("span", "chip", label)));
      button.append(chips);
    }
    button.addEventListener("click", () => openConversation(item.conversation_id));
    li.append(button);
    return li;
  }

  // ------------------------------------------------------------------ 历史会话: one conversation

  async function openConversation(id) {
    state.openId = id;
    for (const card of $("lib-results").querySelectorAll(".lib-result")) {
      if (card.dataset.id === id) card.setAttribute("aria-current", "true");
      else card.removeAttribute("aria-current");
    }
    try {
      const detail = await api("GET", `/api/agent/conversations/${encodeURIComponent(id)}`);
      if (state.openId !== id) return;
      renderDetail(detail);
      if (window.matchMedia("(max-width: 760px)").matches) $("lib-detail").scrollIntoView({ block: "start" });
    } catch (e) {
      showError("lib-error", e);
    }
  }

  function renderDetail(detail) {
    $("lib-detail-empty").hidden = true;
    $("lib-detail-pane").hidden = false;
    $("lib-detail-title").textContent = `${customerText(detail.customer)} · ${detail.channel_label}`;
    $("lib-detail-sub").textContent = `开始于 ${formatDay(detail.started_at)} · ${outcome(detail)}`;
    renderLabels($("lib-labels"), detail.conversation_id, detail.labels);
    $("lib-handoffs").replaceChildren(...detail.handoffs.map(handoffLine));
    $("lib-transcript").replaceChildren(...detail.transcript.map(entry));
  }

  function handoffLine(h) {
    const li = el("li");
    const parts = [`转人工 · ${h.group}`, h.reason, h.agent ? `坐席 ${h.agent}` : null, h.status_label,
                   h.disposition ? `处理结果：${h.disposition}` : null].filter(Boolean);
    li.append(...parts.map((part) => el("span", "", part)));
    if (h.rating) li.append(el("span", "rating", `客户评分 ${h.rating} 分`));
    if (h.comment) li.append(el("q", "comment", h.comment));
    return li;
  }

  function entry(item) {
    const role = ROLE_LABEL[item.role] ? item.role : "system";
    const row = el("li", `entry ${role}`);
    const time = parseTime(item.timestamp);
    if (role !== "system") {
      const meta = el("div", "meta");
      meta.append(document.createTextNode(role === "agent" && item.author ? `${ROLE_LABEL.agent} ${item.author}` : ROLE_LABEL[role]));
      if (time) meta.append(document.createTextNode(" "), el("time", "", clock.format(time)));
      row.append(meta);
    }
    row.append(el("div", "bubble", item.text));
    return row;
  }

  // ------------------------------------------------------------------ labels

  function renderLabels(container, conversationId, labels) {
    container.replaceChildren();
    container.classList.add("lib-labels");
    const chips = el("ul", "chips");
    chips.setAttribute("aria-label", "会话标签");
    for (const label of labels) {
      const chip = el("li", "chip");
      chip.append(el("span", "", label));
      const remove = el("button", "chip-remove", "×");
      remove.type = "button";
      remove.setAttribute("aria-label", `移除标签 ${label}`);
      remove.addEventListener("click", () => changeLabel(container, conversationId, label, "DELETE"));
      chip.append(remove);
      chips.append(chip);
    }
    if (!labels.length) chips.append(el("li", "empty", "暂无标签"));
    const form = el("form", "label-add");
    const input = el("input");
    input.maxLength = 16;
    input.setAttribute("list", "lib-label-choices");
    input.setAttribute("aria-label", "添加标签");
    input.placeholder = "添加标签";
    const add = el("button", "", "添加");
    add.type = "submit";
    form.append(input, add);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const label = input.value.trim();
      if (label) changeLabel(container, conversationId, label, "PUT");
    });
    const quick = el("div", "label-quick");
    for (const label of state.labelChoices.suggested.filter((l) => !labels.includes(l))) {
      const button = el("button", "", `+ ${label}`);
      button.type = "button";
      button.setAttribute("aria-label", `添加标签 ${label}`);
      button.addEventListener("click", () => changeLabel(container, conversationId, label, "PUT"));
      quick.append(button);
    }
    const error = el("p", "form-error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    container.append(chips, form, quick, error);
  }

  async function changeLabel(container, conversationId, label, method) {
    try {
      const result = await api(method, `/api/agent/conversations/${encodeURIComponent(conversationId)}/labels/${encodeURIComponent(label)}`);
      renderLabels(container, conversationId, result.labels);
      for (const card of $("lib-results").querySelectorAll(`.lib-result[data-id="${CSS.escape(conversationId)}"]`)) {
        let chips = card.querySelector(".chips");
        if (!chips) { chips = el("span", "chips"); card.append(chips); }
        chips.replaceChildren(...result.labels.map((l) => el("span", "chip", l)));
      }
      if (method === "PUT") loadLabelChoices();
    } catch (e) {
      const error = container.querySelector(".form-error");
      if (error) {
        error.textContent = errorText(e);
        error.hidden = false;
      }
    }
  }

  /** For the chat view: the conversation's labels with add and remove, in `container`. */
  async function labelEditor(conversationId, container) {
    if (!state.labelChoices.suggested.length) await loadLabelChoices();
    const detail = await api("GET", `/api/agent/conversations/${encodeURIComponent(conversationId)}`);
    renderLabels(container, conversationId, detail.labels);
  }

  // ------------------------------------------------------------------ 快捷回复

  async function loadReplies() {
    showError("canned-error", null);
    try {
      const result = await api("GET", "/api/agent/canned-replies");
      state.replies = result.replies;
      state.scopes = result.scopes;
      renderScopes();
      renderReplies();
    } catch (e) { showError("canned-error", e); }
  }

  function renderScopes() {
    const select = $("canned-scope");
    const current = select.value;
    select.replaceChildren(...state.scopes.map((s) => {
      const option = el("option", "", s.label);
      option.value = s.scope;
      return option;
    }));
    if (state.scopes.some((s) => s.scope === current)) select.value = current;
    const group = state.scopes.find((s) => s.scope === "group");
    const groupSelect = $("canned-group");
    const chosen = groupSelect.value;
    groupSelect.replaceChildren(...(group ? group.groups : []).map((name) => {
      const option = el("option", "", name);
      option.value = name;
      return option;
    }));
    if (chosen) groupSelect.value = chosen;
    syncGroupField();
  }

  function syncGroupField() {
    $("canned-group-field").hidden = $("canned-scope").value !== "group";
  }
  $("canned-scope").addEventListener("change", syncGroupField);

  function renderReplies() {
    const list = $("canned-list");
    list.replaceChildren(...state.replies.map((reply) => {
      const li = el("li", "canned-item");
      const head = el("div", "row");
      head.append(el("b", "code", reply.code),
                  el("span", `tag scope-${reply.scope}`, reply.group ? `${reply.scope_label} · ${reply.group}` : reply.scope_label));
      if (reply.editable) {
        const actions = el("span", "actions");
        const edit = el("button", "", "编辑");
        edit.type = "button";
        edit.setAttribute("aria-label", `编辑 ${reply.code}`);
        edit.addEventListener("click", () => startEdit(reply));
        const remove = el("button", "danger", "删除");
        remove.type = "button";
        remove.setAttribute("aria-label", `删除 ${reply.code}`);
        remove.addEventListener("click", () => removeReply(reply, remove));
        actions.append(edit, remove);
        head.append(actions);
      } else {
        head.append(el("span", "actions muted", "只读"));
      }
      li.append(head, el("p", "text", reply.text));
      return li;
    }));
  }

  function startEdit(reply) {
    state.editing = reply.id;
    $("canned-form-title").textContent = `编辑快捷回复 ${reply.code}`;
    $("canned-code").value = reply.code;
    $("canned-text").value = reply.text;
    $("canned-scope").value = reply.scope;
    if (reply.group) $("canned-group").value = reply.group;
    syncGroupField();
    $("canned-cancel").hidden = false;
    showError("canned-error", null);
    $("canned-code").focus();
  }

  function endEdit() {
    state.editing = null;
    $("canned-form-title").textContent = "新增快捷回复";
    $("canned-form").reset();
    if (state.scopes.length) $("canned-scope").value = state.scopes[0].scope;
    syncGroupField();
    $("canned-cancel").hidden = true;
  }
  $("canned-cancel").addEventListener("click", () => { endEdit(); showError("canned-error", null); });

  $("canned-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = $("canned-code").value.trim();
    const text = $("canned-text").value.trim();
    if (!/^\/\S{1,31}$/.test(code)) {
      showError("canned-error", new ApiError(422, "快捷码须以 / 开头，共 2-32 个字符，不含空格，例如 /hi。"));
      return;
    }
    if (!text) {
      showError("canned-error", new ApiError(422, "请填写回复内容。"));
      return;
    }
    const scope = $("canned-scope").value;
    const body = { code, text, scope, group: scope === "group" ? $("canned-group").value : null };
    $("canned-save").disabled = true;
    try {
      if (state.editing === null) await api("POST", "/api/agent/canned-replies", body);
      else await api("PUT", `/api/agent/canned-replies/${state.editing}`, body);
      endEdit();
      showError("canned-error", null);
      await loadReplies();
      changed();
    } catch (e) {
      showError("canned-error", e);
    } finally {
      $("canned-save").disabled = false;
    }
  });

  async function removeReply(reply, button) {
    if (button.dataset.confirm !== "yes") {
      button.dataset.confirm = "yes";  // a second click confirms: no blocking dialog
      button.textContent = "确认删除";
      setTimeout(() => { button.dataset.confirm = ""; button.textContent = "删除"; }, 4000);
      return;
    }
    try {
      await api("DELETE", `/api/agent/canned-replies/${reply.id}`);
      if (state.editing === reply.id) endEdit();
      await loadReplies();
      changed();
    } catch (e) { showError("canned-error", e); }
  }

  function changed() {
    document.dispatchEvent(new CustomEvent("agent-library:canned-changed"));
  }

  window.AgentLibrary = { labelEditor, openConversation: (id) => { showMine("library"); return openConversation(id); } };
})();
