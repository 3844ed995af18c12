/**
 * Volume charts from GET /api/agents/{id}/volume: the agent page's chart of a run (SVG bars stacked by level,
 * dragging across it picks a time range, a click on an error bar opens the bucket's first error) and the agents
 * list's sparklines, fetched only for the rows on screen.
 *
 * @module volume
 */

import { agentPath, api, query } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
/** Stacking order, bottom up, as the API names the levels. */
const LEVEL_NAMES = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
/** Bars per pixel of the chart's width, and the bounds of the count asked for. */
const PX_PER_BUCKET = 8;
const MIN_BUCKETS = 20;
const MAX_BUCKETS = 120;
/** Drawing units of the chart (its viewBox; the SVG stretches to the page's width). */
const WIDTH = 1000;
const HEIGHT = 36;
/** The chart shows once the run's lines span this long: bars of a run's first seconds say nothing its lines do
 * not, and the lines keep the room. */
const MIN_SPAN_S = 10;
/** A drag shorter than this (in CSS pixels) is a click. */
const CLICK_PX = 4;
/** Sparklines: buckets each, requests at once, and how long one stays fresh for a running agent. */
const SPARK_BUCKETS = 24;
const SPARK_PARALLEL = 4;
const SPARK_FRESH_MS = 15000;
/** History pages read looking for a bucket's first error (level=ERROR pages, so errors only). */
const ERROR_PAGES = 20;

/**
 * Draw stacked bars into `svg` (its viewBox is set to width × height).
 * @param {SVGSVGElement} svg
 * @param {{start: number, end: number, counts: Object<string, number>}[]} buckets
 * @param {number} width
 * @param {number} height
 */
export function drawBars(svg, buckets, width, height) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  const totals = buckets.map((bucket) => LEVEL_NAMES.reduce((sum, name) => sum + (bucket.counts[name] || 0), 0));
  const most = Math.max(1, ...totals);
  const step = width / Math.max(1, buckets.length);
  buckets.forEach((bucket, index) => {
    let top = height;
    for (const [level, name] of LEVEL_NAMES.entries()) {
      const count = bucket.counts[name] || 0;
      if (!count) continue;
      // At least a pixel's worth, so a single error in a busy bucket still shows.
      const tall = Math.max(height * 0.06, (count / most) * height);
      top -= tall;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", String(index * step + step * 0.08));
      rect.setAttribute("width", String(step * 0.84));
      rect.setAttribute("y", String(Math.max(0, top)));
      rect.setAttribute("height", String(tall));
      rect.setAttribute("class", `vbar vlv-${level}${level >= 3 ? " verr" : ""}`);
      rect.dataset.bucket = String(index);
      svg.appendChild(rect);
    }
  });
}

/** "12:01:02" (or with the date when the run spans days). */
function clock(ts, withDate) {
  const date = new Date(ts * 1000);
  return withDate ? date.toLocaleString() : date.toLocaleTimeString();
}

/** The agent page's volume chart of one run. */
export class VolumeChart {
  /**
   * @param {HTMLElement} box  The chart's container (emptied).
   * @param {string} agentId
   * @param {{onRange: (since: number, until: number) => void, onClear: () => void,
   *          onError: (seq: number) => void}} handlers
   */
  constructor(box, agentId, handlers) {
    this.box = box;
    this.agentId = agentId;
    this.handlers = handlers;
    this.buckets = [];
    this.range = null;
    this.busy = false;
    box.replaceChildren();
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("class", "volume-chart");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", "Lines over time, by level; drag across to show a time range");
    this.shade = document.createElement("div");
    this.shade.className = "volume-shade";
    this.shade.hidden = true;
    this.axis = document.createElement("div");
    this.axis.className = "volume-axis";
    this.clear = document.createElement("button");
    this.clear.type = "button";
    this.clear.className = "volume-clear";
    this.clear.hidden = true;
    this.clear.addEventListener("click", () => this.handlers.onClear());
    const frame = document.createElement("div");
    frame.className = "volume-frame";
    frame.append(this.svg, this.shade);
    box.append(frame, this.axis);
    this.axis.append(this.clear);
    this.tip = document.createElement("span");
    this.tip.className = "volume-tip";
    this.axis.prepend(this.tip);
    this.wireDrag(frame);
  }

  /** Fetch the buckets again and redraw. */
  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      const wanted = Math.round(this.box.clientWidth / PX_PER_BUCKET) || 60;
      const buckets = Math.max(MIN_BUCKETS, Math.min(MAX_BUCKETS, wanted));
      const answer = await api(agentPath(this.agentId, "/volume") + query({ buckets }));
      this.buckets = answer.buckets;
      this.draw();
    } catch {
      // The chart is an aid: the lines below still show; the next refresh tries again.
    } finally {
      this.busy = false;
    }
  }

  draw() {
    drawBars(this.svg, this.buckets, WIDTH, HEIGHT);
    const span = this.span();
    this.box.hidden = !span || span.end - span.start < MIN_SPAN_S;
    this.showRange();
    if (!span) return;
    const first = span.start;
    const last = span.end;
    this.tip.textContent = `${clock(first, last - first > 86400)} – ${clock(last, last - first > 86400)}`;
  }

  /**
   * Shade the range the view is narrowed to (null: none).
   * @param {{since: number|null, until: number|null}|null} range
   */
  setRange(range) {
    this.range = range && (range.since !== null || range.until !== null) ? range : null;
    this.showRange();
  }

  showRange() {
    const span = this.span();
    this.clear.hidden = !this.range;
    if (this.range) {
      const { since, until } = this.range;
      this.clear.textContent = `Showing ${since ? clock(since) : "…"} – ${until ? clock(until) : "…"} ✕`;
      this.clear.title = "Show the whole run";
    }
    if (!this.range || !span) {
      this.shade.hidden = true;
      return;
    }
    const from = Math.max(0, ((this.range.since ?? span.start) - span.start) / (span.end - span.start));
    const to = Math.min(1, ((this.range.until ?? span.end) - span.start) / (span.end - span.start));
    this.shade.hidden = to <= from;
    this.shade.style.left = `${from * 100}%`;
    this.shade.style.width = `${(to - from) * 100}%`;
  }

  span() {
    if (!this.buckets.length) return null;
    return { start: this.buckets[0].start, end: this.buckets[this.buckets.length - 1].end };
  }

  /** The time at a pointer's x, within the chart's span. */
  timeAt(frame, clientX) {
    const span = this.span();
    const box = frame.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (clientX - box.left) / Math.max(1, box.width)));
    return span.start + fraction * (span.end - span.start);
  }

  wireDrag(frame) {
    let from = null;
    frame.addEventListener("pointerdown", (event) => {
      if (!this.span() || event.button !== 0) return;
      from = { x: event.clientX, target: event.target };
      frame.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    frame.addEventListener("pointermove", (event) => {
      if (!from) return;
      const box = frame.getBoundingClientRect();
      const left = Math.min(from.x, event.clientX) - box.left;
      const right = Math.max(from.x, event.clientX) - box.left;
      this.shade.hidden = false;
      this.shade.style.left = `${Math.max(0, left)}px`;
      this.shade.style.width = `${Math.max(0, Math.min(box.width, right) - Math.max(0, left))}px`;
    });
    frame.addEventListener("pointerup", (event) => {
      if (!from) return;
      const start = from;
      from = null;
      if (Math.abs(event.clientX - start.x) < CLICK_PX) {
        this.showRange();
        const bucket = start.target.dataset && start.target.dataset.bucket;
        if (bucket !== undefined && start.target.classList.contains("verr")) this.openFirstError(Number(bucket));
        return;
      }
      const a = this.timeAt(frame, start.x);
      const b = this.timeAt(frame, event.clientX);
      this.handlers.onRange(Math.min(a, b), Math.max(a, b));
    });
    frame.addEventListener("pointercancel", () => {
      from = null;
      this.showRange();
    });
  }

  /** Find the first ERROR or CRITICAL line of a bucket (reading only error lines) and open it. */
  async openFirstError(index) {
    const { start, end } = this.buckets[index];
    let after = 0;
    for (let page = 0; page < ERROR_PAGES && after !== null; page++) {
      const found = await api(agentPath(this.agentId, "/logs") + query({ level: "ERROR", after, limit: 1000 }));
      // Buckets count a line by its second (or minute): a line a little before `start` may be the one.
      const line = found.lines.find((item) => item.ts >= Math.floor(start) - 60 && item.ts < end);
      if (line) {
        this.handlers.onError(line.seq);
        return;
      }
      after = found.next_after;
    }
  }
}

/** The agents list's sparklines: fetched for rows on screen only, a few at a time, kept fresh while running. */
export class Sparklines {
  constructor() {
    this.queue = [];
    this.running = 0;
    this.fetched = new Map();
    this.cells = new Map();
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const id = entry.target.dataset.agent;
        if (entry.isIntersecting) this.cells.set(id, entry.target);
        else this.cells.delete(id);
        if (entry.isIntersecting) this.want(id);
      }
    });
  }

  /**
   * Show the sparkline of `agent` in `cell` (an element of its row), once the row is on screen.
   * @param {HTMLElement} cell
   * @param {{id: string, last_seq: number}} agent
   */
  watch(cell, agent) {
    cell.dataset.seq = String(agent.last_seq);
    if (cell.dataset.agent !== agent.id) {
      cell.dataset.agent = agent.id;
      cell.setAttribute("aria-hidden", "true");
      this.observer.observe(cell);
    } else if (this.cells.has(agent.id)) {
      this.want(agent.id);
    }
  }

  /** Stop watching a removed row. */
  forget(cell) {
    this.observer.unobserve(cell);
    this.cells.delete(cell.dataset.agent);
  }

  /** Queue a fetch for a row on screen: its first, or a newer one once lines came and the last is not fresh. */
  want(id) {
    const cell = this.cells.get(id);
    const known = this.fetched.get(id);
    const moved = known && cell && known.seq !== cell.dataset.seq && Date.now() - known.at > SPARK_FRESH_MS;
    if ((known && !moved) || this.queue.includes(id)) return;
    this.queue.push(id);
    this.pump();
  }

  pump() {
    while (this.running < SPARK_PARALLEL && this.queue.length) {
      const id = this.queue.shift();
      const cell = this.cells.get(id);
      if (!cell) continue;
      this.running += 1;
      this.fetched.set(id, { at: Date.now(), seq: cell.dataset.seq });
      api(agentPath(id, "/volume") + query({ buckets: SPARK_BUCKETS }))
        .then((answer) => this.draw(cell, answer.buckets))
        .catch(() => {})
        .finally(() => {
          this.running -= 1;
          this.pump();
        });
    }
  }

  draw(cell, buckets) {
    let svg = cell.querySelector("svg");
    if (!svg) {
      svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("class", "sparkline");
      cell.appendChild(svg);
    }
    drawBars(svg, buckets, 96, 20);
  }
}
