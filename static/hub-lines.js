/**
 * The one lines stream that every viewer tab of a browser shares: `GET /api/streams?agent=A&agent=B&wait=1` over
 * the union of the agents the tabs follow, reopened (after=`A=5,B=7`) whenever that union changes.
 *
 * Each subscription (a tab's log view) holds a cursor per agent: the last seq it has been given. A line goes to
 * a subscription only when it is the very next one for it (the connection's previous line of that agent is at
 * or before the cursor), so a tab is never given a line twice or with a gap. A tab that joins behind the
 * connection (it read its history up to seq 5 while the stream is at 9) makes the stream reopen from the lowest
 * cursor; the replayed lines go only to those that lack them. Nothing is filtered by the server, so every tab
 * applies its own level and search filters to the same lines.
 *
 * @module hub-lines
 */

import { openEventStream } from "./sentra.js";

/** The multi-agent stream. */
const STREAMS = "/api/streams";
/** Changes made within this long (tabs opening together) cost one reconnect. */
const REOPEN_DELAY_MS = 30;

/**
 * @typedef {object} LinesSub
 * @property {Map<string, number>} cursors  Agent id → the last seq this subscription was given.
 * @property {(message: object) => void} post  Send a message to the subscription's tab.
 */

/** The shared stream and the subscriptions it serves. */
export class SharedLines {
  constructor() {
    /** @type {Set<LinesSub>} */
    this.subs = new Set();
    this.stream = null;
    // The open connection: the agents it carries and the last seq it delivered of each.
    this.conn = null;
    this.timer = 0;
  }

  /**
   * Serve a subscription (its cursors set); it is told "open" at once when the stream already carries it.
   * @param {LinesSub} sub
   */
  add(sub) {
    this.subs.add(sub);
    if (this.carries(sub) && this.stream && this.stream.state === "open") sub.post({ type: "state", state: "open" });
    this.schedule();
  }

  /** @param {LinesSub} sub */
  remove(sub) {
    if (this.subs.delete(sub)) this.schedule();
  }

  /**
   * Follow one more agent for a subscription, after `seq`.
   * @param {LinesSub} sub
   * @param {string} agentId
   * @param {number} seq
   */
  follow(sub, agentId, seq) {
    sub.cursors.set(agentId, seq);
    this.schedule();
  }

  schedule() {
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.sync();
      }, REOPEN_DELAY_MS);
    }
  }

  /** Agent id → the lowest cursor any subscription holds for it. */
  wanted() {
    const want = new Map();
    for (const sub of this.subs) {
      for (const [id, seq] of sub.cursors) want.set(id, Math.min(seq, want.has(id) ? want.get(id) : seq));
    }
    return want;
  }

  /** Does the open connection carry every agent of `sub`, with nothing the sub lacks already passed? */
  carries(sub) {
    if (!this.conn) return false;
    for (const [id, seq] of sub.cursors) {
      const last = this.conn.last.get(id);
      if (last === undefined || last > seq) return false;
    }
    return true;
  }

  /** Reopen the stream if the agents wanted changed or a subscription is behind; close it if none is wanted. */
  sync() {
    const want = this.wanted();
    if (!want.size) {
      this.close();
      return;
    }
    const same = this.conn && this.conn.agents.size === want.size && [...want.keys()].every((id) => this.conn.agents.has(id));
    if (same && [...this.subs].every((sub) => this.carries(sub))) return;
    this.open(want);
  }

  close() {
    if (this.stream) this.stream.close();
    this.stream = null;
    this.conn = null;
  }

  open(want) {
    this.close();
    const conn = { agents: new Set(want.keys()), last: new Map(want) };
    this.conn = conn;
    const ids = [...want.keys()].sort();
    const path = `${STREAMS}?${ids.map((id) => `agent=${encodeURIComponent(id)}`).join("&")}`;
    const live = () => this.conn === conn;
    this.stream = openEventStream(path, {
      after: ids.map((id) => `${id}=${want.get(id)}`).join(","),
      wait: true,
      // The agents end one by one (final events naming them); the stream is over when this hub says so.
      isFinal: () => false,
      onOpen: () => live() && this.broadcast({ type: "state", state: "open" }, (sub) => this.carries(sub)),
      onReconnecting: () => live() && this.broadcast({ type: "state", state: "reconnecting" }),
      onEvent: (data) => live() && this.receive(data),
      onEnd: () => live() && this.ended(),
      onError: (error) => {
        if (live() && error.fatal) {
          this.conn = null;
          this.stream = null;
          this.broadcast({ type: "state", state: "failed", detail: error.message });
        }
      },
    });
  }

  broadcast(message, only = () => true) {
    for (const sub of this.subs) if (only(sub)) sub.post(message);
  }

  receive(data) {
    if (data.lines && data.lines.length) this.deliver(data.lines);
    if (data.final === true && data.agent) this.finish(data.agent, { status: data.status, reason: data.reason || null });
    if (data.final === false && data.reason) {
      // The token expired or was revoked: the server ends the stream and a reconnect would be refused.
      this.close();
      this.broadcast({ type: "state", state: "stopped", detail: data.reason });
    }
  }

  /** Hand each subscription the lines that come next for it. */
  deliver(lines) {
    const batches = new Map();
    let behind = false;
    for (const line of lines) {
      const last = this.conn.last.get(line.agent);
      if (last === undefined || line.seq <= last) continue;
      for (const sub of this.subs) {
        const seq = sub.cursors.get(line.agent);
        if (seq === undefined || line.seq <= seq) continue;
        if (seq < last) {
          behind = true; // it lacks lines this connection passed before it joined: reopen from its cursor
          continue;
        }
        sub.cursors.set(line.agent, line.seq);
        if (!batches.has(sub)) batches.set(sub, []);
        batches.get(sub).push(line);
      }
      this.conn.last.set(line.agent, line.seq);
    }
    for (const [sub, batch] of batches) sub.post({ type: "lines", lines: batch });
    if (behind) this.schedule();
  }

  /** An agent ended: tell every subscription that has all of its lines, and stop following it for them. */
  finish(agentId, end) {
    const last = this.conn.last.get(agentId);
    for (const sub of this.subs) {
      const seq = sub.cursors.get(agentId);
      if (seq === undefined || (last !== undefined && seq < last)) continue;
      sub.cursors.delete(agentId);
      sub.post({ type: "final", agent: agentId, ...end });
    }
    this.schedule();
  }

  /** The server answered 204: every agent of the connection had ended at the cursors asked for. */
  ended() {
    const { last } = this.conn;
    this.conn = null;
    this.stream = null;
    for (const [id, seq] of last) {
      for (const sub of this.subs) {
        // One that joined behind the cursors still lacks lines: the next connection replays them.
        if (sub.cursors.has(id) && sub.cursors.get(id) >= seq) {
          sub.cursors.delete(id);
          sub.post({ type: "final", agent: id, status: null, reason: null });
        }
      }
    }
    this.schedule();
  }
}
