/**
 * The one agents feed (`GET /api/agent-events`) that every viewer tab of a browser shares: the agents pages show
 * it, and label views learn from it which agents join their label. It is open while anyone watches it; a
 * watcher that comes later is given the agents known so far as a snapshot, without a connection of its own.
 *
 * @module hub-feed
 */

import { openEventStream } from "./sentra.js";

/** The live feed of the caller's agents. */
const FEED = "/api/agent-events";

/**
 * @typedef {object} FeedWatcher
 * @property {(data: object) => void} event  A feed event: snapshot, update, removed or end.
 * @property {(state: string, detail?: string) => void} state  open, reconnecting, ended or failed.
 */

/** The shared feed, the agents it has told of, and who watches it. */
export class SharedFeed {
  constructor() {
    /** @type {Set<FeedWatcher>} */
    this.watchers = new Set();
    /** @type {Map<string, object>} */
    this.agents = new Map();
    this.stream = null;
    this.ready = false;
    this.state = "connecting";
    this.detail = undefined;
  }

  /** @param {FeedWatcher} watcher */
  add(watcher) {
    this.watchers.add(watcher);
    if (!this.stream || ["ended", "failed"].includes(this.stream.state)) {
      this.open();
      return;
    }
    if (this.ready) watcher.event({ type: "snapshot", agents: [...this.agents.values()] });
    watcher.state(this.state, this.detail);
  }

  /** @param {FeedWatcher} watcher */
  remove(watcher) {
    if (!this.watchers.delete(watcher) || this.watchers.size) return;
    if (this.stream) this.stream.close();
    this.stream = null;
    this.ready = false;
    this.agents.clear();
  }

  open() {
    if (this.stream) this.stream.close();
    this.ready = false;
    const stream = openEventStream(FEED, {
      isFinal: (data) => data.type === "end",
      onOpen: () => this.setState(stream, "open"),
      onReconnecting: () => this.setState(stream, "reconnecting"),
      onEvent: (data) => this.stream === stream && this.receive(data),
      onEnd: (data) => this.setState(stream, "ended", data && data.reason),
      onError: (error) => error.fatal && this.setState(stream, "failed", error.message),
    });
    this.stream = stream;
  }

  setState(stream, state, detail) {
    if (this.stream !== stream) return;
    this.state = state;
    this.detail = detail;
    for (const watcher of this.watchers) watcher.state(state, detail);
  }

  receive(data) {
    if (data.type === "snapshot") {
      this.agents.clear();
      this.ready = true;
    }
    for (const agent of data.agents || []) {
      if (data.type === "removed") this.agents.delete(agent.id);
      else this.agents.set(agent.id, agent);
    }
    for (const watcher of this.watchers) watcher.event(data);
  }
}
