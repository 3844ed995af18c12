/**
 * The hub every viewer tab of a browser talks to (in the SharedWorker live-worker.js, or in the page itself where
 * there is none): one lines stream and one agents feed for all of them, whatever the tabs follow.
 *
 * A tab sends, over its MessagePort:
 *   {op: "lines", sub, agents: [[id, seq], …], known: [id, …], labels: {key: value} | null}  follow agents after
 *        those seqs; with labels, also every agent that comes to carry them and is not among `known`;
 *   {op: "feed", sub}    watch the agents feed;
 *   {op: "close", sub}   stop one of those;
 *   {op: "hello", lock}  the name of a Web Lock the tab holds while it lives (so a tab that dies is noticed);
 *   {op: "bye"}          the tab is going away.
 * It is sent {sub, type, …}: "lines" {lines}, "final" {agent, status, reason}, "joined" {agent}, "feed" {data} and
 * "state" {state, detail, stream}.
 *
 * @module hub
 */

import { SharedFeed } from "./hub-feed.js";
import { SharedLines } from "./hub-lines.js";

/**
 * Does the agent carry every wanted label, with the wanted value (the server's label rule)?
 * @param {object} agent
 * @param {Record<string, string>} labels
 * @returns {boolean}
 */
export function hasLabels(agent, labels) {
  return Object.entries(labels).every(([key, value]) => (agent.labels || {})[key] === value);
}

/** Every tab's subscriptions, served by one SharedLines and one SharedFeed. */
export class Hub {
  constructor() {
    this.lines = new SharedLines();
    this.feed = new SharedFeed();
    /** @type {Map<MessagePort, Map<number, {lines?: object, watcher?: object}>>} */
    this.tabs = new Map();
  }

  /**
   * Serve the tab at the other end of `port`.
   * @param {MessagePort} port
   */
  attach(port) {
    this.tabs.set(port, new Map());
    port.onmessage = (event) => this.receive(port, event.data);
  }

  /** Forget a tab and everything it followed. */
  detach(port) {
    const subs = this.tabs.get(port);
    if (!subs) return;
    this.tabs.delete(port);
    for (const id of [...subs.keys()]) this.stop(subs, id);
    port.close();
  }

  receive(port, message) {
    const subs = this.tabs.get(port);
    if (!subs || !message) return;
    const post = (data) => port.postMessage({ sub: message.sub, ...data });
    if (message.op === "lines") {
      this.stop(subs, message.sub);
      subs.set(message.sub, this.followLines(message, post));
    } else if (message.op === "feed") {
      this.stop(subs, message.sub);
      const watcher = { event: (data) => post({ type: "feed", data }), state: (state, detail) => post({ type: "state", state, detail }) };
      subs.set(message.sub, { watcher });
      this.feed.add(watcher);
    } else if (message.op === "close") {
      this.stop(subs, message.sub);
    } else if (message.op === "hello" && globalThis.navigator && navigator.locks && message.lock) {
      // Granted only once the tab, which holds it for its whole life, has gone (closed, crashed, navigated).
      navigator.locks.request(message.lock, () => this.detach(port));
    } else if (message.op === "bye") {
      this.detach(port);
    }
  }

  followLines(message, post) {
    const sub = { cursors: new Map(message.agents), post };
    const entry = { lines: sub };
    this.lines.add(sub);
    if (message.labels) {
      const seen = new Set([...(message.known || []), ...sub.cursors.keys()]);
      entry.watcher = {
        event: (data) => {
          if (data.type !== "snapshot" && data.type !== "update") return;
          for (const agent of data.agents) {
            if (seen.has(agent.id) || !hasLabels(agent, message.labels)) continue;
            // An agent that came to carry the label: all of its lines, from the first.
            seen.add(agent.id);
            post({ type: "joined", agent });
            this.lines.follow(sub, agent.id, 0);
          }
        },
        state: (state, detail) => post({ type: "state", stream: "feed", state, detail }),
      };
      this.feed.add(entry.watcher);
    }
    return entry;
  }

  stop(subs, id) {
    const entry = subs.get(id);
    if (!entry) return;
    subs.delete(id);
    if (entry.lines) this.lines.remove(entry.lines);
    if (entry.watcher) this.feed.remove(entry.watcher);
  }
}
