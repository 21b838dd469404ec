/* 示例银行 运营看板 — the operations dashboard at /ops.
   Plain ES2020, no framework, no build step; charts with the vendored Chart.js 4 (window.Chart). Logs in with the
   desk's login (a supervisor's, a manager's or an admin's account) and reads /api/ops/*: the live strip and its
   alerts (polled every 10 s), the figures of a period (KPI cards, charts, a breakdown table with CSV export), the
   conversations behind any figure (drill-down), and the quality inspection (质检) review queue, scorecards and
   rules. Every piece of data is rendered with textContent, never as HTML; personal data arrives masked. */
(() => {
  "use strict";

  const { $, el, ApiError } = BankConsole;
  const stored = BankConsole.storedSession("bankbot.ops");  // not the desk's: a supervisor may have both open
  const OPS_ROLES = ["supervisor", "manager", "admin"];
  const ROLE = { supervisor: "主管", manager: "经理", admin: "管理员" };
  const LIVE_MS = 10_000;
  const DRILL_LIMIT = 50;
  const DEFAULT_DAYS = 7;
  const CHANNEL = { web: "网页", app: "手机银行App", wechat: "微信", wecom: "微信客服", rest: "接口" };
  const BY = { group: "技能组", agent: "坐席", intent: "意图", channel: "渠道", day: "日期", hour: "小时" };
  // the drill-down's figures (GET /api/ops/conversations?figure=...)
  const FIGURE = { conversations: "全部会话", contained: "自助解决的会话", returned: "24小时内回访的会话",
                   escalated: "转人工的会话", abandoned: "放弃排队的会话", no_answer: "出现无答案的会话",
                   clarified: "出现澄清的会话", rated: "有评价的会话", low_rating: "低评分（1-2分）的会话" };
  // bot/handoff/reasons.py's labels, for a figure keyed by the reason's kind
  const REASON = { sensitive: "敏感业务", anger: "情绪/投诉", vip: "VIP客户", form_failed: "验证失败", request: "客户要求",
                   fallback: "未能理解" };
  const HIT_STATUS = { pending: "待复核", confirmed: "已确认", rejected: "已驳回" };
  const COLOURS = { red: "#b3122e", blue: "#1d63d8", green: "#146c3c", amber: "#b26a00", grey: "#5c6570" };
  const PALETTE = ["#b3122e", "#1d63d8", "#146c3c", "#b26a00", "#6b3fa0", "#00788a", "#5c6570", "#c2417a"];

  const pct = (v) => (typeof v === "number" ? `${(v * 100).toFixed(1)}%` : "—");
  const count = (v) => (typeof v === "number" ? v.toLocaleString("zh-CN") : "—");
  function seconds(v) {
    if (typeof v !== "number") return "—";
    if (v < 60) return `${v.toFixed(1)}秒`;
    const m = Math.floor(v / 60);
    return m < 60 ? `${m}分${Math.round(v % 60)}秒` : `${Math.floor(m / 60)}小时${m % 60}分`;
  }
  const rating = (v) => (typeof v === "number" ? `${v}分` : "—");

  // the breakdown table's columns: [key, header, format, the drill-down figure behind a cell]
  const COLUMNS = [
    ["conversations", "会话量", count, "conversations"],
    ["chats", "接待量", count, "escalated"],
    ["containment_rate_24h", "自助解决率", pct, "contained"],
    ["containment_rate", "未转人工率", pct, "not_escalated"],
    ["escalation_rate", "转人工率", pct, "escalated"],
    ["no_answer_rate", "无答案率", pct, "no_answer"],
    ["clarification_rate", "澄清率", pct, "clarified"],
    ["handovers", "转人工量", count, "escalated"],
    ["first_response_p50_s", "首响p50", seconds, "escalated"],
    ["first_response_p90_s", "首响p90", seconds, "escalated"],
    ["first_response_within_rate", "首响达标率", pct, "escalated"],
    ["service_level", "服务水平", pct, "escalated"],
    ["abandonment_rate", "放弃率", pct, "abandoned"],
    ["aht_s", "平均处理时长", seconds, "escalated"],
    ["concurrent_max", "最大并发", count, "escalated"],
    ["csat", "满意度", pct, "rated"],
    ["csat_participation", "参评率", pct, "rated"],
  ];

  const state = {
    token: stored.token(), me: stored.me(), view: "figures", by: "group", filters: null,
    kpis: null, drill: null, liveTimer: null, charts: {}, groupsLoaded: false, ruleLabels: {},
  };

  const toast = (text, ms = 4000) => BankConsole.toast(text, ms);

  const api = BankConsole.apiClient({
    token: () => state.token,
    onUnauthorized: () => { signedOut("登录已失效，请重新登录。"); },
  });

  function failed(error) {
    if (error instanceof ApiError && error.status === 401) return;
    toast(BankConsole.errorText(error));
  }

  function button(text, className, onClick) {
    const node = el("button", className, text);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  function cell(tag, content) {
    const node = el(tag);
    if (content instanceof Node) node.append(content); else node.textContent = content;
    return node;
  }

  // ------------------------------------------------------------------ dates (Beijing days, as the API counts)

  const beijingDay = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
                                                        day: "2-digit" });
  function daysAgo(n) {
    return beijingDay.format(new Date(Date.now() - n * 86_400_000));
  }

  function resetDates() {
    $("f-from").value = daysAgo(DEFAULT_DAYS - 1);
    $("f-to").value = daysAgo(0);
  }

  /** The filters as query parameters (from, to, group, channel), plus `extra`. */
  function query(extra = {}) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries({ ...state.filters, ...extra })) {
      if (value !== undefined && value !== null && String(value) !== "") params.set(name, String(value));
    }
    return params;
  }

  // ------------------------------------------------------------------ login / logout / views

  async function admit(result) {
    if (OPS_ROLES.includes(result.agent.role)) return;
    await api("POST", "/api/agent/logout").catch(() => null);  // the desk's login: end the session it just opened
    state.token = null;
    throw new ApiError(403, "该账号没有运营看板的权限（需要主管、经理或管理员账号）。");
  }

  BankConsole.bindLogin({ api, state, stored, admit, start, signOut: () => signedOut() });

  function signedOut(message) {
    state.token = null;
    state.me = null;
    stored.clear();
    clearInterval(state.liveTimer);
    $("ops-view").hidden = true;
    $("login-view").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
  }

  function start() {
    $("login-view").hidden = true;
    $("ops-view").hidden = false;
    const me = state.me || {};
    $("me-name").textContent = `${me.display_name || me.username || ""}（${ROLE[me.role] || me.role || ""}）`;
    if (!$("f-from").value) resetDates();
    state.filters = filtersFromForm();
    showView("figures");
    refreshLive();
    clearInterval(state.liveTimer);
    state.liveTimer = setInterval(refreshLive, LIVE_MS);
  }

  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));

  function showView(view) {
    state.view = view;
    for (const tab of document.querySelectorAll(".tab")) {
      tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
    }
    for (const name of ["figures", "quality"]) $(`${name}-view`).hidden = name !== view;
    if (view === "figures") loadFigures();
    if (view === "quality") loadQuality();
  }

  // ------------------------------------------------------------------ the live strip and alerts

  async function refreshLive() {
    if (!state.token) return;
    let live;
    try {
      live = await api("GET", "/api/ops/live");
    } catch (e) {
      $("live-updated").textContent = `实时数据暂不可用：${BankConsole.errorText(e)}`;
      return;
    }
    $("live-waiting").textContent = `${count(live.waiting)} 人`;
    $("live-longest").textContent = seconds(live.longest_wait_s);
    $("live-agents").textContent = `${count(live.agents_online)} / ${count(live.agents_busy)}`;
    $("live-sl").textContent = pct(live.service_level_today);
    $("live-updated").textContent = `更新于 ${BankConsole.formats.clock.format(new Date())}（每10秒刷新）`;
    renderAlerts(live.alerts || []);
  }

  function renderAlerts(alerts) {
    const list = $("alerts");
    list.replaceChildren(...alerts.map((a) => {
      const item = el("li", `alert ${a.kind || ""}`);
      item.append(el("strong", null, a.kind === "service_level" ? "服务水平告警" : "排队超时告警"),
                  document.createTextNode(a.message || ""));
      if (a.since) item.append(el("span", "since", `自 ${BankConsole.formatTime(a.since, "clock", "")}`));
      return item;
    }));
    list.hidden = alerts.length === 0;
  }

  // ------------------------------------------------------------------ the figures

  function filtersFromForm() {
    return { from: $("f-from").value, to: $("f-to").value, group: $("f-group").value, channel: $("f-channel").value };
  }

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.filters = filtersFromForm();
    loadFigures();
  });
  $("f-reset").addEventListener("click", () => {
    resetDates();
    $("f-group").value = "";
    $("f-channel").value = "";
    state.filters = filtersFromForm();
    loadFigures();
  });

  async function loadFigures() {
    $("period").textContent = "正在加载…";
    try {
      const [kpis, byDay, byHour, breakdown] = await Promise.all([
        api("GET", `/api/ops/kpis?${query()}`),
        api("GET", `/api/ops/breakdown?${query({ by: "day" })}`),
        api("GET", `/api/ops/breakdown?${query({ by: "hour" })}`),
        api("GET", `/api/ops/breakdown?${query({ by: state.by })}`),
      ]);
      state.kpis = kpis;
      const period = kpis.period || {};
      $("period").textContent = `${period.from} 至 ${period.to}（北京时间）：共 ${count(kpis.conversations)} 个会话、` +
        `${count(kpis.handovers)} 次转人工`;
      renderKpis(kpis);
      trendChart("chart-day", everyKey(byDay.rows, daysOf(period.from, period.to), (day) => day.slice(5)));
      trendChart("chart-hour", everyKey(byHour.rows, HOURS, (hour) => `${hour}:00`));
      reasonChart(kpis.escalations_by_reason || {});
      renderBreakdown(breakdown);
      if (!state.groupsLoaded) loadGroups();
    } catch (e) {
      $("period").textContent = `数据加载失败：${BankConsole.errorText(e)}`;
      failed(e);
    }
  }

  /** The group filter's options: the groups that have figures in the last year. */
  async function loadGroups() {
    state.groupsLoaded = true;
    try {
      const answer = await api("GET", `/api/ops/breakdown?${new URLSearchParams({ by: "group", from: daysAgo(365),
                                                                                      to: daysAgo(0) })}`);
      const select = $("f-group");
      const chosen = select.value;
      const options = [el("option", null, "全部")];
      options[0].value = "";
      for (const row of answer.rows) {
        const option = el("option", null, row.label || row.key);
        option.value = row.key;
        options.push(option);
      }
      select.replaceChildren(...options);
      select.value = chosen;
    } catch (e) {
      state.groupsLoaded = false;
      failed(e);
    }
  }

  // ------------------------------------------------------------------ KPI cards

  function kpiCards(k) {
    const target = k.service_level_target || {};
    const x = k.first_response_seconds;
    return [
      { id: "conversations", label: "会话量", value: count(k.conversations), figure: "conversations",
        note: `转人工 ${count(k.handovers)} 次` },
      // 自助解决率 counts a customer back on the same topic within 24 h as not contained; 未转人工率 does not
      { id: "containment", label: "自助解决率", value: pct(k.containment_rate_24h), figure: "contained",
        note: `未转人工率 ${pct(k.containment_rate)}（不扣除回访）`, noteFigure: "returned" },
      { id: "escalation", label: "转人工率", value: pct(k.escalation_rate), figure: "escalated" },
      { id: "no-answer", label: "无答案率", value: pct(k.no_answer_rate), figure: "no_answer", note: "按客户消息计" },
      { id: "clarification", label: "澄清率", value: pct(k.clarification_rate), figure: "clarified",
        note: `澄清后选择选项：${pct(k.clarification_resolved_rate)}` },
      { id: "first-response", label: "首响时长 p50 / p90", figure: "escalated", note: "从转人工到坐席首条消息",
        value: `${seconds(k.first_response_p50_s)} / ${seconds(k.first_response_p90_s)}` },
      { id: "first-response-within", label: `首响${x ?? "X"}秒应答率`, value: pct(k.first_response_within_rate),
        figure: "escalated" },
      { id: "service-level", label: "服务水平", value: pct(k.service_level), figure: "escalated",
        note: `目标：${target.percent ?? "—"}% 在 ${target.seconds ?? "—"} 秒内接起`,
        warn: typeof k.service_level === "number" && typeof target.percent === "number"
          && k.service_level * 100 < target.percent },
      { id: "abandonment", label: "放弃率", value: pct(k.abandonment_rate), figure: "abandoned", note: "排队中离开 ÷ 转人工" },
      { id: "aht", label: "平均处理时长", value: seconds(k.aht_s), figure: "escalated", note: "从接起到结束" },
      { id: "csat", label: "满意度", value: pct(k.csat), figure: "rated",
        note: `参评率：${pct(k.csat_participation)}（4-5分占比）` },
    ];
  }

  function renderKpis(kpis) {
    const box = $("kpis");
    box.replaceChildren(...kpiCards(kpis).map((card) => {
      const node = el("div", `kpi${card.warn ? " warn" : ""}`);
      node.dataset.kpi = card.id;
      const open = button("", "kpi-open", () => drillDown({ figure: card.figure, title: card.label }));
      open.append(el("span", "kpi-label", card.label), el("span", "kpi-value", card.value),
                  el("span", "sr-only", "（查看会话）"));
      node.append(open);
      if (card.note && card.noteFigure) {
        node.append(button(card.note, "kpi-note link", () => drillDown({ figure: card.noteFigure, title: card.note })));
      } else if (card.note) {
        node.append(el("span", "kpi-note", card.note));
      }
      return node;
    }));
  }

  // ------------------------------------------------------------------ charts (Chart.js)

  if (window.Chart) {
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = COLOURS.grey;
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
  }

  function drawChart(id, config) {
    if (!window.Chart) return;
    const old = state.charts[id];
    if (old) old.destroy();
    state.charts[id] = new Chart($(id), config);
  }

  const percentAxis = { position: "right", min: 0, max: 1, grid: { drawOnChartArea: false },
                        ticks: { callback: (v) => `${Math.round(v * 100)}%` } };

  function tooltipLabel(context) {
    const value = context.parsed.y;
    return context.dataset.yAxisID === "rate" ? `${context.dataset.label}：${pct(value)}`
      : `${context.dataset.label}：${count(value)}`;
  }

  const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, "0"));  // the API's hour keys

  /** The period's days (YYYY-MM-DD, both ends included), or none when the dates are not readable or too many. */
  function daysOf(from, to) {
    const days = [];
    const last = Date.parse(`${to}T00:00:00Z`);
    for (let t = Date.parse(`${from}T00:00:00Z`); t <= last && days.length <= 366; t += 86_400_000) {
      days.push(new Date(t).toISOString().slice(0, 10));
    }
    return days;
  }

  /** The rows for every key in `keys` (an empty row where the API has none), then any rows left over. */
  function everyKey(rows, keys, label) {
    const byKey = new Map(rows.map((r) => [String(r.key), r]));
    const filled = keys.map((key) => ({ key, conversations: 0, ...byKey.get(key), label: label(key) }));
    return filled.concat(rows.filter((r) => !keys.includes(String(r.key))));
  }

  /** Conversations (bars) with the containment and escalation rates (lines) by day or hour. */
  function trendChart(id, rows) {
    drawChart(id, {
      type: "bar",
      data: {
        labels: rows.map((r) => r.label || r.key),
        datasets: [
          { label: "会话量", data: rows.map((r) => r.conversations ?? 0), backgroundColor: "#c9d8f5", yAxisID: "count",
            maxBarThickness: 56, order: 2 },
          { type: "line", label: "自助解决率", data: rows.map((r) => r.containment_rate_24h), borderColor: COLOURS.green,
            backgroundColor: COLOURS.green, yAxisID: "rate", spanGaps: true, order: 1 },
          { type: "line", label: "转人工率", data: rows.map((r) => r.escalation_rate), borderColor: COLOURS.red,
            backgroundColor: COLOURS.red, yAxisID: "rate", spanGaps: true, order: 1 },
        ],
      },
      options: {
        scales: { count: { position: "left", beginAtZero: true, ticks: { precision: 0 } }, rate: percentAxis },
        plugins: { tooltip: { callbacks: { label: tooltipLabel } }, legend: { position: "bottom" } },
      },
    });
  }

  function reasonChart(byReason) {
    const entries = Object.entries(byReason).sort((a, b) => b[1] - a[1]);
    $("chart-reason-empty").hidden = entries.length > 0;
    drawChart("chart-reason", {
      type: "bar",
      data: {
        labels: entries.map(([reason]) => REASON[reason] || reason),
        datasets: [{ label: "转人工次数", data: entries.map(([, n]) => n),
                     backgroundColor: entries.map((_, i) => PALETTE[i % PALETTE.length]), maxBarThickness: 40 }],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
                 plugins: { legend: { display: false } } },
    });
  }

  /** The chosen dimension: volume (bars) and the escalation rate or, for agents, CSAT (line). */
  function byChart(breakdown) {
    const agents = breakdown.by === "agent";
    const rows = breakdown.rows;
    const volume = agents ? "chats" : "conversations";
    const rate = agents ? "csat" : "escalation_rate";
    $("chart-by-title").textContent = `按${BY[breakdown.by] || breakdown.by}对比`;
    drawChart("chart-by", {
      type: "bar",
      data: {
        labels: rows.map((r) => r.label || r.key),
        datasets: [
          { label: agents ? "接待量" : "会话量", data: rows.map((r) => r[volume] ?? 0), backgroundColor: "#f1b8c3",
            yAxisID: "count", maxBarThickness: 56, order: 2 },
          { type: "line", label: agents ? "满意度" : "转人工率", data: rows.map((r) => r[rate]), borderColor: COLOURS.blue,
            backgroundColor: COLOURS.blue, yAxisID: "rate", spanGaps: true, order: 1 },
        ],
      },
      options: {
        scales: { count: { position: "left", beginAtZero: true, ticks: { precision: 0 } }, rate: percentAxis },
        plugins: { tooltip: { callbacks: { label: tooltipLabel } }, legend: { position: "bottom" } },
      },
    });
  }

  // ------------------------------------------------------------------ the breakdown table and its CSV

  for (const dim of document.querySelectorAll(".dim")) {
    dim.addEventListener("click", async () => {
      state.by = dim.dataset.by;
      for (const d of document.querySelectorAll(".dim")) d.setAttribute("aria-pressed", String(d === dim));
      try {
        renderBreakdown(await api("GET", `/api/ops/breakdown?${query({ by: state.by })}`));
      } catch (e) { failed(e); }
    });
  }

  function renderBreakdown(breakdown) {
    const rows = breakdown.rows || [];
    const columns = COLUMNS.filter(([key]) => rows.some((r) => key in r));
    const head = el("tr");
    head.append(el("th", null, BY[breakdown.by] || breakdown.by));
    for (const [, header] of columns) head.append(el("th", "num", header));
    $("breakdown").tHead.replaceChildren(head);
    $("breakdown").tBodies[0].replaceChildren(...rows.map((row) => {
      const tr = el("tr");
      const label = row.label || String(row.key);
      tr.append(el("th", null, label));
      tr.firstChild.scope = "row";
      for (const [key, header, format, figure] of columns) {
        const text = format(row[key]);
        const open = button(text, "cell-link", () => drillDown({ figure, by: breakdown.by, key: row.key,
                                                                  title: `${label} · ${header}` }));
        open.setAttribute("aria-label", `${label} ${header} ${text}：查看会话`);
        tr.append(cell("td", open));
        tr.lastChild.className = "num";
      }
      return tr;
    }));
    $("breakdown-empty").hidden = rows.length > 0;
    byChart(breakdown);
  }

  $("export").addEventListener("click", async () => {
    const params = query({ by: state.by });
    const exportButton = $("export");
    exportButton.disabled = true;
    try {
      // the token travels as a header, so the file is fetched here and saved from a blob URL
      const response = await fetch(`/api/ops/export.csv?${params}`,
                                   { headers: { Authorization: `Bearer ${state.token}` } });
      if (!response.ok) {
        let detail = null;
        try { detail = (await response.json()).detail; } catch { detail = null; }
        throw new ApiError(response.status, typeof detail === "string" ? detail : `导出失败（${response.status}）`);
      }
      const url = URL.createObjectURL(await response.blob());
      const link = el("a");
      link.href = url;
      link.download = `运营明细-${BY[state.by] || state.by}-${state.filters.from}至${state.filters.to}.csv`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      failed(e instanceof ApiError ? e : new ApiError(0, "网络异常，请稍后重试。"));
    } finally {
      exportButton.disabled = false;
    }
  });

  // ------------------------------------------------------------------ drill-down: the conversations behind a figure

  function drillDown({ figure, by, key, title }) {
    state.drill = { figure, by, key, title, offset: 0 };
    $("drill").hidden = false;
    loadDrill(true);
  }

  $("drill-close").addEventListener("click", () => { $("drill").hidden = true; state.drill = null; });
  $("drill-prev").addEventListener("click", () => { state.drill.offset -= DRILL_LIMIT; loadDrill(); });
  $("drill-next").addEventListener("click", () => { state.drill.offset += DRILL_LIMIT; loadDrill(); });

  async function loadDrill(focus) {
    const drill = state.drill;
    $("drill-title").textContent = `会话明细：${drill.title}`;
    $("drill-summary").textContent = "正在加载…";
    const params = query({ figure: drill.figure, by: drill.by, key: drill.key, limit: DRILL_LIMIT,
                           offset: drill.offset });
    if (focus) { $("drill").scrollIntoView({ block: "start" }); $("drill").focus({ preventScroll: true }); }
    let answer;
    try {
      answer = await api("GET", `/api/ops/conversations?${params}`);
    } catch (e) {
      $("drill-summary").textContent = `加载失败：${BankConsole.errorText(e)}`;
      return;
    }
    const rows = answer.rows || [];
    $("drill-summary").textContent = `${FIGURE[drill.figure] || drill.figure}：共 ${count(answer.total)} 个` +
      (rows.length ? `，第 ${drill.offset + 1}–${drill.offset + rows.length} 个` : "") + "（客户信息已脱敏）";
    $("drill-table").tBodies[0].replaceChildren(...rows.map(drillRow));
    const pages = Math.max(1, Math.ceil(answer.total / DRILL_LIMIT));
    $("drill-page").textContent = `第 ${Math.floor(drill.offset / DRILL_LIMIT) + 1} / ${pages} 页`;
    $("drill-prev").disabled = drill.offset <= 0;
    $("drill-next").disabled = drill.offset + DRILL_LIMIT >= answer.total;
  }

  function drillRow(row) {
    const tr = el("tr");
    const id = String(row.conversation_id ?? "");
    const idCell = el("td", "mono", id.length > 12 ? `${id.slice(0, 8)}…` : id);
    idCell.title = id;
    tr.append(idCell,
              el("td", null, BankConsole.formatTime(row.started_at, "dayClock", "—")),
              el("td", null, row.channel_label || CHANNEL[row.channel] || row.channel || "—"),
              el("td", null, row.customer || "—"),
              el("td", null, (row.intents || []).join("、") || "—"),
              el("td", null, row.group || "—"),
              el("td", null, row.agent || "—"),
              el("td", null, row.reason || "—"),
              el("td", null, row.outcome || "—"),
              el("td", "num", rating(row.rating)),
              el("td", "num", seconds(row.first_response_s)));
    return tr;
  }

  // ------------------------------------------------------------------ 质检: quality inspection

  $("hits-status").addEventListener("change", () => loadHits().catch(failed));

  async function loadQuality() {
    await Promise.all([loadHits(), loadRules().then(loadScorecards)].map((p) => p.catch(failed)));
  }

  async function loadHits() {
    const params = query({ status: $("hits-status").value });
    params.delete("group");
    params.delete("channel");
    const answer = await api("GET", `/api/ops/quality/hits?${params}`);
    const rows = answer.rows || [];
    $("hits").tBodies[0].replaceChildren(...rows.map(hitRow));
    $("hits-empty").hidden = rows.length > 0;
  }

  function hitRow(hit) {
    const tr = el("tr");
    tr.dataset.hit = hit.id;
    const actions = el("td", "actions");
    if (hit.status === "pending") {
      actions.append(button("确认", "small primary", () => review(hit, "confirm", tr)),
                     button("驳回", "small", () => review(hit, "reject", tr)));
    } else {
      const when = BankConsole.formatTime(hit.reviewed_at, "dayClock", "");
      actions.textContent = hit.reviewer ? `${hit.reviewer} ${when}` : "—";
    }
    const conversation = String(hit.conversation_id ?? "");
    tr.append(el("td", null, BankConsole.formatTime(hit.created_at, "dayClock", "—")),
              el("td", null, hit.agent || "—"),
              el("td", null, hit.rule_label || hit.rule),
              el("td", "excerpt", hit.excerpt || "—"),
              el("td", "num", typeof hit.score === "number" ? String(hit.score) : "—"),
              el("td", "mono", conversation.length > 12 ? `${conversation.slice(0, 8)}…` : conversation),
              cell("td", el("span", `chip ${hit.status}`, HIT_STATUS[hit.status] || hit.status)),
              actions);
    return tr;
  }

  async function review(hit, decision, row) {
    for (const b of row.querySelectorAll("button")) b.disabled = true;
    try {
      await api("POST", `/api/ops/quality/hits/${encodeURIComponent(hit.id)}/review`, { decision, note: "" });
      toast(decision === "confirm" ? "已确认该命中。" : "已驳回该命中。", 2500);
      await loadQuality();
    } catch (e) {
      for (const b of row.querySelectorAll("button")) b.disabled = false;
      failed(e);
    }
  }

  async function loadScorecards() {
    const params = new URLSearchParams({ from: state.filters.from, to: state.filters.to });
    $("cards-period").textContent = `${state.filters.from} 至 ${state.filters.to}`;
    const answer = await api("GET", `/api/ops/quality/scorecards?${params}`);
    const rows = answer.rows || [];
    $("scorecards").tBodies[0].replaceChildren(...rows.map((r) => {
      const tr = el("tr");
      const rules = Object.entries(r.hits_by_rule || {})
        .map(([rule, n]) => `${state.ruleLabels[rule] || rule} ×${n}`).join("、");
      tr.append(el("td", null, r.agent || "—"), el("td", "num", count(r.chats)),
                el("td", "num", typeof r.score_avg === "number" ? r.score_avg.toFixed(1) : "—"),
                el("td", null, rules || "—"), el("td", "num", count(r.confirmed)), el("td", "num", count(r.rejected)));
      return tr;
    }));
    $("cards-empty").hidden = rows.length > 0;
  }

  async function loadRules() {
    const answer = await api("GET", "/api/ops/quality/rules");
    const rows = answer.rows || [];
    state.ruleLabels = Object.fromEntries(rows.map((r) => [r.rule, r.label || r.rule]));
    $("rules").tBodies[0].replaceChildren(...rows.map((r) => {
      const tr = el("tr");
      tr.append(el("td", null, r.label || r.rule),
                el("td", "num", typeof r.points === "number" ? String(r.points) : "—"),
                el("td", "num", count(r.hits)), el("td", "num", count(r.confirmed)), el("td", "num", count(r.rejected)),
                el("td", "num", pct(r.precision)));
      return tr;
    }));
    $("rules-empty").hidden = rows.length > 0;
  }

  // ------------------------------------------------------------------ boot

  resetDates();
  if (state.token && state.me && OPS_ROLES.includes(state.me.role)) start();
})();
