/**
 * The agent page's run summary: how the run is going at a glance, above its lines. A header with its status and
 * duration (live while it runs), its lines per level (a click shows that level and above), its first error (a
 * click opens it), its usage and how long a running agent has been silent; and the volume chart (volume.js).
 * The agent record carries the counts (GET /api/agents/{id}); while the run goes on, both are read again every
 * few seconds.
 *
 * @module summary
 */

import { agentPath, api } from "./api.js";
import { VolumeChart } from "./volume.js";

const LEVEL_NAMES = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
/** How often a running agent's record and chart are read again, and the clocks redrawn. */
const REFRESH_MS = 2000;
const CLOCK_MS = 1000;
/** A running agent without a line for this long shows how long it has been silent. */
const SILENT_AFTER_S = 10;

/**
 * "45 s", "3 min 12 s", "2 h 5 min", "3 d 4 h".
 * @param {number} seconds
 * @returns {string}
 */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** The run summary and volume chart of one agent's page. */
export class RunPanel {
  /**
   * @param {HTMLElement} header  Where the summary goes (emptied).
   * @param {HTMLElement} chartBox  Where the volume chart goes.
   * @param {string} agentId
   * @param {{onLevel: (level: string) => void, onError: (seq: number) => void,
   *          onRange: (since: number, until: number) => void, onClear: () => void}} handlers
   */
  constructor(header, chartBox, agentId, handlers) {
    this.header = header;
    this.agentId = agentId;
    this.handlers = handlers;
    this.agent = null;
    this.chart = new VolumeChart(chartBox, agentId, handlers);
    header.replaceChildren();
    const span = (className) => Object.assign(document.createElement("span"), { className });
    this.el = { time: span("run-time"), counts: span("run-counts"), usage: span("run-usage"), silent: span("run-silent") };
    this.firstError = Object.assign(document.createElement("button"), { type: "button", className: "run-first-error" });
    this.firstError.hidden = true;
    this.firstError.addEventListener("click", () => {
      if (this.agent && this.agent.first_error_seq) this.handlers.onError(this.agent.first_error_seq);
    });
    this.levelButtons = LEVEL_NAMES.map((name, index) => {
      const button = Object.assign(document.createElement("button"), { type: "button" });
      button.className = `run-level lv-${index}`;
      button.dataset.level = name;
      button.title = `Show ${name} lines${index < 4 ? " and above" : ""}`;
      button.addEventListener("click", () => this.handlers.onLevel(name));
      this.el.counts.appendChild(button);
      return button;
    });
    header.append(this.el.time, this.el.counts, this.firstError, this.el.usage, this.el.silent);
    this.clock = setInterval(() => this.showTimes(), CLOCK_MS);
    this.poll = setInterval(() => this.refresh(), REFRESH_MS);
  }

  /**
   * Show what the agent record says (from the page's load, or a refresh).
   * @param {object|null} agent
   */
  update(agent) {
    if (!agent || !agent.level_counts) return;
    const wasRunning = this.agent && this.agent.status === "running";
    this.agent = agent;
    // The run just ended: its final counts come with its record.
    if (wasRunning && agent.status !== "running") this.reread();
    this.header.hidden = false;
    for (const button of this.levelButtons) {
      const count = agent.level_counts[button.dataset.level] || 0;
      button.textContent = `${button.dataset.level} ${count.toLocaleString()}`;
      button.classList.toggle("zero", count === 0);
    }
    this.firstError.hidden = !agent.first_error_seq;
    this.firstError.textContent = agent.first_error_seq ? `First error: line ${agent.first_error_seq}` : "";
    const usage = agent.usage;
    this.el.usage.hidden = !usage;
    this.el.usage.textContent = usage
      ? `${usage.tokens.toLocaleString()} tokens · cost ${usage.cost.toLocaleString(undefined, { maximumFractionDigits: 4 })}`
      : "";
    this.showTimes();
    // The chart is drawn once at first, then along with each refresh while the run goes on; and once more as it
    // ends, for its last lines.
    if (!this.drawn || wasRunning) {
      this.drawn = true;
      this.chart.refresh();
    }
  }

  showTimes() {
    const agent = this.agent;
    if (!agent) return;
    const now = Date.now() / 1000;
    const running = agent.status === "running";
    const end = running ? now : agent.ended_at || agent.updated_at;
    this.el.time.textContent = running
      ? `running for ${duration(end - agent.created_at)}`
      : `${agent.status} after ${duration(end - agent.created_at)}`;
    this.el.time.className = `run-time status-${agent.status}`;
    const quiet = running ? now - (agent.last_line_at || agent.created_at) : 0;
    this.el.silent.hidden = quiet < SILENT_AFTER_S;
    this.el.silent.textContent = `silent for ${duration(quiet)}`;
  }

  reread() {
    api(agentPath(this.agentId))
      .then((agent) => this.update(agent))
      .catch(() => {});
  }

  /** Read the agent again while it runs (the page's own record of it follows its lines, not its counts). */
  async refresh() {
    if (!this.agent || this.agent.status !== "running" || document.hidden) return;
    try {
      this.update(await api(agentPath(this.agentId)));
    } catch {
      // The next refresh tries again; the page shows the connection's state itself.
    }
  }

  /**
   * The time range the view is narrowed to, for the chart's shading.
   * @param {{since: number|null, until: number|null}} range
   */
  setRange(range) {
    this.chart.setRange(range);
  }
}
