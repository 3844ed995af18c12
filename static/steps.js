/**
 * Steps on the log page: consecutive lines of one step, under a header row that names it and says how many lines
 * it has, how long it took and its worst level, and that collapses and expands its lines.
 *
 * A line's step is its `fields.step` (a string; the Python client's `agent.step()` sets it), else its
 * `fields.span_id` (lines from OpenTelemetry logged inside a span). Steps are kept per agent: in a merged view an
 * agent's step goes on while other agents' lines come between its lines, and ends at that agent's next line of
 * another step (or of none).
 *
 * The headers are rows of the virtual list (virtual.js) like the lines: `rows()` turns the lines shown into the
 * list's items, a header before each step's first line and a collapsed step's lines left out, in one pass, so
 * 100,000 lines and their steps cost one array. A header sorts just before its first line (compareLines), so the
 * view finds a row's place by bisection as before. Live lines extend the last step of their agent (`append()`),
 * and its header, if on screen, is redrawn in place: the step in progress grows while the page follows it.
 *
 * @module steps
 */

import { stripAnsi } from "./ansi.js";
import { LEVELS, tagClass } from "./rows.js";

/** Height of a header row, in pixels (matches .step-row in steps.css). */
export const HEADER_PX = 28;
/** Characters of a span's first message used as its step's name. */
const NAME_CHARS = 80;
/** Hex digits of a span id shown. */
const SPAN_CHARS = 8;

/**
 * The step of a line: `{key, name, span}` (span: the OpenTelemetry span id, when that is what groups it), or null.
 * Read once per line, then kept on it.
 * @param {object} line
 * @returns {{key: string, name: string, span: string}|null}
 */
export function stepOf(line) {
  if (line.stepInfo !== undefined) return line.stepInfo;
  const fields = line.fields;
  let step = null;
  if (fields && typeof fields.step === "string" && fields.step) {
    step = { key: `step\u0000${fields.step}`, name: fields.step, span: "" };
  } else if (fields && typeof fields.span_id === "string" && fields.span_id) {
    const first = stripAnsi(line.message).split("\n", 1)[0];
    const name = first.length > NAME_CHARS ? `${first.slice(0, NAME_CHARS)}…` : first;
    step = { key: `span\u0000${fields.span_id}`, name: name || `span ${fields.span_id.slice(0, SPAN_CHARS)}`, span: fields.span_id };
  }
  line.stepInfo = step;
  return step;
}

/**
 * Is this item of the list a step's header (else it is a line)?
 * @param {object} item
 * @returns {boolean}
 */
export function isStepHeader(item) {
  return item.kind === "step";
}

/**
 * "850 ms", "12.4 s", "3 min 5 s", "2 h 10 min".
 * @param {number} seconds
 * @returns {string}
 */
export function formatDuration(seconds) {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

/**
 * @typedef {object} StepsOptions
 * @property {boolean} multi  The view merges several agents: headers carry the agent's tag.
 * @property {(id: string) => string} agentName
 * @property {() => void} onToggle  A step was collapsed or expanded: the list's items must be made again.
 */

/** The steps of one log view: which are collapsed, and the step each agent is in at the end of the view. */
export class Steps {
  /**
   * @param {HTMLElement} log  The list's scrolling element (clicks on headers are caught there).
   * @param {StepsOptions} options
   */
  constructor(log, options) {
    this.options = options;
    /** Ids of the steps the user collapsed. */
    this.collapsed = new Set();
    /** The last step of each agent, which its next line may extend. */
    this.current = new Map();
    /** The headers of the list's items, by id. */
    this.headers = new Map();
    log.addEventListener("click", (event) => {
      const toggle = event.target.closest(".step-toggle");
      if (toggle) this.toggle(toggle.closest(".step-row").vItem);
    });
  }

  /**
   * The list's items for `lines` (in view order): each step's header before its first line, collapsed steps'
   * lines left out.
   * @param {object[]} lines
   * @returns {object[]}
   */
  rows(lines) {
    this.current.clear();
    this.headers.clear();
    const out = [];
    for (const line of lines) this.place(line, out);
    return out;
  }

  /**
   * The items to add at the end of the list for new lines; steps they extend have their headers redrawn.
   * @param {object[]} lines
   * @returns {object[]}
   */
  append(lines) {
    const out = [];
    const before = new Set(this.current.values());
    const grown = new Set();
    for (const line of lines) {
      const header = this.place(line, out);
      if (before.has(header)) grown.add(header);
    }
    for (const header of grown) this.redraw(header);
    return out;
  }

  /** Put `line` (and its step's header, if it starts one) into `out`; the header of the step it is in, or null. */
  place(line, out) {
    const step = stepOf(line);
    line.stepHeader = null;
    if (!step) {
      this.current.delete(line.agent);
      out.push(line);
      return null;
    }
    let header = this.current.get(line.agent);
    if (!header || header.key !== step.key) {
      header = {
        kind: "step",
        id: `${line.agent}\u0000${step.key}\u0000${line.seq}`,
        key: step.key,
        name: step.name,
        span: step.span,
        agent: line.agent,
        // Sorted just before its first line by compareLines (time, agent, seq).
        ts: line.ts,
        seq: line.seq - 0.5,
        first: line.ts,
        last: line.ts,
        count: 0,
        worst: 0,
        failed: false,
        element: null,
      };
      this.current.set(line.agent, header);
      this.headers.set(header.id, header);
      out.push(header);
    }
    header.count += 1;
    header.last = Math.max(header.last, line.ts);
    header.worst = Math.max(header.worst, line.lv);
    if (line.fields && line.fields.step_status === "failed") header.failed = true;
    line.stepHeader = header;
    if (!this.collapsed.has(header.id)) out.push(line);
    return header;
  }

  /** Collapse a step that is open, or open it. */
  toggle(header) {
    if (!header) return;
    if (!this.collapsed.delete(header.id)) this.collapsed.add(header.id);
    this.options.onToggle();
    // The rows were made anew: the keyboard stays on this step's button.
    const row = (this.headers.get(header.id) || header).element;
    if (row && row.isConnected) row.querySelector(".step-toggle").focus();
  }

  /**
   * Open the step `line` is in, if it is collapsed (a link to the line shows it).
   * @param {object} line
   * @returns {boolean}  True if a step was opened: the list's items must be made again.
   */
  reveal(line) {
    return Boolean(line.stepHeader) && this.collapsed.delete(line.stepHeader.id);
  }

  /**
   * The row of a header: one button, with aria-expanded, that collapses and expands the step.
   * @param {object} header
   * @returns {HTMLElement}
   */
  render(header) {
    const row = document.createElement("div");
    row.className = "step-row";
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "step-toggle";
    row.appendChild(toggle);
    header.element = row;
    this.fill(row, header);
    return row;
  }

  /** Redraw a header that is on screen (its step grew). */
  redraw(header) {
    if (header.element && header.element.isConnected) this.fill(header.element, header);
  }

  fill(row, header) {
    const open = !this.collapsed.has(header.id);
    row.className = `step-row lv-${header.worst}${header.failed ? " step-failed" : ""}${open ? "" : " step-collapsed"}`;
    row.dataset.step = header.name;
    row.dataset.agent = header.agent;
    const toggle = row.firstElementChild;
    toggle.setAttribute("aria-expanded", String(open));
    const lines = `${header.count.toLocaleString()} line${header.count === 1 ? "" : "s"}`;
    const took = formatDuration(Math.max(0, header.last - header.first));
    const level = LEVELS[header.worst];
    toggle.title = `${open ? "Collapse" : "Expand"} step "${header.name}": ${lines}, ${took}, worst level ${level}`;
    toggle.textContent = "";
    toggle.append(span("caret", open ? "▾" : "▸"));
    if (this.options.multi) {
      const tag = span(`agent ${tagClass(header.agent)}`, this.options.agentName(header.agent));
      tag.title = header.agent;
      toggle.append(tag);
    }
    const name = span("step-name", header.name);
    toggle.append(name);
    if (header.span) {
      const id = span("step-span", `span ${header.span.slice(0, SPAN_CHARS)}`);
      id.title = `span_id ${header.span}`;
      toggle.append(id);
    }
    toggle.append(span("step-count", lines), span("step-duration", took), span("level step-level", level));
    if (header.failed) toggle.append(span("badge status-failed step-status", "failed"));
  }
}
