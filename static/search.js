/**
 * The results of a search over every run, on the agents page: each line with its agent, time and level and its
 * matches highlighted (in the message, or in the field values that matched), newest first; the next page is
 * asked for as the end of the list comes into view. A result is a link to its agent's page at that line.
 *
 * @module search
 */

import { findMatches, renderAnsi, stripAnsi } from "./ansi.js";
import { ApiError, query } from "./api.js";
import { formatTime, makeLine, tagClass } from "./rows.js";
import { SearchPages } from "./searchpages.js";
import { highlightPatterns, parseQuery } from "./terms.js";

/** How far below the visible end of the list the next page is already asked for. */
const PREFETCH_PX = 600;
/** Characters of a matching field value shown before its first match, and in all. */
const FIELD_LEAD = 30;
const FIELD_SHOWN = 160;

/**
 * When a line was written: the time, with the day when it is not today.
 * @param {number} ts  Epoch seconds.
 * @returns {string}
 */
export function formatWhen(ts) {
  const date = new Date(ts * 1000);
  const now = new Date();
  if (date.toDateString() === now.toDateString()) return formatTime(ts);
  const day = { month: "short", day: "numeric" };
  if (date.getFullYear() !== now.getFullYear()) day.year = "numeric";
  return `${date.toLocaleDateString(undefined, day)} ${formatTime(ts)}`;
}

/**
 * A field's value as printed (without escape sequences, which the rule does not read and a cut could split), the
 * part around its first match (long values are cut), or null without a match.
 */
function fieldExcerpt(value, patterns) {
  const text = stripAnsi(typeof value === "string" ? value : JSON.stringify(value));
  const ranges = findMatches(text, patterns);
  if (!ranges.length) return null;
  const start = Math.max(0, ranges[0][0] - FIELD_LEAD);
  const end = Math.min(text.length, start + FIELD_SHOWN);
  return `${start > 0 ? "…" : ""}${text.slice(start, end)}${end < text.length ? "…" : ""}`;
}

export class SearchResults {
  /**
   * @param {HTMLElement} box  The results' part of the agents page (.search-results).
   * @param {(id: string) => string} agentName  An agent's name, or its id when it has none.
   */
  constructor(box, agentName) {
    this.box = box;
    this.agentName = agentName;
    this.pages = null;
    this.count = 0;
    const $ = (selector) => box.querySelector(selector);
    this.el = {
      status: $(".search-status"),
      scroll: $(".result-scroll"),
      list: $(".result-list"),
      more: $(".search-more"),
      error: $(".search-error"),
    };
    this.observer = new IntersectionObserver(
      (entries) => entries.some((entry) => entry.isIntersecting) && this.more(),
      { root: this.el.scroll, rootMargin: `0px 0px ${PREFETCH_PX}px 0px` },
    );
    this.el.list.addEventListener("keydown", (event) => this.onKey(event));
  }

  /** The query shown, "" when none. */
  get q() {
    return this.pages ? this.pages.q : "";
  }

  /**
   * Search every run for `q` and show its first page (the results of an earlier search go).
   * @param {string} q
   */
  show(q) {
    this.clear();
    this.pages = new SearchPages(q);
    this.patterns = highlightPatterns(parseQuery(q));
    this.el.status.textContent = "Searching…";
    this.more();
  }

  /** Forget the search shown (a page on its way is dropped). */
  clear() {
    if (this.pages) this.pages.close();
    this.pages = null;
    this.count = 0;
    this.observer.unobserve(this.el.more);
    this.el.list.textContent = "";
    this.el.error.hidden = true;
    this.el.status.textContent = "";
  }

  /** Ask for the next page, unless one is on its way or there are no more. */
  async more() {
    const pages = this.pages;
    if (!pages || pages.busy || pages.done) return;
    this.box.setAttribute("aria-busy", "true");
    let lines;
    try {
      lines = await pages.next();
    } catch (error) {
      if (pages === this.pages) this.showError(error);
      return;
    } finally {
      if (pages === this.pages) this.box.setAttribute("aria-busy", "false");
    }
    if (pages !== this.pages || lines === null) return;
    const fragment = document.createDocumentFragment();
    for (const line of lines) fragment.appendChild(this.renderResult(makeLine(line)));
    this.el.list.appendChild(fragment);
    this.count += lines.length;
    this.showStatus();
    // Observed afresh, the end reports at once if it is still in view (a page that did not fill the list).
    this.observer.unobserve(this.el.more);
    if (!pages.done) this.observer.observe(this.el.more);
  }

  showStatus() {
    const n = this.count.toLocaleString();
    if (!this.count) this.el.status.textContent = `No line matches “${this.q}”.`;
    else if (this.pages.done) this.el.status.textContent = `${n} matching line${this.count === 1 ? "" : "s"}, newest first`;
    else this.el.status.textContent = `${n} newest matching lines so far; scroll for more`;
  }

  showError(error) {
    if (error.name === "AbortError") return;
    const message = error instanceof ApiError ? error.message : String(error.message || error);
    this.el.error.textContent = `The search failed: ${message}`;
    this.el.error.hidden = false;
    this.el.status.textContent = this.count ? `${this.count.toLocaleString()} matching lines shown` : "";
  }

  /** Names learnt after the results were shown (the agents feed came later, or an agent was renamed). */
  refreshNames() {
    for (const tag of this.el.list.querySelectorAll(".result-agent")) {
      const name = this.agentName(tag.dataset.agent);
      if (tag.textContent !== name) tag.textContent = name;
    }
  }

  renderResult(line) {
    const item = document.createElement("li");
    item.className = `result lv-${line.lv}`;
    item.dataset.key = line.key;
    const link = document.createElement("a");
    link.className = "result-link";
    link.href = `/${query({ agent: line.agent })}#${line.seq}`;
    const agent = span(`result-agent ${tagClass(line.agent)}`, this.agentName(line.agent));
    agent.dataset.agent = line.agent;
    agent.title = line.agent;
    const time = document.createElement("time");
    time.className = "result-time";
    time.dateTime = new Date(line.ts * 1000).toISOString();
    time.title = `${time.dateTime} · #${line.seq}`;
    time.textContent = formatWhen(line.ts);
    const body = span("result-body", "");
    const message = span("result-msg", "");
    message.appendChild(renderAnsi(line.message, this.patterns));
    body.appendChild(message);
    for (const [key, value] of Object.entries(line.fields || {})) {
      const excerpt = fieldExcerpt(value, this.patterns);
      if (excerpt === null) continue;
      const field = span("result-field", "");
      field.append(span("field-key", `${key}: `), renderAnsi(excerpt, this.patterns));
      body.appendChild(field);
    }
    link.append(agent, time, span("level", line.level), body);
    item.appendChild(link);
    return item;
  }

  /** Up and down move between results; Home and End to the first and last. */
  onKey(event) {
    const links = [...this.el.list.querySelectorAll(".result-link")];
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: links.length - 1 }[event.key];
    if (to === undefined || !links[to]) return;
    event.preventDefault();
    links[to].focus();
  }

  /** Focus the first result (from the search box, with the down arrow). */
  focusFirst() {
    const first = this.el.list.querySelector(".result-link");
    if (first) first.focus();
  }
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}
