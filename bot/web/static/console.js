/* 示例银行 — what the agent desk (/agent: agent.js, agent-library.js) and the trainer's workbench (/trainer:
   trainer.js) share: the element builder, times, the JSON API client with the session token and its Chinese error
   messages, the toast, the stored session and the login form. Plain ES2020, no framework; loaded with `defer`
   before each page's own script, it only defines window.BankConsole and touches no page by itself. */
(() => {
  "use strict";

  const LOGIN_PATH = "/api/agent/login";  // both consoles use the desk's login
  const LOGOUT_PATH = "/api/agent/logout";
  const NETWORK_ERROR = "网络异常，请稍后重试。";

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function readJson(text) {
    try { return text ? JSON.parse(text) : null; } catch { return null; }
  }

  // ------------------------------------------------------------------ times

  const formats = {
    clock: new Intl.DateTimeFormat("zh-CN", { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }),
    dayClock: new Intl.DateTimeFormat("zh-CN", { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
                                                 hour12: false }),
    dateTime: new Intl.DateTimeFormat("zh-CN", { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
                                                 minute: "2-digit", hour12: false }),
  };

  /** A server time stamp as a Date, or null. The server stores UTC; SQLite gives it back without an offset. */
  function parseTime(stamp) {
    if (!stamp) return null;
    const withZone = /[zZ]|[+-]\d\d:?\d\d$/.test(stamp) ? stamp : `${stamp}Z`;
    const date = new Date(withZone);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  /** `stamp` in one of `formats` ("clock", "dayClock", "dateTime"), or `fallback` when there is no valid time. */
  function formatTime(stamp, format, fallback = "") {
    const date = parseTime(stamp);
    return date ? formats[format].format(date) : fallback;
  }

  // ------------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;  // 0: the server could not be reached
    }
  }

  /** What to tell the user about a failed call: the server's (Chinese) reason, or that the network failed. */
  function errorText(error) {
    return error instanceof ApiError ? error.message : NETWORK_ERROR;
  }

  /** Shows `error` (errorText) in the element with this id, or hides the element when there is no error. */
  function showError(id, error) {
    const node = $(id);
    node.textContent = error ? errorText(error) : "";
    node.hidden = !error;
  }

  function detailOf(data, status) {
    let detail = data && data.detail;
    // pydantic's 422: a list of problems, each worded by the server's validators (in Chinese)
    if (Array.isArray(detail)) detail = detail.map((d) => String(d.msg || "").replace(/^Value error, /, "")).join("；");
    return detail || `请求失败（${status}）`;
  }

  /**
   * `api(method, path, body)` for JSON calls with `Authorization: Bearer <token()>`: resolves to the answer's JSON,
   * rejects with an ApiError. On a 401 (except the login's own) `onUnauthorized()` runs; a string it returns
   * replaces the server's reason.
   */
  function apiClient({ token, onUnauthorized }) {
    return async function api(method, path, body) {
      const headers = { Accept: "application/json" };
      const current = token();
      if (current) headers.Authorization = `Bearer ${current}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch {
        throw new ApiError(0, NETWORK_ERROR);
      }
      let data = null;
      try { data = await response.json(); } catch { data = null; }
      if (response.ok) return data;
      let detail = detailOf(data, response.status);
      if (response.status === 401 && path !== LOGIN_PATH && onUnauthorized) detail = onUnauthorized() || detail;
      throw new ApiError(response.status, detail);
    };
  }

  // ------------------------------------------------------------------ the page

  /** A short message in the page's #toast, hidden again after `ms`. */
  function toast(text, ms = 3500) {
    const node = $("toast");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { node.hidden = true; }, ms);
  }

  /** The session token and the signed-in account in sessionStorage, under `${prefix}.token` and `${prefix}.me`. */
  function storedSession(prefix) {
    const tokenKey = `${prefix}.token`;
    const meKey = `${prefix}.me`;
    return {
      token: () => sessionStorage.getItem(tokenKey),
      me: () => readJson(sessionStorage.getItem(meKey)),
      save(token, me) {
        sessionStorage.setItem(tokenKey, token);
        this.saveMe(me);
      },
      saveMe: (me) => sessionStorage.setItem(meKey, JSON.stringify(me)),
      clear() {
        sessionStorage.removeItem(tokenKey);
        sessionStorage.removeItem(meKey);
      },
    };
  }

  function loginErrorText(error) {
    if (!(error instanceof ApiError) || error.status === 0) return "无法连接服务器，请稍后重试";
    return error.status === 401 ? "用户名或密码错误" : error.message;
  }

  /**
   * The login form (#login-form, #login-username, #login-password, #login-error) and the #logout button. A login
   * sets `state.token` (which `api` sends), lets `admit(result)` refuse the account by throwing an ApiError, then
   * sets `state.me`, keeps both in `stored` (storedSession) and calls `start()`. `signOut()` clears the page after
   * the server's logout (or when that failed).
   */
  function bindLogin({ api, state, stored, admit, start, signOut }) {
    async function signIn(result) {
      state.token = result.token;
      if (admit) await admit(result);
      state.me = result.agent;
      stored.save(state.token, state.me);
      start();
    }

    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $("login-error");
      error.hidden = true;
      const username = $("login-username").value.trim();
      const password = $("login-password").value;
      if (!username || !password) {
        error.textContent = "请输入用户名和密码";
        error.hidden = false;
        return;
      }
      const submit = event.target.querySelector("button[type=submit]");
      submit.disabled = true;
      try {
        await signIn(await api("POST", LOGIN_PATH, { username, password }));
        $("login-password").value = "";
      } catch (e) {
        error.textContent = loginErrorText(e);
        error.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });

    $("logout").addEventListener("click", async () => {
      try { await api("POST", LOGOUT_PATH); } catch { /* signing out locally anyway */ }
      signOut();
    });
  }

  window.BankConsole = Object.freeze({
    $, el, readJson, formats, parseTime, formatTime, ApiError, errorText, showError, apiClient, toast,
    storedSession, bindLogin,
  });
})();
