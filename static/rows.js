/**
 * Log lines in the viewer: the line record, filtering, ordering, and the DOM of one row.
 *
 * @module rows
 */

import { renderAnsi, stripAnsi } from "./ansi.js";
import { attachmentsHeight, renderAttachments } from "./attachments.js";
import { matchesTerms } from "./terms.js";

/** Sentra's levels, lowest first. */
export const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
/** Pixel height of one text line in a row (matches --row-line in style.css). */
export const ROW_LINE_PX = 20;
/** Vertical padding of a row (matches .row padding in style.css). */
const ROW_PADDING_PX = 4;
/** Width of a character of the log font, for estimates before a row is measured. */
const CHAR_PX = 7.8;
/** Characters taken by the time, level and source columns and gaps; the agent column adds AGENT_COLUMN. */
const FIXED_COLUMNS_CH = 40;
const AGENT_COLUMN_CH = 15;
/** Below this width rows stack: the message goes under time, level and source. */
export const NARROW_PX = 640;
/** Characters of a collapsed fields preview. */
const FIELDS_PREVIEW = 120;
/** Number of agent tag colours in style.css (.tag-0 … .tag-7). */
const TAG_COLOURS = 8;

const LEVEL_INDEX = Object.fromEntries(LEVELS.map((name, index) => [name, index]));

/**
 * Turn a line from the API into the viewer's record (adds level index and key, in place).
 * @param {object} line  {agent, seq, ts, level, message, source, fields}
 * @returns {object}
 */
export function makeLine(line) {
  line.lv = LEVEL_INDEX[line.level] ?? 1;
  line.key = `${line.agent}:${line.seq}`;
  return line;
}

/** Lines in time order; a tie goes by agent, then seq. */
export function compareLines(a, b) {
  return a.ts - b.ts || (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0) || a.seq - b.seq;
}

/**
 * Does the line pass the filters?
 * @param {object} line
 * @param {{level: number, terms: object[], source: string, since?: number|null, until?: number|null}} filter
 *   terms from terms.js's parseQuery; since and until (epoch seconds) a time range, if any.
 * @returns {boolean}
 */
export function passes(line, filter) {
  return (
    line.lv >= filter.level &&
    (!filter.source || line.source === filter.source) &&
    (filter.since == null || line.ts >= filter.since) &&
    (filter.until == null || line.ts <= filter.until) &&
    matchesTerms(filter.terms, line)
  );
}

/**
 * Would the server's `level` and `q` filters keep the line? Its rule (LineQuery.matches, by terms.js): the level
 * at least `level`, and every term of `q` in the raw message or a field value. Live lines come unfiltered (every
 * tab shares one stream), so a view loaded with those filters applies them to its live lines itself.
 * @param {object} line
 * @param {{level: number, terms: object[]}} loaded  level as an index into LEVELS; terms of the loaded `q`.
 * @returns {boolean}
 */
export function serverKeeps(line, { level, terms }) {
  return line.lv >= level && matchesTerms(terms, line);
}

/**
 * Local time with milliseconds: 14:03:07.250.
 * @param {number} ts  Epoch seconds.
 * @returns {string}
 */
export function formatTime(ts) {
  const date = new Date(ts * 1000);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/**
 * The line as plain text, for copying and client-side downloads.
 * @param {object} line
 * @returns {string}
 */
export function lineText(line) {
  const stamp = new Date(line.ts * 1000).toISOString();
  const source = line.source ? ` [${line.source}]` : "";
  const fields = line.fields && Object.keys(line.fields).length ? ` ${JSON.stringify(line.fields)}` : "";
  return `${stamp} ${line.level}${source} ${stripAnsi(line.message)}${fields}`;
}

/**
 * A first guess of a row's height, before it is rendered and measured.
 * @param {object} line
 * @param {number} width  The list's width in pixels.
 * @param {boolean} multi Rows carry an agent column.
 * @returns {number}
 */
export function estimateHeight(line, width, multi) {
  const narrow = width < NARROW_PX;
  const fixed = narrow ? 4 : FIXED_COLUMNS_CH + (multi ? AGENT_COLUMN_CH : 0);
  const perLine = Math.max(16, Math.floor(width / CHAR_PX) - fixed);
  if (line.breaks === undefined) line.breaks = line.message.split("\n").length;
  const wrapped = Math.max(line.breaks, Math.ceil(line.message.length / perLine));
  let lines = wrapped + (narrow ? 1 : 0);
  if (line.fields && Object.keys(line.fields).length) {
    lines += line.open ? JSON.stringify(line.fields, null, 2).split("\n").length + 1 : 1;
  }
  return ROW_PADDING_PX + lines * ROW_LINE_PX + attachmentsHeight(line);
}

/**
 * A stable colour class for an agent's tag.
 * @param {string} agentId
 * @returns {string}  "tag-0" … "tag-7"
 */
export function tagClass(agentId) {
  let hash = 0;
  for (let i = 0; i < agentId.length; i += 1) hash = (hash * 31 + agentId.charCodeAt(i)) >>> 0;
  return `tag-${hash % TAG_COLOURS}`;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function button(className, label, text) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.title = label;
  element.setAttribute("aria-label", label);
  element.textContent = text;
  return element;
}

/**
 * Fill a fields block: a one-line preview button, and when open the whole object, pretty-printed.
 * @param {HTMLElement} block
 * @param {object} line
 */
export function renderFields(block, line) {
  block.textContent = "";
  const toggle = button("fields-toggle", line.open ? "Collapse fields" : "Expand fields", "");
  toggle.setAttribute("aria-expanded", String(Boolean(line.open)));
  const count = Object.keys(line.fields).length;
  toggle.append(span("caret", line.open ? "▾" : "▸"), span("fields-count", `${count} field${count === 1 ? "" : "s"}`));
  if (!line.open) {
    const preview = JSON.stringify(line.fields);
    toggle.append(span("fields-preview", preview.length > FIELDS_PREVIEW ? `${preview.slice(0, FIELDS_PREVIEW)}…` : preview));
  }
  block.appendChild(toggle);
  if (line.open) {
    const pre = document.createElement("pre");
    pre.className = "fields-json";
    pre.textContent = JSON.stringify(line.fields, null, 2);
    block.appendChild(pre);
  }
}

/**
 * The row of one line: time (a permalink), level, agent tag, source, message with ANSI colours and search
 * matches highlighted, its fields collapsed, and copy buttons.
 * @param {object} line
 * @param {{highlight: RegExp[], multi: boolean, agentName: (id: string) => string, permalink: (line: object) => string}} view
 *        highlight: what the search matches (terms.js).
 * @returns {HTMLElement}
 */
export function renderRow(line, view) {
  const row = document.createElement("div");
  row.className = `row lv-${line.lv}`;
  row.dataset.key = line.key;
  const time = document.createElement("a");
  time.className = "time";
  time.href = view.permalink(line);
  time.title = `${new Date(line.ts * 1000).toISOString()} · #${line.seq}`;
  time.textContent = formatTime(line.ts);
  row.append(time, span("level", line.level));
  if (view.multi) {
    const tag = span(`agent ${tagClass(line.agent)}`, view.agentName(line.agent));
    tag.title = line.agent;
    row.appendChild(tag);
  }
  const source = span("source", line.source);
  source.title = line.source;
  row.appendChild(source);
  const body = document.createElement("div");
  body.className = "body";
  const message = document.createElement("div");
  message.className = "msg";
  message.appendChild(renderAnsi(line.message, view.highlight));
  body.appendChild(message);
  if (line.fields && Object.keys(line.fields).length) {
    const block = document.createElement("div");
    block.className = "fields";
    renderFields(block, line);
    body.appendChild(block);
  }
  const files = renderAttachments(line);
  if (files) body.appendChild(files);
  row.appendChild(body);
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.append(button("copy-line", "Copy line", "Copy"), button("copy-link", "Copy link to this line", "Link"));
  row.appendChild(actions);
  return row;
}
