/* 示例银行 训练工作台 — the trainer's workbench at /trainer.
   Plain ES2020, no framework, no build step. Logs in with the desk's login (a trainer's or an admin's account)
   and talks to /api/trainer/*: the review inbox (审核), the training data and knowledge base (数据), the model
   versions (模型). Every piece of data is rendered with textContent, never as HTML; customer text arrives masked. */
(() => {
  "use strict";

  const { $, el, ApiError } = BankConsole;
  const stored = BankConsole.storedSession("bankbot.trainer");  // not the desk's: a trainer may have both open
  const TRAINING_ROLES = ["trainer", "admin"];
  const ROLE = { trainer: "训练师", admin: "管理员" };
  const CHANNEL = { web: "网页", app: "手机银行App", wechat: "微信", wecom: "微信客服", rest: "接口" };
  const REASON = { clarify_rejected: "拒绝澄清选项", agent_corrected: "人工纠正", low_rating: "低评分",
                   handoff_avoidable: "可避免的转人工", fallback: "未能理解", low_confidence: "低置信度回答",
                   clarified: "澄清菜单" };
  const OUTCOME = { answer: "直接回答", clarify: "澄清菜单", out_of_scope: "超出范围", handoff: "转人工",
                    fallback: "未能理解" };
  const BAND = { low: "低置信度", medium: "中置信度", high: "高置信度" };
  const MARK = { open: "待处理", fixed: "已修正", out_of_scope: "超出范围", dismissed: "已忽略" };
  const VERSION_STATUS = { training: "训练中", ready: "就绪", failed: "失败", active: "启用中", retired: "已退役" };
  const FIX_KINDS = [
    ["add_to_intent", "加入意图"], ["add_to_entry", "加为相似问题"], ["new_intent", "新建意图（含回复）"],
    ["new_entry", "新建知识条目"], ["out_of_scope", "标记为超出范围"], ["dismiss", "忽略"]];
  const DATA_KINDS = {
    intents: { label: "意图", lines: "例句（每行一条）", path: "intents" },
    synonyms: { label: "同义词", lines: "同义写法（每行一条）", path: "synonyms" },
    lookups: { label: "查找表", lines: "条目（每行一条）", path: "lookups" },
    regexes: { label: "正则", lines: "正则表达式（每行一个）", path: "regexes" },
    responses: { label: "回复" },
    entries: { label: "知识条目" },
  };
  const RESPONSE_CHANNELS = [["", "所有渠道"], ["web", "网页"], ["app", "手机银行App"], ["wechat", "微信"],
                             ["wecom", "微信客服"]];
  const ANSWER_CHANNELS = [["wechat", "微信（纯文本）"], ["web", "网页（Markdown）"], ["app", "App（Markdown）"]];
  const FINDINGS_DELAY_MS = 400;
  const POLL_MS = 1000;

  const state = {
    token: stored.token(), me: stored.me(), view: "review",
    page: 1, inbox: null, data: null, kind: "intents", selected: null, models: null, pollTimer: null,
    watching: new Set(), comparing: null,
  };

  // ------------------------------------------------------------------ helpers (the shared ones: console.js)

  function field(labelText, control) {
    const label = el("label", "field", labelText);
    label.append(control);
    return label;
  }

  function button(text, className, onClick) {
    const node = el("button", className, text);
    node.type = "button";
    if (onClick) node.addEventListener("click", onClick);
    return node;
  }

  function option(value, text, selected) {
    const node = el("option", null, text);
    node.value = value;
    node.selected = Boolean(selected);
    return node;
  }

  const when = (value) => (value ? BankConsole.formatTime(value, "dayClock", value) : "-");

  const pct = (value) => (typeof value === "number" ? `${(value * 100).toFixed(1)}%` : "-");
  const num = (value) => (typeof value === "number" ? value.toFixed(3) : "-");
  function delta(before, after) {
    if (typeof before !== "number" || typeof after !== "number") return "-";
    const change = after - before;
    return `${change >= 0 ? "+" : ""}${(change * 100).toFixed(1)}`;
  }
  const counted = (map, names) => Object.entries(map || {}).map(([k, n]) => `${names[k] || k} ${n}`).join(" · ");
  const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);

  const toast = (text, ms = 4000) => BankConsole.toast(text, ms);

  function debounce(fn, ms) {
    let timer = null;
    const wrapped = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
    wrapped.cancel = () => clearTimeout(timer);
    return wrapped;
  }

  const api = BankConsole.apiClient({
    token: () => state.token,
    onUnauthorized: () => { signedOut("登录已失效，请重新登录。"); },
  });

  function failed(error) {
    if (error instanceof ApiError && error.status === 401) return;
    toast(error.message || "操作失败，请稍后重试。");
  }

  /** The findings list: errors and warnings as the validator words them, or that there is nothing to say. */
  function renderFindings(node, findings, pending) {
    node.replaceChildren();
    if (pending) { node.append(el("p", "finding checking", "正在检查…")); return; }
    if (!findings) return;
    if (!findings.length) { node.append(el("p", "finding ok", "检查通过：未发现问题。")); return; }
    for (const f of findings) {
      const item = el("p", `finding ${f.level}`);
      item.append(el("strong", null, f.level === "error" ? "错误：" : "提示："), document.createTextNode(f.message));
      node.append(item);
    }
  }

  function confirmDialog(title, text, okText) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okText || "确认";
    dialog.showModal();
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-ok").onclick = null;
        $("confirm-cancel").onclick = null;
        dialog.close();
        resolve(answer);
      };
      $("confirm-ok").onclick = () => done(true);
      $("confirm-cancel").onclick = () => done(false);
      dialog.oncancel = () => done(false);
    });
  }

  // ------------------------------------------------------------------ login / logout / views

  async function admit(result) {
    if (TRAINING_ROLES.includes(result.agent.role)) return;
    await api("POST", "/api/agent/logout").catch(() => null);  // the desk's login: end the session it just opened
    state.token = null;
    throw new ApiError(403, "该账号没有训练工作台的权限（需要训练师或管理员账号）。");
  }

  BankConsole.bindLogin({ api, state, stored, admit, start, signOut: () => signedOut() });

  function signedOut(message) {
    state.token = null;
    state.me = null;
    stored.clear();
    clearTimeout(state.pollTimer);
    $("bench-view").hidden = true;
    $("login-view").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
  }

  function start() {
    $("login-view").hidden = true;
    $("bench-view").hidden = false;
    const me = state.me || {};
    $("me-name").textContent = `${me.display_name || me.username || ""}（${ROLE[me.role] || me.role || ""}）`;
    showView("review");
    loadData().catch(failed);
  }

  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));

  function showView(view) {
    state.view = view;
    for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
    for (const name of ["review", "data", "models"]) $(`${name}-view`).hidden = name !== view;
    clearTimeout(state.pollTimer);
    if (view === "review") loadInbox().catch(failed);
    if (view === "data") loadData().then(renderDataList).catch(failed);
    if (view === "models") loadModels().catch(failed);
  }

  // ------------------------------------------------------------------ 审核: the review inbox

  $("filters").addEventListener("submit", (event) => { event.preventDefault(); state.page = 1; loadInbox().catch(failed); });
  $("f-reset").addEventListener("click", () => { $("filters").reset(); state.page = 1; loadInbox().catch(failed); });
  $("page-prev").addEventListener("click", () => { state.page -= 1; loadInbox().catch(failed); });
  $("page-next").addEventListener("click", () => { state.page += 1; loadInbox().catch(failed); });

  async function loadInbox() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData($("filters"))) if (String(value).trim()) params.set(name, String(value).trim());
    params.set("page", String(state.page));
    $("inbox-summary").textContent = "正在加载…";
    const inbox = await api("GET", `/api/trainer/inbox?${params}`);
    state.inbox = inbox;
    $("inbox-summary").textContent = `${inbox.since} 至 ${inbox.until}：共 ${inbox.total_groups} 组、${inbox.total_messages} 条消息，按重要程度排序`;
    const list = $("groups");
    list.replaceChildren(...inbox.groups.map((g, i) => groupCard(g, (inbox.page - 1) * inbox.page_size + i + 1)));
    $("inbox-empty").hidden = inbox.groups.length > 0;
    const pages = Math.max(1, Math.ceil(inbox.total_groups / inbox.page_size));
    $("page-info").textContent = `第 ${inbox.page} / ${pages} 页`;
    $("page-prev").disabled = inbox.page <= 1;
    $("page-next").disabled = inbox.page >= pages;
  }

  function chips(map, names, className) {
    const box = el("span", "chips");
    for (const [key, n] of Object.entries(map || {})) box.append(el("span", `chip ${className || ""} ${key}`, `${names[key] || key} ${n}`));
    return box;
  }

  function metaRow(dl, term, value) {
    dl.append(el("dt", null, term));
    const dd = el("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    dl.append(dd);
  }

  function groupCard(group, rank) {
    const card = el("li", "group");
    card.dataset.group = group.group_id;
    const head = el("div", "group-head");
    const title = el("h3", "group-title");
    title.append(el("span", "rank", `#${rank}`), document.createTextNode(group.samples[0] || ""));
    head.append(title, el("span", "count", `${group.count} 条消息`), el("span", "score", `重要度 ${group.score}`));
    card.append(head);

    const meta = el("dl", "facts group-meta");
    metaRow(meta, "渠道", counted(group.channels, CHANNEL));
    metaRow(meta, "时间", `${when(group.first_at)} — ${when(group.last_at)}`);
    metaRow(meta, "原因", chips(group.reasons, REASON, "reason"));
    metaRow(meta, "结果", chips(group.outcomes, OUTCOME, "outcome"));
    metaRow(meta, "置信度", chips(group.bands, BAND, "band"));
    if (group.intents.length) metaRow(meta, "识别意图", group.intents.map((i) => `${i.name} ${i.count}`).join(" · "));
    if (group.knowledge.length) metaRow(meta, "检索首条", group.knowledge.map((k) => `${k.id} ${k.question}`).join(" · "));
    if (group.conversations.length) metaRow(meta, "会话", conversationButtons(group.conversations));
    card.append(meta);

    const messages = el("ul", "messages");
    for (const m of group.messages) {
      const item = el("li", "message");
      item.append(el("span", "text", m.text), el("span", "times", `×${m.count}`), el("span", `chip mark ${m.status}`, MARK[m.status] || m.status));
      messages.append(item);
    }
    card.append(messages);

    const actions = el("div", "group-actions");
    const open = button("处理", "primary", () => {
      open.hidden = true;
      card.append(fixPanel(group, card));
    });
    actions.append(open);
    card.append(actions);
    return card;
  }

  /** A conversation's id, and a button that saves it as a conversation test (its replies as they are now). */
  function conversationButtons(ids) {
    const box = el("span", "conversations");
    for (const id of ids) {
      const save = button(`存为对话测试 ${id.slice(0, 8)}`, "small", async () => {
        save.disabled = true;
        try {
          const created = await api("POST", `/api/trainer/conversations/${encodeURIComponent(id)}/test`, {});
          save.replaceWith(el("span", "chip fixed saved-test", `已存为 ${created.file}`));
          toast(`已生成对话测试 ${created.file}：它记录了这段会话现在的回答，之后的每次对比都会运行它。`);
        } catch (e) {
          save.disabled = false;
          failed(e);
        }
      });
      save.title = `会话 ${id}`;
      box.append(save);
    }
    return box;
  }

  /** The fix panel of one group: which messages, suggestions, the action, its findings, save. */
  function fixPanel(group, card) {
    const panel = el("section", "fix");
    panel.setAttribute("aria-label", "处理这组消息");
    const pick = el("fieldset", "pick");
    pick.append(el("legend", null, "要处理的消息"));
    const boxes = group.messages.map((m) => {
      const box = el("input");
      box.type = "checkbox";
      box.checked = m.status === "open";
      box.value = m.text;
      const label = el("label", "check");
      label.append(box, document.createTextNode(m.text));
      pick.append(label);
      return box;
    });
    const texts = () => boxes.filter((b) => b.checked).map((b) => b.value);
    const keys = () => group.messages.filter((_, i) => boxes[i].checked).map((m) => m.key);

    const suggest = el("div", "suggest");
    suggest.append(el("p", "sub", "正在获取建议…"));

    const kinds = el("div", "fix-kinds");
    kinds.setAttribute("role", "radiogroup");
    kinds.setAttribute("aria-label", "处理方式");
    const name = `kind-${group.group_id}`;
    for (const [value, text] of FIX_KINDS) {
      const radio = el("input");
      radio.type = "radio";
      radio.name = name;
      radio.value = value;
      radio.checked = value === "add_to_intent";
      const label = el("label", "kind-option");
      label.append(radio, document.createTextNode(text));
      kinds.append(label);
    }
    const kind = () => kinds.querySelector("input:checked").value;

    const intentSelect = el("select");
    intentSelect.append(option("", "请选择意图"), ...(state.data?.intents || []).map((i) => option(i.name, i.name)));
    const entrySelect = el("select");
    entrySelect.append(option("", "请选择知识条目"), ...(state.data?.entries || []).map((e) => option(e.id, `${e.id} ${e.question}`)));
    const newIntent = el("input");
    newIntent.placeholder = "英文、数字、下划线，如 ask_card_fee";
    newIntent.maxLength = 100;
    const response = el("textarea");
    response.rows = 3;
    response.maxLength = 4000;
    const category = el("input");
    category.setAttribute("list", `cats-${group.group_id}`);
    category.maxLength = 100;
    const cats = el("datalist");
    cats.id = `cats-${group.group_id}`;
    cats.append(...[...new Set((state.data?.entries || []).map((e) => e.category))].map((c) => option(c, c)));
    const question = el("input");
    question.maxLength = 500;
    question.value = group.samples[0] || "";
    const answer = el("textarea");
    answer.rows = 3;
    answer.maxLength = 4000;
    const fields = {
      add_to_intent: [field("目标意图", intentSelect)],
      add_to_entry: [field("知识条目", entrySelect)],
      new_intent: [field("意图名称", newIntent), field("回复内容（utter_意图名）", response)],
      new_entry: [field("分类", category), cats, field("标准问题", question), field("答案", answer)],
      out_of_scope: [el("p", "sub", "这些消息将作为 out_of_scope 意图的例句：机器人会如实告知不在服务范围内。")],
      dismiss: [el("p", "sub", "无需修正：这些消息将从待处理列表中移除，不修改训练数据。")],
    };
    const fieldBox = el("div", "fix-fields");
    const findings = el("div", "findings");
    findings.setAttribute("aria-live", "polite");
    findings.setAttribute("aria-label", "检查结果");
    const error = el("p", "form-error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    const save = button("保存修正", "primary");
    const reload = button("重新加载数据", "ghost", async () => {
      await loadData().catch(failed);
      const chosen = [intentSelect.value, entrySelect.value];
      intentSelect.replaceChildren(option("", "请选择意图"), ...state.data.intents.map((i) => option(i.name, i.name, i.name === chosen[0])));
      entrySelect.replaceChildren(option("", "请选择知识条目"), ...state.data.entries.map((e) => option(e.id, `${e.id} ${e.question}`, e.id === chosen[1])));
      error.hidden = true;
      reload.hidden = true;
      checked = null;  // the data changed: check again
      check();
    });
    reload.hidden = true;
    const buttons = el("div", "fix-actions");
    buttons.append(save, reload);
    panel.append(pick, el("h4", null, "建议"), suggest, el("h4", null, "处理方式"), kinds, fieldBox, findings, error, buttons);

    let current = null;  // findings of the proposal now in the form
    let round = 0;

    function proposals() {
      const chosen = texts();
      const k = kind();
      if (!chosen.length) return null;
      if (k === "add_to_intent") return intentSelect.value ? [{ kind: "examples", intent: intentSelect.value, texts: chosen }] : null;
      if (k === "add_to_entry") return entrySelect.value ? [{ kind: "questions", entry_id: entrySelect.value, texts: chosen }] : null;
      if (k === "new_intent") {
        const n = newIntent.value.trim();
        if (!n) return null;
        const list = [{ kind: "examples", intent: n, texts: chosen }];
        if (response.value.trim()) list.push({ kind: "response", name: `utter_${n}`, variants: [{ text: response.value.trim() }] });
        return list;
      }
      if (k === "new_entry") return [{ kind: "questions", entry_id: null, texts: [question.value.trim() || chosen[0], ...chosen] }];
      if (k === "out_of_scope") return [{ kind: "examples", intent: "out_of_scope", texts: chosen }];
      return [];
    }

    async function runCheck() {
      const mine = ++round;
      const list = proposals();
      if (list === null) { current = null; renderFindings(findings, null); updateSave(); return; }
      renderFindings(findings, null, true);
      try {
        const results = await Promise.all(list.map((p) => api("POST", "/api/trainer/findings", p)));
        if (mine !== round) return;
        current = results.flatMap((r) => r.findings);
        renderFindings(findings, current);
      } catch (e) {
        if (mine !== round) return;
        current = null;
        renderFindings(findings, [{ level: "error", message: `无法检查：${e.message}` }]);
      }
      updateSave();
    }
    const delayed = debounce(runCheck, FINDINGS_DELAY_MS);
    let checked = null;  // the proposal the findings are about: a blur's change event with nothing new keeps them
    function check() {
      const key = JSON.stringify([kind(), proposals()]);
      if (key === checked) return;
      checked = key;
      current = null;
      updateSave();
      delayed();
    }

    function updateSave() {
      const k = kind();
      save.textContent = k === "dismiss" ? "忽略这些消息" : "保存修正";
      const blocked = current === null || current.some((f) => f.level === "error");
      save.disabled = k === "dismiss" ? !texts().length : blocked;
    }

    function showKind() {
      fieldBox.replaceChildren(...fields[kind()]);
      error.hidden = true;
      check();
    }
    kinds.addEventListener("change", showKind);
    for (const node of [intentSelect, entrySelect, newIntent, response, category, question, answer, ...boxes]) {
      node.addEventListener("input", check);
      node.addEventListener("change", check);
    }

    save.addEventListener("click", async () => {
      const k = kind();
      error.hidden = true;
      save.disabled = true;
      try {
        let done;
        if (k === "dismiss") {
          const result = await api("POST", "/api/trainer/inbox/dismiss", { keys: keys() });
          done = `已忽略 ${result.dismissed.length} 条消息。`;
        } else {
          const body = { texts: texts(), kind: k, versions: state.data ? state.data.files : undefined };
          if (k === "add_to_intent") body.intent = intentSelect.value;
          if (k === "add_to_entry") body.entry_id = entrySelect.value;
          if (k === "new_intent") Object.assign(body, { intent: newIntent.value.trim(), response: response.value.trim() });
          if (k === "new_entry") Object.assign(body, { category: category.value.trim(), question: question.value.trim() || undefined, answer: answer.value.trim() });
          const result = await api("POST", "/api/trainer/fixes", body);
          const what = FIX_KINDS.find(([v]) => v === k)[1];
          done = `已保存：${what}${result.target && k !== "out_of_scope" ? ` ${result.target}` : ""}（${Object.keys(result.versions).join("、")}）。训练并启用新模型后生效。`;
          await loadData().catch(() => null);
        }
        finished(card, done, k !== "dismiss");
      } catch (e) {
        error.textContent = e.status === 409 ? `保存失败：${e.message}` : e.message;
        error.hidden = false;
        reload.hidden = e.status !== 409;
        updateSave();
      }
    });

    showKind();
    api("POST", "/api/trainer/suggestions", { texts: group.messages.map((m) => m.text).slice(0, 200) })
      .then((s) => renderSuggestions(suggest, s, (k, value) => {
        kinds.querySelector(`input[value=${k}]`).checked = true;
        showKind();
        (k === "add_to_intent" ? intentSelect : entrySelect).value = value;
        check();
      }))
      .catch((e) => { suggest.replaceChildren(el("p", "sub", `无法获取建议：${e.message}`)); });
    return panel;
  }

  function renderSuggestions(box, s, choose) {
    box.replaceChildren();
    const row = (title, items, render) => {
      const line = el("div", "suggest-row");
      line.append(el("span", "suggest-title", title));
      if (!items.length) line.append(el("span", "sub", "无"));
      for (const item of items) line.append(render(item));
      box.append(line);
    };
    row("意图", s.intents || [], (i) => button(`${i.name} ${num(i.score)}`, "suggestion", () => choose("add_to_intent", i.name)));
    row("知识条目", s.entries || [], (e) => button(`${e.id} ${e.question} ${num(e.score)}`, "suggestion", () => choose("add_to_entry", e.id)));
    if ((s.examples || []).length) {
      const similar = el("ul", "similar");
      for (const e of s.examples) similar.append(el("li", null, `「${e.text}」 ${e.intent} · 相似度 ${num(e.similarity)}`));
      const line = el("div", "suggest-row");
      line.append(el("span", "suggest-title", "相似例句"), similar);
      box.append(line);
    }
  }

  function finished(card, text, train) {
    card.classList.add("done");
    for (const node of card.querySelectorAll(".fix, .group-actions")) node.remove();
    const note = el("div", "done-note");
    note.setAttribute("role", "status");
    note.append(el("p", null, text));
    if (train) note.append(button("去训练新模型", "primary", () => showView("models")));
    card.append(note);
    toast(text);
  }

  // ------------------------------------------------------------------ 数据: training data and knowledge base

  async function loadData() {
    state.data = await api("GET", "/api/trainer/data");
    $("intent-names").replaceChildren(...state.data.intents.map((i) => option(i.name, i.name)));
    return state.data;
  }

  for (const kindButton of document.querySelectorAll(".kind")) {
    kindButton.addEventListener("click", () => {
      state.kind = kindButton.dataset.kind;
      state.selected = null;
      for (const b of document.querySelectorAll(".kind")) b.setAttribute("aria-pressed", String(b === kindButton));
      closeEditor();
      renderDataList();
    });
  }
  $("data-search").addEventListener("input", () => renderDataList());
  $("data-new").addEventListener("click", () => openEditor(state.kind, null));
  $("editor-reload").addEventListener("click", async () => {
    const name = state.selected;
    await loadData().catch(failed);
    renderDataList();
    openEditor(state.kind, name ? findItem(state.kind, name) : null);
  });

  const itemName = (kind, item) => (kind === "entries" ? item.id : item.name);
  const findItem = (kind, name) => (state.data?.[kind] || []).find((i) => itemName(kind, i) === name) || null;

  function renderDataList() {
    if (!state.data) return;
    const query = $("data-search").value.trim().toLowerCase();
    const items = state.data[state.kind].filter((i) => !query || JSON.stringify(i).toLowerCase().includes(query));
    $("data-new").hidden = state.kind === "entries";  // new entries come from the inbox (新建知识条目)
    $("data-list").replaceChildren(...items.map((item) => {
      const name = itemName(state.kind, item);
      const row = el("li");
      const open = button("", "data-item", () => openEditor(state.kind, item));
      open.setAttribute("aria-current", String(state.selected === name));
      open.append(el("span", "data-name", name), el("span", "data-sub", describe(state.kind, item)));
      row.append(open);
      return row;
    }));
    for (const b of document.querySelectorAll(".kind")) {
      const n = (state.data[b.dataset.kind] || []).length;
      b.textContent = `${DATA_KINDS[b.dataset.kind].label} ${n}`;
    }
  }

  function describe(kind, item) {
    if (kind === "entries") return `${item.category} · ${item.question}`;
    if (kind === "responses") return `${item.variants.length} 条 · ${item.variants[0]?.text || ""}`;
    return `${item.examples.length} 条 · ${item.examples.slice(0, 3).join("、")}`;
  }

  function closeEditor() {
    $("editor-form").hidden = true;
    $("editor-empty").hidden = false;
    editor.check?.cancel?.();
  }

  const editor = { kind: null, item: null, collect: null, check: null, findings: null };

  function openEditor(kind, item) {
    state.selected = item ? itemName(kind, item) : null;
    renderDataList();
    Object.assign(editor, { kind, item, findings: [] });
    $("editor-empty").hidden = true;
    $("editor-form").hidden = false;
    $("editor-error").hidden = true;
    $("editor-save").disabled = false;
    $("editor-title").textContent = item ? `${DATA_KINDS[kind].label}：${itemName(kind, item)}` : `新建${DATA_KINDS[kind].label}`;
    $("editor-file").textContent = item ? `文件 ${item.file} · 版本 ${item.version.slice(0, 8)}` : "保存到该类数据所在的文件";
    $("editor-name-label").hidden = Boolean(item);
    $("editor-name").value = "";
    const box = $("editor-fields");
    box.replaceChildren();
    renderFindings($("editor-findings"), null);
    if (kind === "responses") responseEditor(box, item);
    else if (kind === "entries") entryEditor(box, item);
    else linesEditor(box, kind, item);
    editor.check = debounce(runEditorCheck, FINDINGS_DELAY_MS);
    box.addEventListener("input", () => { editor.check(); });
    $("editor-name").oninput = () => editor.check();
    $("editor-form").scrollIntoView({ block: "nearest" });
  }

  function textarea(value, rows, labelText) {
    const area = el("textarea");
    area.rows = rows;
    area.value = value || "";
    if (labelText) area.setAttribute("aria-label", labelText);
    return area;
  }

  function linesEditor(box, kind, item) {
    const area = textarea((item?.examples || []).join("\n"), 12);
    box.append(field(DATA_KINDS[kind].lines, area));
    editor.collect = () => ({ examples: lines(area.value) });
    editor.proposal = () => {
      if (kind !== "intents") return null;
      const before = new Set(item?.examples || []);
      const added = lines(area.value).filter((t) => !before.has(t));
      const name = item ? item.name : $("editor-name").value.trim();
      return added.length && name ? [{ kind: "examples", intent: name, texts: added }] : null;
    };
  }

  function responseEditor(box, item) {
    const list = el("ol", "variants");
    const add = (variant) => {
      const row = el("li", "variant");
      const channel = el("select");
      channel.append(...RESPONSE_CHANNELS.map(([v, t]) => option(v, t, (variant.channel || "") === v)));
      const text = textarea(variant.text, 3, "回复内容");
      const remove = button("删除", "ghost small", () => { row.remove(); editor.check(); });
      row.original = variant;
      row.append(field("渠道", channel), field("内容", text), remove);
      channel.addEventListener("change", () => editor.check());
      list.append(row);
    };
    for (const v of item?.variants || [{ text: "" }]) add(v);
    box.append(list, button("＋ 添加一条（随机选用，或指定渠道）", "ghost", () => { add({ text: "" }); editor.check(); }));
    box.append(el("p", "sub", "同一回复的几条内容会随机选用：每条都应完整回答同一个问题。{槽位名} 会填入已收集的信息。"));
    editor.collect = () => ({
      variants: [...list.children].map((row) => {
        const [channel, text] = [row.querySelector("select").value, row.querySelector("textarea").value.trim()];
        const kept = { ...row.original };
        delete kept.channel;
        return { ...kept, text: text || null, ...(channel ? { channel } : {}) };
      }).filter((v) => v.text || v.buttons || v.image || v.custom),
    });
    editor.proposal = () => {
      const name = item ? item.name : $("editor-name").value.trim();
      const variants = editor.collect().variants;
      return name && variants.length ? [{ kind: "response", name, variants }] : null;
    };
  }

  function entryEditor(box, item) {
    const inputs = {};
    const input = (key, value, type) => {
      const node = el("input");
      node.type = type || "text";
      node.value = value || "";
      inputs[key] = node;
      return node;
    };
    box.append(field("分类", input("category", item.category)), field("标准问题", input("question", item.question)));
    const similar = textarea((item.similar || []).join("\n"), 6);
    const answer = textarea(item.answer, 5);
    box.append(field("相似问题（每行一条）", similar), field("答案", answer));
    const answers = {};
    const group = el("fieldset", "channel-answers");
    group.append(el("legend", null, "渠道专用答案（留空则使用上面的答案）"));
    for (const [channel, label] of ANSWER_CHANNELS) {
      answers[channel] = textarea((item.answers || {})[channel], 2);
      group.append(field(label, answers[channel]));
    }
    box.append(group);
    const dates = el("div", "dates");
    dates.append(field("生效日期", input("valid_from", item.valid_from, "date")), field("失效日期", input("valid_to", item.valid_to, "date")));
    box.append(dates);
    editor.collect = () => {
      const channelAnswers = Object.fromEntries(Object.entries(answers).map(([c, a]) => [c, a.value.trim()]).filter(([, a]) => a));
      return { category: inputs.category.value.trim(), question: inputs.question.value.trim(), similar: lines(similar.value),
               answer: answer.value.trim(), answers: Object.keys(channelAnswers).length ? channelAnswers : null,
               valid_from: inputs.valid_from.value || null, valid_to: inputs.valid_to.value || null };
    };
    editor.proposal = () => {
      const c = editor.collect();
      const texts = [c.question, ...c.similar].filter(Boolean);
      return texts.length ? [{ kind: "questions", entry_id: item.id, texts }] : null;
    };
  }

  async function runEditorCheck() {
    const list = editor.proposal ? editor.proposal() : null;
    const node = $("editor-findings");
    $("editor-save").disabled = false;
    if (!list) { editor.findings = []; renderFindings(node, null); return; }
    renderFindings(node, null, true);
    try {
      const results = await Promise.all(list.map((p) => api("POST", "/api/trainer/findings", p)));
      editor.findings = results.flatMap((r) => r.findings);
      renderFindings(node, editor.findings);
      $("editor-save").disabled = editor.findings.some((f) => f.level === "error");
    } catch (e) {
      renderFindings(node, [{ level: "error", message: `无法检查：${e.message}` }]);
    }
  }

  $("editor-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const { kind, item } = editor;
    const name = item ? itemName(kind, item) : $("editor-name").value.trim();
    const error = $("editor-error");
    error.hidden = true;
    if (!name) { error.textContent = "请填写名称。"; error.hidden = false; return; }
    const path = kind === "entries" ? "entries" : (DATA_KINDS[kind].path || kind);
    const body = { ...editor.collect(), version: item ? item.version : null };
    $("editor-save").disabled = true;
    try {
      await api("PUT", `/api/trainer/${path}/${encodeURIComponent(name)}`, body);
      await loadData();
      renderDataList();
      openEditor(kind, findItem(kind, name));
      toast(`已保存 ${DATA_KINDS[kind].label} ${name}。训练并启用新模型后生效。`);
    } catch (e) {
      error.textContent = e.status === 409 ? `保存失败：${e.message}（您的修改仍在编辑框中，可先复制）` : e.message;
      error.hidden = false;
    } finally {
      $("editor-save").disabled = false;
    }
  });

  // ------------------------------------------------------------------ 模型: versions, training, comparison

  $("train").addEventListener("click", async () => {
    $("train").disabled = true;
    try {
      const started = await api("POST", "/api/trainer/models");
      state.watching.add(started.version);
      toast(`开始训练候选版本 ${started.version}`);
      await loadModels();
    } catch (e) { failed(e); } finally { $("train").disabled = false; }
  });

  async function loadModels() {
    clearTimeout(state.pollTimer);
    const models = await api("GET", "/api/trainer/models");
    state.models = models;
    renderModels(models);
    const training = models.versions.filter((v) => v.status === "training");
    for (const version of [...state.watching]) {
      const row = models.versions.find((v) => v.version === version);
      if (row && row.status !== "training") {
        state.watching.delete(version);
        if (row.status === "ready") { toast(`候选版本 ${version} 训练完成，正在与启用版本对比`); compare(version).catch(failed); }
        else if (row.status === "failed") toast(`候选版本 ${version} 训练失败：${row.error || ""}`, 8000);
      }
    }
    for (const row of training) state.watching.add(row.version);
    if (training.length && state.view === "models") state.pollTimer = setTimeout(() => loadModels().catch(failed), POLL_MS);
  }

  function renderModels(models) {
    $("m-serving").textContent = models.serving;
    $("m-active").textContent = models.active || "-";
    $("m-experiment").textContent = models.experiment ? `${models.experiment.candidate} 承接 ${Math.round(models.experiment.share * 100)}%` : "无";
    const training = models.versions.find((v) => v.status === "training");
    $("training").hidden = !training;
    if (training) {
      $("training-version").textContent = training.version;
      $("training-step").textContent = `${training.progress.step || ""}（${training.progress.done || 0}/${training.progress.total || 0}）`;
      $("training-bar").max = training.progress.total || 1;
      $("training-bar").value = training.progress.done || 0;
    }
    const active = models.versions.find((v) => v.status === "active");
    $("versions").tBodies[0].replaceChildren(...models.versions.map((v) => versionRow(v, active)));
  }

  /** The reason cross-validation was skipped: the registry words it in Chinese; versions recorded before it did
      carry the English one. */
  function skippedReason(text) {
    const m = /an intent has only (\d+) examples?; (\d+)-fold cross-validation needs (\d+)/.exec(text || "");
    return m ? `有意图只有 ${m[1]} 条例句，${m[2]} 折交叉验证要求每个意图至少 ${m[3]} 条` : text;
  }

  /** Who trained or activated a version: the account's display name the API joins in, else what was recorded. */
  function who(actor, name) {
    if (name) return name;
    const match = /^agent:(\d+)$/.exec(actor || "");
    if (!match) return actor === "startup" ? "服务启动" : (actor || "-");
    return `账号 #${match[1]}`;  // an account deleted since
  }

  function labelled(label, value) {
    const cell = el("td", null, value);
    cell.dataset.label = label;
    return cell;
  }

  function versionRow(v, active) {
    const row = el("tr");
    row.dataset.version = v.version;
    const version = labelled("版本", v.version);
    version.className = "mono";
    if (v.version === state.models.serving) version.append(el("span", "chip serving", "服务中"));
    const status = labelled("状态");
    status.append(el("span", `chip status ${v.status}`, VERSION_STATUS[v.status] || v.status));
    if (v.error) status.append(el("p", "error-text", v.error));
    const cv = v.metrics.cross_validation || {};
    const cell = labelled("操作");
    const actions = el("div", "actions");
    cell.append(actions);
    if (["ready", "retired", "active"].includes(v.status) && (!active || v.version !== active.version)) {
      actions.append(button("对比", null, () => compare(v.version).catch(failed)));
    }
    if (v.status === "ready") actions.append(button("启用", "primary", () => activate(v.version, false)));
    if (v.status === "retired") actions.append(button("回滚到此版本", null, () => activate(v.version, true)));
    row.append(version, status, labelled("训练", `${who(v.trained_by, v.trained_by_name)} · ${when(v.trained_at)}`),
               labelled("启用", v.activated_by ? `${who(v.activated_by, v.activated_by_name)} · ${when(v.activated_at)}` : "-"),
               labelled("交叉验证", cv.accuracy !== undefined ? `准确率 ${pct(cv.accuracy)} · F1 ${pct(cv.macro_f1)}`
                 : (cv.skipped ? `未做：${skippedReason(cv.skipped)}` : "-")),
               labelled("实验比例", v.experiment_share ? `${Math.round(v.experiment_share * 100)}%` : "-"), cell);
    return row;
  }

  async function activate(version, rollback) {
    const active = state.models?.active;
    const ok = await confirmDialog(rollback ? "回滚模型" : "启用模型",
      `${rollback ? "回滚到" : "启用"}版本 ${version}（当前启用 ${active || "无"}）。切换时服务不中断，进行中的请求用原模型完成。`,
      rollback ? "确认回滚" : "确认启用");
    if (!ok) return;
    try {
      try {
        await api("PUT", "/api/trainer/models/active", { version });
      } catch (e) {
        // the release gate: the version failed conversation tests when it was trained; the server asks the question
        if (!(e instanceof ApiError && e.status === 409 && e.message.includes("对话测试未通过"))) throw e;
        const force = await confirmDialog("对话测试未通过", e.message, "仍要启用");
        if (!force) return;
        await api("PUT", "/api/trainer/models/active", { version, force: true });
      }
      toast(`${rollback ? "已回滚到" : "已启用"} ${version}，服务未中断。`);
      await loadModels();
      if (state.comparing === version) $("cmp-activate").hidden = true;
    } catch (e) { failed(e); }
  }

  $("cmp-activate").addEventListener("click", () => activate(state.comparing, false));
  $("cmp-refresh").addEventListener("click", () => compare(state.comparing, true).catch(failed));
  $("exp-form").addEventListener("submit", (event) => {
    event.preventDefault();
    experiment(Number($("exp-share").value) / 100);
  });
  $("exp-stop").addEventListener("click", () => experiment(0));

  async function experiment(share) {
    try {
      await api("PUT", `/api/trainer/models/${encodeURIComponent(state.comparing)}/experiment`, { share });
      toast(share > 0 ? `候选版本将承接 ${Math.round(share * 100)}% 的新会话` : "实验已结束");
      await loadModels();
    } catch (e) { failed(e); }
  }

  async function compare(version, refresh) {
    state.comparing = version;
    $("comparison").hidden = false;
    $("cmp-body").hidden = true;
    $("cmp-loading").hidden = false;
    $("cmp-sub").textContent = `候选版本 ${version}`;
    $("comparison").scrollIntoView({ block: "start" });
    try {
      // the server replays the review inbox: what was just fixed or marked out of scope, and what is still open
      const result = await api("GET", `/api/trainer/models/${encodeURIComponent(version)}/comparison${refresh ? "?refresh=true" : ""}`);
      if (state.comparing !== version) return;
      renderComparison(result);
    } finally {
      $("cmp-loading").hidden = true;
    }
  }

  function cells(row, values) {
    row.append(...values.map((v) => el("td", null, v)));
    return row;
  }

  function renderComparison(c) {
    $("cmp-sub").textContent = `候选版本 ${c.candidate} 对比启用版本 ${c.active}`;
    const cv = c.cross_validation || {};
    const a = cv.active || {}, n = cv.candidate || {};
    $("cmp-cv").tBodies[0].replaceChildren(
      cells(el("tr"), ["准确率", pct(a.accuracy), pct(n.accuracy), delta(a.accuracy, n.accuracy)]),
      cells(el("tr"), ["宏平均 F1", pct(a.macro_f1), pct(n.macro_f1), delta(a.macro_f1, n.macro_f1)]));
    $("cmp-cv-note").textContent = [n.skipped ? `候选版本未做交叉验证：${skippedReason(n.skipped)}` : "",
                                     n.note || "", cv.note || "", `${n.folds || 5} 折交叉验证；变化以百分点计。`]
      .filter(Boolean).join("；");
    $("cmp-intents").tBodies[0].replaceChildren(...(cv.per_intent || []).map((i) => {
      const isNew = i.active_f1 === null && typeof a.accuracy === "number";  // the active model has results
      const change = i.change === null ? (isNew ? "新增" : "-") : `${i.change >= 0 ? "+" : ""}${i.change.toFixed(3)}`;
      const row = cells(el("tr"), [i.intent, num(i.active_f1), num(i.candidate_f1), change]);
      if (i.change < 0) row.className = "worse";
      return row;
    }));
    if (!(cv.per_intent || []).length) {
      const cell = el("td", "empty", "没有交叉验证结果可比较（见上方说明）。");
      cell.colSpan = 4;
      $("cmp-intents").tBodies[0].append(cells(el("tr"), []).appendChild(cell).parentNode);
    }

    const replay = $("cmp-replay");
    replay.replaceChildren();
    if (!c.replay || c.replay.skipped) replay.append(el("p", "sub", c.replay ? c.replay.skipped : "无回放数据"));
    else {
      const table = el("table", "grid-table");
      const head = cells(el("tr"), ["指标", "启用版本", "候选版本"]);
      table.append(head);
      for (const [key, label] of [["good_rate", "良好率"], ["wrong_answer_rate", "答错率"], ["answered", "直接回答"], ["clarified", "澄清"], ["handed_over", "转人工"], ["fallback", "未能理解"], ["n", "消息数"]]) {
        const fmt = (v) => (key.endsWith("rate") ? pct(v) : String(v ?? "-"));
        table.append(cells(el("tr"), [label, fmt(c.replay.active[key]), fmt(c.replay.candidate[key])]));
      }
      replay.append(table);
    }

    const tests = $("cmp-tests");
    tests.replaceChildren();
    const t = c.conversation_tests || {};
    if (t.skipped) tests.append(el("p", "sub", t.skipped));
    else {
      const summary = (s) => (s ? `通过 ${s.passed} / ${s.passed + s.failed}` : "-");
      tests.append(el("p", null, `启用版本：${summary(t.active)}　候选版本：${summary(t.candidate)}`));
      if ((t.newly_failing || []).length) tests.append(el("p", "error-text", `新失败：${t.newly_failing.join("、")}`));
      if ((t.newly_passing || []).length) tests.append(el("p", "good-text", `新通过：${t.newly_passing.join("、")}`));
    }

    const exp = $("cmp-exp");
    exp.replaceChildren();
    const arms = Object.entries(c.experiment || {});
    if (!arms.length) exp.append(el("p", "sub", "尚未进行实验：可让候选版本先承接一部分新会话。"));
    for (const [arm, counts] of arms) {
      const rest = Object.entries(counts).filter(([k]) => k !== "turns").map(([k, v]) => `${OUTCOME[k] || k} ${v}`).join(" · ");
      exp.append(el("p", null, `${arm === "candidate" ? "候选版本" : "启用版本"}：${counts.turns} 轮（${rest}）`));
    }

    const changes = c.outcome_changes || [];
    $("cmp-changes-count").textContent = String(changes.length);
    $("cmp-changes-from").textContent = `比较了 ${c.messages_compared} 条消息（${c.messages_from === "request" ? "指定的消息" : c.messages_from}）`;
    const outcome = (o) => `${OUTCOME[o.outcome] || o.outcome}${o.answer ? ` · ${o.answer}` : ""}${typeof o.confidence === "number" ? ` (${o.confidence.toFixed(2)})` : ""}`;
    $("cmp-changes").tBodies[0].replaceChildren(...changes.map((ch) => {
      const row = el("tr", "change");
      row.append(el("td", "text", ch.text), el("td", `was ${ch.before.outcome}`, outcome(ch.before)), el("td", `now ${ch.after.outcome}`, outcome(ch.after)));
      return row;
    }));
    $("cmp-changes-empty").hidden = changes.length > 0;
    $("cmp-activate").hidden = c.candidate === state.models?.active;
    $("cmp-body").hidden = false;
  }

  // ------------------------------------------------------------------ start

  if (state.token && state.me && TRAINING_ROLES.includes(state.me.role)) start();
})();
