/**
 * A tab's side of the hub (hub.js): the live data of its page, over the SharedWorker live-worker.js that every
 * viewer tab of the browser shares, or over a hub of its own where SharedWorker or module workers are missing.
 *
 * Over HTTP/1.1 a browser opens at most six connections to a host; a stream per tab would leave the seventh tab
 * blank. Through the worker, any number of tabs hold two: one lines stream and one agents feed.
 *
 * @module live
 */

import { Hub } from "./hub.js";

/** The worker's script. */
const WORKER = "/live-worker.js";
/** Part of the worker's name: a viewer that talks to its hub differently must not join an older one. */
const PROTOCOL = 1;

/**
 * @typedef {object} LinesHandlers
 * @property {(lines: object[]) => void} onLines  New lines, each the next one of its agent for this view.
 * @property {(end: {agent: string, status: string|null, reason: string|null}) => void} onFinal  An agent ended.
 * @property {(agent: object) => void} [onJoined]  An agent that came to carry the view's labels.
 * @property {(state: string, detail?: string, stream?: string) => void} onState  open, reconnecting, failed,
 *           stopped (the lines stream) or a state of the agents feed (stream "feed").
 */

/** One tab's connection to the hub, and the subscriptions of its page. */
class LiveClient {
  constructor(session) {
    this.subs = new Map();
    this.nextId = 1;
    this.fellBack = false;
    this.port = this.connect(session);
    addEventListener("pagehide", () => this.port.postMessage({ op: "bye" }));
    // A page brought back from the back/forward cache left the hub when it was hidden: start it afresh.
    addEventListener("pageshow", (event) => event.persisted && location.reload());
  }

  connect(session) {
    if (typeof SharedWorker === "function") {
      try {
        const worker = new SharedWorker(WORKER, { type: "module", name: `sentra-live-${PROTOCOL}:${session}` });
        // Fired when the worker cannot start (no module workers here, say): this tab runs a hub of its own.
        worker.addEventListener("error", () => this.fallBack());
        this.listen(worker.port);
        holdLifeLock(worker.port);
        return worker.port;
      } catch {
        // SharedWorker exists but refused (a blocked worker-src, a sandbox): run the hub here.
      }
    }
    return this.inPage();
  }

  inPage() {
    const channel = new MessageChannel();
    new Hub().attach(channel.port2);
    this.listen(channel.port1);
    return channel.port1;
  }

  fallBack() {
    if (this.fellBack) return;
    this.fellBack = true;
    this.port.close();
    this.port = this.inPage();
    for (const sub of this.subs.values()) this.port.postMessage(sub.request());
  }

  listen(port) {
    port.onmessage = (event) => {
      const sub = this.subs.get(event.data.sub);
      if (sub) sub.receive(event.data);
    };
  }

  subscribe(sub) {
    const id = this.nextId++;
    sub.id = id;
    this.subs.set(id, sub);
    this.port.postMessage(sub.request());
    return {
      close: () => {
        if (this.subs.delete(id)) this.port.postMessage({ op: "close", sub: id });
      },
    };
  }

  /**
   * Follow agents' lines: each after its seq (the last one the page has), and with `labels` every agent that comes
   * to carry them and is not among `known`.
   * @param {{agents: Array<[string, number]>, known?: string[], labels?: Record<string, string>|null}} what
   * @param {LinesHandlers} handlers
   * @returns {{close: () => void}}
   */
  followLines({ agents, known = [], labels = null }, handlers) {
    const cursors = new Map(agents);
    const seen = new Set([...known, ...cursors.keys()]);
    const sub = {
      // The request as it stands now, so a hub that takes over resumes where this one stopped.
      request: () => ({ op: "lines", sub: sub.id, agents: [...cursors], known: [...seen], labels }),
      receive: (message) => {
        if (message.type === "lines") {
          for (const line of message.lines) cursors.set(line.agent, line.seq);
          handlers.onLines(message.lines);
        } else if (message.type === "final") {
          cursors.delete(message.agent);
          handlers.onFinal(message);
        } else if (message.type === "joined") {
          seen.add(message.agent.id);
          cursors.set(message.agent.id, 0);
          if (handlers.onJoined) handlers.onJoined(message.agent);
        } else if (message.type === "state") {
          handlers.onState(message.state, message.detail, message.stream || "lines");
        }
      },
    };
    return this.subscribe(sub);
  }

  /**
   * Watch the agents feed: `onEvent` gets its events (a snapshot first), `onState` open, reconnecting, ended or
   * failed with a detail.
   * @param {{onEvent: (data: object) => void, onState: (state: string, detail?: string) => void}} handlers
   * @returns {{close: () => void}}
   */
  followAgents(handlers) {
    const sub = {
      request: () => ({ op: "feed", sub: sub.id }),
      receive: (message) => {
        if (message.type === "feed") handlers.onEvent(message.data);
        else if (message.type === "state") handlers.onState(message.state, message.detail);
      },
    };
    return this.subscribe(sub);
  }
}

/** Hold a Web Lock for the tab's whole life and tell the hub its name: the hub learns when the tab is gone. */
function holdLifeLock(port) {
  if (!navigator.locks) return; // only in secure contexts (https, localhost); "bye" at pagehide still tells
  const lock = `sentra-live-tab:${Date.now().toString(36)}:${Math.random().toString(36).slice(2)}`;
  navigator.locks.request(lock, () => {
    port.postMessage({ op: "hello", lock });
    return new Promise(() => {});
  });
}

/**
 * The page's connection to the live data, shared with the browser's other viewer tabs of the same user.
 * @param {string} session  Who is signed in: tabs of another user get a hub of their own.
 * @returns {LiveClient}
 */
export function openLive(session) {
  return new LiveClient(session);
}
