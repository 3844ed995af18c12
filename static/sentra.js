/**
 * Sentra's browser client: follow an agent's live log from any frontend, with reconnect and cleanup.
 *
 * Plain ES module, no dependencies. Serve it from Sentra itself (`import { connect } from "/sentra.js"`) or copy it
 * into your app. `connect()` is the framework-free equivalent of a `useAgentLogs` hook; `openEventStream()` is the
 * lower-level piece it is built on (the viewer's shared worker, live-worker.js, uses it for the one stream every
 * viewer tab shares). It runs in a page or in a worker.
 *
 * Authentication: on Sentra's own origin the viewer's cookie is sent automatically. From another origin, either
 * list that origin in `server.cors_origins` (the cookie then travels with `withCredentials`), or pass `token`:
 * the token is never put in a URL; it buys a short-lived, read-only stream ticket for the agent instead.
 *
 * @module sentra
 */

/** Lines kept in memory by `connect()` unless `maxLines` says otherwise. */
export const DEFAULT_MAX_LINES = 10000;
/** First reconnect delay after a failed connection; doubled per attempt up to RECONNECT_MAX_MS. */
export const RECONNECT_MIN_MS = 1000;
/** Longest wait between reconnect attempts. */
export const RECONNECT_MAX_MS = 30000;
/** Sentra's levels, lowest first. */
export const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/**
 * @typedef {object} LogLine
 * @property {string} agent   The agent's id.
 * @property {number} seq     1, 2, 3… per agent, without gaps.
 * @property {number} ts      Epoch seconds.
 * @property {string} level   DEBUG, INFO, WARNING, ERROR or CRITICAL.
 * @property {string} message The text (may hold ANSI colour codes and newlines).
 * @property {string} source  stdout, stderr, a logger name…; may be empty.
 * @property {object} fields  Every other key the agent sent.
 */

/**
 * @typedef {object} EventStream
 * @property {() => void} close     Stop for good: close the connection and cancel any reconnect.
 * @property {string} state         connecting, open, reconnecting, ended (the server said it is over),
 *                                  closed (by close()) or failed (an answer that retrying will not change).
 * @property {string|null} cursor   The last event id: where a reconnect resumes.
 */

/**
 * An error passed to `onError`: `fatal` when the stream gave up, `status` the HTTP status that made it give up.
 * @typedef {Error & {fatal: boolean, status?: number}} StreamError
 */

/**
 * Keep a Sentra SSE stream open: resume after drops from the last event id (EventSource's Last-Event-ID, or
 * `?after=` when it has to start over), back off between failed attempts, and stop when the stream is over.
 *
 * @param {string} path  The stream's path with its query, e.g. `/api/agents/run-1/logs/stream?level=INFO`.
 * @param {object} [options]
 * @param {string} [options.baseUrl]   Sentra's URL when the page is served elsewhere ("" = this origin).
 * @param {string} [options.token]     A token to buy stream tickets with (needs `ticketAgent`).
 * @param {string} [options.ticketAgent] The agent the tickets are for.
 * @param {string|number} [options.after] Start after this event id (a seq, or a multi-agent cursor).
 * @param {boolean} [options.wait] Wait for an agent that does not exist yet (`?wait=1`) instead of failing
 *        with 404: the stream stays open, and the agent's lines flow from its first one once it is created.
 * @param {(data: object) => boolean} [options.isFinal] True for the event after which nothing follows;
 *        default: `data.final === true` without `data.agent` (a single agent's last event).
 * @param {() => void} [options.onOpen]            Connected (again).
 * @param {(data: object, id: string) => void} [options.onEvent] Each event's parsed data.
 * @param {() => void} [options.onReconnecting]    The connection dropped; a reconnect is under way.
 * @param {(data: object|null) => void} [options.onEnd] The stream is over (the final event, or none).
 * @param {(error: StreamError) => void} [options.onError] A connection error; `error.fatal` when it gives up.
 * @returns {EventStream}
 */
export function openEventStream(path, options = {}) {
  const {
    baseUrl = "",
    token = null,
    ticketAgent = null,
    isFinal = (data) => data.final === true && !data.agent,
    onOpen,
    onEvent,
    onReconnecting,
    onEnd,
    onError,
  } = options;
  let cursor = options.after == null || options.after === "" ? null : String(options.after);
  let source = null;
  let timer = null;
  let probe = null;
  let attempt = 0;
  let state = "connecting";
  const stream = {
    close,
    get state() {
      return state;
    },
    get cursor() {
      return cursor;
    },
  };

  function url(ticket) {
    const full = new URL(path, baseUrl || pageBase());
    if (options.wait) full.searchParams.set("wait", "1");
    if (cursor !== null) full.searchParams.set("after", cursor);
    if (ticket) full.searchParams.set("token", ticket);
    return full.href;
  }

  function done(next) {
    state = next;
    clearTimeout(timer);
    if (probe) probe.abort();
    if (source) source.close();
    source = null;
  }

  function fail(message, fatal, status) {
    const error = new Error(message);
    error.fatal = fatal;
    if (status) error.status = status;
    if (fatal) done("failed");
    if (onError) onError(error);
  }

  function retryLater() {
    if (state === "closed" || state === "ended" || state === "failed") return;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt) * (0.75 + Math.random() / 2);
    attempt += 1;
    state = "reconnecting";
    timer = setTimeout(start, delay);
  }

  async function start() {
    let ticket = null;
    if (token) {
      try {
        ticket = await buyTicket();
      } catch (error) {
        if (error.fatal) return fail(error.message, true, error.status);
        fail(`cannot reach Sentra: ${error.message}`, false);
        return retryLater();
      }
    }
    if (state === "closed" || state === "ended" || state === "failed") return;
    const es = new EventSource(url(ticket), { withCredentials: Boolean(baseUrl) && !token });
    source = es;
    es.onopen = () => {
      attempt = 0;
      state = "open";
      if (onOpen) onOpen();
    };
    es.onmessage = (event) => {
      if (event.lastEventId) cursor = event.lastEventId;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (onEvent) onEvent(data, event.lastEventId);
      if (source === es && isFinal(data)) {
        done("ended");
        if (onEnd) onEnd(data);
      }
    };
    es.onerror = () => {
      if (source !== es) return;
      if (es.readyState === EventSource.CONNECTING && !token) {
        // The browser reconnects by itself, sending Last-Event-ID.
        state = "reconnecting";
        if (onReconnecting) onReconnecting();
        fail("the connection dropped; reconnecting", false);
        return;
      }
      es.close();
      source = null;
      state = "reconnecting";
      if (onReconnecting) onReconnecting();
      if (token) {
        // A ticket is short-lived: each attempt buys a fresh one.
        retryLater();
      } else {
        whyClosed();
      }
    };
  }

  async function buyTicket() {
    const response = await fetch(new URL("/api/stream-tickets", baseUrl || pageBase()), {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ agent: ticketAgent }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error ? body.error.message : `HTTP ${response.status}`);
      error.fatal = response.status >= 400 && response.status < 500 && response.status !== 429;
      error.status = response.status;
      throw error;
    }
    return body.ticket;
  }

  async function whyClosed() {
    // EventSource gives up without saying why (a 204 that means "nothing more", a 401, a 503…): ask once.
    probe = new AbortController();
    let response;
    try {
      response = await fetch(url(null), {
        headers: { Accept: "text/event-stream" },
        credentials: baseUrl ? "include" : "same-origin",
        signal: probe.signal,
      });
    } catch {
      if (state === "reconnecting") retryLater();
      return;
    } finally {
      probe = null;
    }
    if (state !== "reconnecting") {
      if (response.body) response.body.cancel().catch(() => {});
      return;
    }
    if (response.status === 204) {
      done("ended");
      if (onEnd) onEnd(null);
    } else if (response.ok) {
      response.body.cancel().catch(() => {});
      retryLater();
    } else if ([400, 401, 403, 404].includes(response.status)) {
      const body = await response.json().catch(() => ({}));
      fail(body.error ? body.error.message : `HTTP ${response.status}`, true, response.status);
    } else {
      retryLater();
    }
  }

  function close() {
    if (state !== "ended" && state !== "failed") done("closed");
  }

  start();
  return stream;
}

/** The address relative paths resolve against: the page's, or the worker script's in a worker. */
function pageBase() {
  return globalThis.document ? document.baseURI : globalThis.location.href;
}

/**
 * @typedef {object} AgentLogs
 * @property {string} logs           The kept lines' messages, each ending in "\n" (as seed 000's hook).
 * @property {LogLine[]} lines       The kept lines, oldest first (a new array after every change).
 * @property {string|null} status    running, completed or failed; null until the first event.
 * @property {boolean} isConnected   The stream is open.
 * @property {boolean} isConnecting  Connecting for the first time, or reconnecting.
 * @property {boolean} isFinished    The agent finished and every line has arrived.
 * @property {Error|null} error      The last error, cleared when connected again.
 * @property {() => void} connect    Open the stream (again), resuming after the last line.
 * @property {() => void} disconnect Close the stream and stop reconnecting.
 */

/**
 * Follow one agent's log: the equivalent of seed 000's `useAgentLogs(agentId, options)`.
 *
 * The returned object is updated in place; `onChange` is called after every change (a UI copies it there).
 * Lines are deduplicated by seq, so a reconnect never shows one twice, and at most `maxLines` are kept.
 *
 * @param {string} agentId
 * @param {object} [options]
 * @param {boolean} [options.autoConnect=true] Connect at once.
 * @param {() => void} [options.onConnect]  Connected.
 * @param {() => void} [options.onClose]    The stream ended (agent finished) or disconnect() was called.
 * @param {(error: Error) => void} [options.onError] A connection error (reconnecting unless `error.fatal`).
 * @param {(data: object) => void} [options.onUpdate] Each event: {logs, status, lines, final?, reason?}.
 * @param {(state: AgentLogs) => void} [options.onChange] After any change of the state.
 * @param {string} [options.baseUrl]  Sentra's URL if the page is served from elsewhere.
 * @param {string} [options.token]    A token (sent in headers only, to buy stream tickets).
 * @param {number} [options.maxLines] Lines kept (oldest dropped first); default DEFAULT_MAX_LINES.
 * @param {number} [options.tail]     Start with only the last N lines instead of the whole history.
 * @param {string} [options.level]    Minimum level, filtered by the server.
 * @param {string} [options.q]        Only lines matching these words, filtered by the server (README: Search).
 * @param {boolean} [options.wait]    Start watching before the agent exists: wait for it instead of failing.
 * @returns {AgentLogs}
 */
export function connect(agentId, options = {}) {
  const { autoConnect = true, onConnect, onClose, onError, onUpdate, onChange } = options;
  const maxLines = options.maxLines || DEFAULT_MAX_LINES;
  let stream = null;
  let lastSeq = 0;
  const state = {
    logs: "",
    lines: [],
    status: null,
    isConnected: false,
    isConnecting: false,
    isFinished: false,
    error: null,
    connect: open,
    disconnect,
  };
  const changed = () => onChange && onChange(state);

  function path() {
    const query = new URLSearchParams();
    if (options.level) query.set("level", options.level);
    if (options.q) query.set("q", options.q);
    if (options.tail != null && lastSeq === 0) query.set("tail", String(options.tail));
    const text = query.toString();
    return `/api/agents/${encodeURIComponent(agentId)}/logs/stream${text ? `?${text}` : ""}`;
  }

  function keep(fresh) {
    let lines = state.lines.concat(fresh);
    let logs = state.logs + fresh.map((line) => `${line.message}\n`).join("");
    if (lines.length > maxLines) {
      const dropped = lines.slice(0, lines.length - maxLines);
      lines = lines.slice(dropped.length);
      logs = logs.slice(dropped.reduce((size, line) => size + line.message.length + 1, 0));
    }
    state.lines = lines;
    state.logs = logs;
  }

  function open() {
    if (stream) return;
    state.isConnecting = true;
    state.isFinished = false;
    changed();
    stream = openEventStream(path(), {
      baseUrl: options.baseUrl,
      token: options.token,
      ticketAgent: agentId,
      after: lastSeq || null,
      wait: options.wait,
      onOpen() {
        Object.assign(state, { isConnected: true, isConnecting: false, error: null });
        changed();
        if (onConnect) onConnect();
      },
      onReconnecting() {
        Object.assign(state, { isConnected: false, isConnecting: true });
        changed();
      },
      onEvent(data, id) {
        const fresh = (data.lines || []).filter((line) => line.seq > lastSeq);
        if (fresh.length) keep(fresh);
        // The id is the agent's last seq, also past lines the server filtered out.
        lastSeq = Math.max(lastSeq, Number(id) || 0, ...fresh.map((line) => line.seq));
        if (data.status) state.status = data.status;
        if (onUpdate) onUpdate(data);
        changed();
      },
      onEnd(data) {
        stream = null;
        Object.assign(state, { isConnected: false, isConnecting: false, isFinished: true });
        if (data && data.status) state.status = data.status;
        changed();
        if (onClose) onClose();
      },
      onError(error) {
        state.error = error;
        if (error.fatal) {
          stream = null;
          Object.assign(state, { isConnected: false, isConnecting: false });
        }
        changed();
        if (onError) onError(error);
      },
    });
  }

  function disconnect() {
    if (!stream) return;
    stream.close();
    stream = null;
    Object.assign(state, { isConnected: false, isConnecting: false });
    changed();
    if (onClose) onClose();
  }

  if (autoConnect) open();
  return state;
}
