/**
 * The log page's state, without its DOM: the route in the address, lines in time order, and what the connection
 * state and the footer say.
 *
 * @module logstate
 */

import { LEVELS, compareLines } from "./rows.js";

/** Statuses after which an agent has no more lines. */
export const FINISHED = ["completed", "failed"];

/**
 * The view's route and filters, read from the address bar.
 * @param {URLSearchParams} params
 * @returns {{agents: string[], labels: string[], level: number, q: string, source: string}}
 */
export function readRoute(params) {
  const level = LEVELS.indexOf((params.get("level") || "").toUpperCase());
  return {
    agents: params.getAll("agent"),
    labels: params.getAll("label"),
    level: Math.max(0, level),
    q: params.get("q") || "",
    source: params.get("source") || "",
    // A time range picked on the volume chart (epoch seconds), null when none.
    since: timeParam(params.get("since")),
    until: timeParam(params.get("until")),
  };
}

function timeParam(value) {
  const number = value === null ? NaN : Number(value);
  return Number.isFinite(number) ? number : null;
}

/** `label=key=value` arguments as {key: value}, as the server reads them. */
export function labelObject(labels) {
  const wanted = {};
  for (const label of labels) {
    const at = label.indexOf("=");
    wanted[label.slice(0, at)] = label.slice(at + 1);
  }
  return wanted;
}

/** Merge two arrays sorted by compareLines. */
export function mergeSorted(a, b) {
  if (!a.length) return b;
  if (!b.length) return a;
  const out = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = compareLines(a[i], b[j]) <= 0 ? a[i++] : b[j++];
  while (i < a.length) out[k++] = a[i++];
  while (j < b.length) out[k++] = b[j++];
  return out;
}

/** Index of the first line not before `line` in a sorted array. */
export function lowerBound(lines, line) {
  let lo = 0;
  let hi = lines.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareLines(lines[mid], line) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * What the connection state says, from what the live data said last.
 * @param {object} live
 * @param {{state: string, detail?: string}} live.lines  The lines stream: connecting, open, reconnecting, failed
 *        or stopped.
 * @param {{state: string, detail?: string}} live.feed  The agents feed (label views only).
 * @param {Set<string>} live.pending  Agents followed and not ended yet.
 * @param {Set<string>} live.waiting  Agents that do not exist yet.
 * @param {string} live.labels  The view's labels, "" for a view of named agents.
 * @param {number} live.agents  Agents known to the view.
 * @returns {{state: string, detail?: string, text?: string}}  state as in data-state; text replaces the usual.
 */
export function connectionState({ lines, feed, pending, waiting, labels, agents }) {
  if (lines.state === "failed") return { state: "error", detail: lines.detail };
  if (lines.state === "stopped") {
    return { state: "ended", detail: lines.detail === "token_expired" ? "signed out: the token expired" : lines.detail };
  }
  if (labels && (feed.state === "failed" || feed.state === "ended")) return { state: "ended", detail: feed.detail };
  if (!pending.size) {
    // A label view stays open: agents that come to carry the label later show up with their lines.
    if (labels && !agents) return { state: "waiting", text: `waiting for agents with ${labels}…` };
    if (labels) return { state: "finished", text: `all finished · watching for more with ${labels}` };
    return { state: "finished" };
  }
  if (lines.state === "reconnecting") return { state: "reconnecting" };
  const awaited = [...pending].filter((id) => waiting.has(id));
  if (awaited.length === pending.size) {
    return { state: "waiting", text: `waiting for agent${awaited.length === 1 ? "" : "s"} ${awaited.join(", ")}…` };
  }
  return { state: lines.state === "open" ? "connected" : "connecting" };
}

/**
 * The footer: lines loaded (and shown, with filters), and how many the run has when not all are loaded.
 * @param {{shown: number, loaded: number, narrowed: boolean, server: boolean, total: number|null, multi: boolean}} counts
 *        narrowed: a filter is set; server: the lines were loaded with the server's level or q; total: the
 *        run's line count (null while an agent is not known yet).
 * @returns {string}
 */
export function countsText({ shown, loaded, narrowed, server, total, multi }) {
  const n = (count) => count.toLocaleString();
  const text = narrowed ? `${n(shown)} of ${n(loaded)} loaded lines shown` : `${n(loaded)} line${loaded === 1 ? "" : "s"}`;
  if (total === null || total === loaded) return text;
  if (narrowed || server) return `${text} · ${n(total)} ${multi ? "in all" : "in the run"}`;
  return total > loaded ? `${n(loaded)} of ${n(total)} lines loaded` : text;
}
