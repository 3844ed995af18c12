/**
 * The log page: one agent's stream, or several agents merged in time order (picked by id or by a label).
 *
 * History comes from GET /api/agents/{id}/logs in pages (newest first, so the end shows at once), then live
 * lines follow right after it, through the stream every viewer tab shares (live.js): each agent's lines come
 * after the last seq the view holds, never twice, never with a gap. An agent that does not exist yet is waited
 * for. Level and text filters narrow what is loaded at once, in the browser; when the loaded lines cannot answer
 * (an older part is not loaded, or the filter got wider) the view asks the server again with `level` and `q`,
 * and keeps only the live lines the server's filter would keep. The filter state lives in the URL.
 *
 * A link to a line (`#seq`, as a search result opens it) scrolls to that line and marks it; a line too far back
 * to be among the newest lines loaded opens the view around it instead, without following live.
 *
 * @module logview
 */

import { ScreenshotStrip } from "./attachments.js";
import { agentPath, api, ApiError, copyText, query, toast } from "./api.js";
import { fillDownloads } from "./downloads.js";
import {
  LEVELS,
  compareLines,
  estimateHeight,
  lineText,
  makeLine,
  passes,
  renderFields,
  renderRow,
  serverKeeps,
  tagClass,
} from "./rows.js";
import { notifyFailed } from "./notify.js";
import { FINISHED, connectionState, countsText, labelObject, lowerBound, mergeSorted, readRoute } from "./logstate.js";
import { RunControl } from "./runcontrol.js";
import { HEADER_PX, Steps, isStepHeader } from "./steps.js";
import { RunPanel } from "./summary.js";
import { highlightPatterns, narrowerTerms, parseQuery } from "./terms.js";
import { VirtualList } from "./virtual.js";

/** Lines per history request (the server's maximum). */
const PAGE_LINES = 10000;
/** Newest lines loaded when a view opens. */
const INITIAL_LINES = 100000;
/** Lines kept in memory; past it the oldest are dropped, DROP_LINES at a time. */
const MAX_LINES = 150000;
const DROP_LINES = 10000;
/** Lines loaded on each side of a line opened far back. */
const AROUND_LINES = 1000;
/** Pause after typing before the server is asked. */
const RELOAD_DELAY_MS = 350;
/** Agents a label view lists at most. */
const LABEL_AGENTS = 1000;
/** Text of each connection state. */
const CONNECTION_TEXT = {
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  waiting: "waiting…",
  finished: "finished",
  ended: "stream ended",
  error: "error",
  around: "not following",
};

class LogView {
  constructor(root, route, setTitle, live) {
    this.root = root;
    this.route = route;
    this.setTitle = setTitle;
    this.live = live;
    // Agents followed live and not ended yet; those of them that do not exist yet.
    this.pending = new Set();
    this.waiting = new Set();
    this.linesState = { state: "connecting" };
    this.feedState = { state: "open" };
    this.problem = null;
    this.multi = route.agents.length !== 1 || route.labels.length > 0;
    this.filters = { level: route.level, q: route.q, source: route.source, since: route.since, until: route.until };
    this.terms = parseQuery(route.q);
    this.loadedWith = this.loadedFilters();
    this.agents = new Map();
    this.lines = [];
    this.visible = [];
    this.lastSeq = new Map();
    this.older = new Map();
    this.sources = new Set();
    this.generation = 0;
    this.stream = null;
    this.newLines = 0;
    this.loading = false;
    this.target = this.parseHash();
    // The seq a view opened far back is loaded around (null: the view holds the newest lines).
    this.around = null;
    this.build();
  }

  // ---- page structure ------------------------------------------------------------------------------

  build() {
    const page = document.getElementById("log-page").content.firstElementChild.cloneNode(true);
    this.root.appendChild(page);
    this.page = page;
    const $ = (selector) => page.querySelector(selector);
    this.el = {
      title: $(".title"),
      chips: $(".chips"),
      connection: $(".connection"),
      level: $(".level-select"),
      search: $(".search-input"),
      matches: $(".match-count"),
      source: $(".source-select"),
      follow: $(".follow"),
      downloads: $(".downloads"),
      info: $(".info-bar"),
      infoText: $(".info-text"),
      earlier: $(".load-earlier"),
      newest: $(".to-newest"),
      log: $(".log"),
      newLines: $(".new-lines"),
      counts: $(".counts"),
    };
    page.classList.toggle("multi", this.multi);
    for (const [index, name] of LEVELS.entries()) {
      this.el.level.add(new Option(index === 0 ? "All levels" : `${name} and above`, name));
    }
    this.el.level.value = LEVELS[this.filters.level];
    this.el.search.value = this.filters.q;
    this.addSource(this.filters.source);
    this.el.source.value = this.filters.source;
    // Steps' headers are rows of the list too (steps.js).
    this.steps = new Steps(this.el.log, {
      multi: this.multi,
      agentName: (id) => this.rowContext().agentName(id),
      onToggle: () => this.showLines(),
    });
    this.list = new VirtualList(this.el.log, {
      renderRow: (line) => {
        if (isStepHeader(line)) return this.steps.render(line);
        const row = renderRow(line, this.rowContext());
        if (line.key === this.targetKey) row.classList.add("target");
        if (line.stepHeader) row.classList.add("in-step");
        return row;
      },
      estimateHeight: (line, width) => (isStepHeader(line) ? HEADER_PX : estimateHeight(line, width, this.multi)),
      onStickChange: (stick) => this.showFollow(stick),
    });
    // One agent's page: its run summary and volume chart (summary.js).
    if (!this.multi) this.run = new RunPanel($(".run-summary"), $(".volume"), this.route.agents[0], this.runHandlers());
    // Stop and Share (runcontrol.js).
    if (!this.multi) this.control = new RunControl(page, this.route.agents[0]);
    // The run's screenshots above its lines (attachments.js).
    if (!this.multi) this.shots = new ScreenshotStrip($(".screenshots"));
    this.wire();
    this.showFollow(true);
  }

  runHandlers() {
    return {
      onLevel: (name) => {
        this.el.level.value = name;
        this.setFilter({ level: LEVELS.indexOf(name) });
      },
      onError: (seq) => {
        if (this.filters.since !== null || this.filters.until !== null) this.setFilter({ since: null, until: null });
        history.replaceState(null, "", `#${seq}`);
        window.dispatchEvent(new HashChangeEvent("hashchange"));
      },
      onRange: (since, until) => this.setFilter({ since, until }),
      onClear: () => this.setFilter({ since: null, until: null }),
    };
  }

  rowContext() {
    if (!this.context) {
      this.context = {
        highlight: highlightPatterns(this.terms),
        multi: this.multi,
        agentName: (id) => {
          const agent = this.agents.get(id);
          return (agent && agent.name) || id;
        },
        permalink: (line) => this.permalink(line),
      };
    }
    return this.context;
  }

  wire() {
    this.el.level.addEventListener("change", () => this.setFilter({ level: LEVELS.indexOf(this.el.level.value) }));
    this.el.search.addEventListener("input", () => this.setFilter({ q: this.el.search.value }));
    this.el.search.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.el.log.focus();
      if (event.key === "Enter") this.reloadNow();
    });
    this.el.source.addEventListener("change", () => this.setFilter({ source: this.el.source.value }));
    this.el.follow.addEventListener("click", () => this.toggleFollow());
    this.el.newLines.addEventListener("click", () => this.list.scrollToBottom());
    this.el.earlier.addEventListener("click", () => this.loadEarlier());
    // The same view without the #seq: loaded anew, its newest lines, followed live.
    this.el.newest.addEventListener("click", () => location.assign(`${location.pathname}${location.search}`));
    this.el.log.addEventListener("click", (event) => this.onRowClick(event));
    document.addEventListener("keydown", (event) => this.onKey(event));
    window.addEventListener("hashchange", () => {
      this.target = this.parseHash();
      this.findTarget();
      // Not loaded: load the view again, around the line if it lies far back, else its newest lines.
      if (this.target && (this.around !== null || this.farTarget() !== null)) {
        this.around = null;
        this.load();
      }
    });
  }

  // ---- loading -------------------------------------------------------------------------------------

  /** Load the agents, their newest lines, then follow the live stream. */
  async load() {
    const generation = ++this.generation;
    if (this.stream) this.stream.close();
    this.stream = null;
    this.loadedWith = this.loadedFilters();
    this.lines = [];
    this.lastSeq.clear();
    this.older.clear();
    this.waiting.clear();
    this.pending.clear();
    this.problem = null;
    this.started = false;
    this.linesState = { state: "connecting" };
    this.newLines = 0;
    this.loading = true;
    this.showLines();
    this.setConnection("connecting");
    try {
      const agents = await this.fetchAgents();
      if (generation !== this.generation) return;
      for (const agent of agents) this.agents.set(agent.id, agent);
      this.showTitle();
      const around = this.farTarget() ?? this.around;
      if (around !== null) {
        await this.loadAround(generation, around);
        return;
      }
      const cursors = new Map(agents.map((agent) => [agent.id, agent.last_seq]));
      for (const agent of agents) {
        this.older.set(agent.id, agent.last_seq + 1);
        this.lastSeq.set(agent.id, 0);
      }
      const budget = Math.floor(INITIAL_LINES / Math.max(1, agents.length));
      // The newest page of each agent first, so the end of the log shows while older pages load.
      await this.loadPages(generation, Math.min(PAGE_LINES, budget));
      if (generation !== this.generation) return;
      this.startStream(cursors);
      while (this.lines.length < INITIAL_LINES && this.hasOlder()) {
        const before = this.lines.length;
        await this.loadPages(generation, Math.min(PAGE_LINES, budget));
        if (generation !== this.generation) return;
        if (this.lines.length === before) break;
      }
    } catch (error) {
      if (generation === this.generation) this.showError(error);
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.showInfo();
        this.showCounts();
      }
    }
  }

  async fetchAgents() {
    if (this.route.labels.length) {
      const page = await api(`/api/agents${query({ label: this.route.labels, limit: LABEL_AGENTS })}`);
      return page.agents;
    }
    const found = await Promise.all(
      this.route.agents.map((id) =>
        api(agentPath(id)).catch((error) => {
          // Not created yet: its lines are waited for, and show when they come.
          if (error instanceof ApiError && error.status === 404) {
            this.waiting.add(id);
            return null;
          }
          throw error;
        }),
      ),
    );
    return found.filter(Boolean);
  }

  hasOlder() {
    for (const before of this.older.values()) if (before !== null) return true;
    return false;
  }

  /** A page of history with the filters the view loads with: `cursor` is {before} or {after}. */
  fetchPage(id, cursor, limit) {
    const { level, q } = this.loadedWith;
    return api(agentPath(id, "/logs") + query({ ...cursor, limit, level: level ? LEVELS[level] : null, q }));
  }

  /** One page of older lines from each agent that has some, merged into the view. */
  async loadPages(generation, limit) {
    const wanted = [...this.older].filter(([, before]) => before !== null);
    const pages = await Promise.all(wanted.map(([id, before]) => this.fetchPage(id, { before }, limit)));
    if (generation !== this.generation) return;
    let older = [];
    wanted.forEach(([id, before], k) => {
      const page = pages[k];
      const lines = page.lines.map(makeLine);
      this.older.set(id, page.next_before === null || !lines.length ? null : lines[0].seq);
      if (lines.length) {
        this.lastSeq.set(id, Math.max(this.lastSeq.get(id) || 0, lines[lines.length - 1].seq));
        for (const line of lines) this.addSource(line.source);
      }
      older = this.multi ? mergeSorted(older, lines) : lines;
    });
    this.lines = this.multi ? mergeSorted(older, this.lines) : older.concat(this.lines);
    this.showLines();
    this.findTarget();
  }

  /** The seq to open around: the line the address names, when it lies too far back to be among the newest. */
  farTarget() {
    const agent = this.multi || !this.target ? null : this.agents.get(this.route.agents[0]);
    const far = agent && this.target.agent === agent.id && agent.last_seq - this.target.seq >= INITIAL_LINES;
    return far ? this.target.seq : null;
  }

  /** The lines on both sides of `seq`, without following live ("Load earlier lines" still pages back). */
  async loadAround(generation, seq) {
    this.around = seq;
    const id = this.route.agents[0];
    const [before, after] = await Promise.all([
      this.fetchPage(id, { before: seq + 1 }, AROUND_LINES),
      this.fetchPage(id, { after: seq }, AROUND_LINES),
    ]);
    if (generation !== this.generation) return;
    this.lines = before.lines.concat(after.lines).map(makeLine);
    for (const line of this.lines) this.addSource(line.source);
    this.older.set(id, before.lines.length ? before.next_before : null);
    this.showLines();
    this.findTarget();
    this.setConnection("around");
  }

  /** Load one more page of older lines (the "Load earlier lines" button). */
  async loadEarlier() {
    if (this.loading || !this.hasOlder() || this.lines.length >= MAX_LINES) return;
    this.loading = true;
    this.showInfo();
    const generation = this.generation;
    try {
      await this.loadPages(generation, Math.min(PAGE_LINES, MAX_LINES - this.lines.length));
    } catch (error) {
      this.showError(error);
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.showInfo();
      }
    }
  }

  /** Follow the agents live from `cursors` (the last seq of each the view holds), and those not created yet. */
  startStream(cursors) {
    const follow = [];
    for (const [id, agent] of this.agents) {
      if (agent && !FINISHED.includes(agent.status)) follow.push([id, cursors.get(id)]);
    }
    for (const id of this.waiting) follow.push([id, 0]);
    this.pending = new Set(follow.map(([id]) => id));
    this.started = true;
    const labels = this.route.labels.length ? labelObject(this.route.labels) : null;
    const generation = this.generation;
    const live = () => generation === this.generation;
    if (follow.length || labels) {
      this.stream = this.live.followLines(
        { agents: follow, known: [...this.agents.keys()], labels },
        {
          onLines: (lines) => live() && this.receive(lines),
          onFinal: (end) => live() && this.onFinal(end),
          onJoined: (agent) => live() && this.onJoined(agent),
          onState: (state, detail, stream) => {
            if (!live()) return;
            this[stream === "feed" ? "feedState" : "linesState"] = { state, detail };
            this.showConnection();
          },
        },
      );
    }
    this.showConnection();
  }

  /** An agent ended (or turned out to be another user's): its status, and the view's state. */
  onFinal({ agent: id, status, reason }) {
    this.pending.delete(id);
    this.waiting.delete(id);
    if (reason === "not_owner") {
      this.refuse(`agent '${id}' belongs to another user`); // as the API's 403 says it
      return;
    }
    const agent = this.agents.get(id);
    // Only agents followed while running end here: a failure is one the person watched happen.
    if (status === "failed") notifyFailed({ id, name: agent && agent.name, reason });
    if (agent && status) {
      agent.status = status;
      if (reason) agent.reason = reason;
      this.showTitle();
    } else {
      // Ended without saying how (the server's 204): the agent itself tells (or its 403 says whose it is).
      this.learnAgent(id);
    }
    this.showConnection();
  }

  /** An agent of the view is another user's: nothing of it is shown, and the state says why. */
  refuse(message) {
    this.problem = message;
    this.setConnection("error", message);
  }

  /** An agent that came to carry the view's labels: its lines follow from its first. */
  onJoined(agent) {
    this.agents.set(agent.id, agent);
    this.lastSeq.set(agent.id, 0);
    if (!FINISHED.includes(agent.status)) this.pending.add(agent.id);
    this.showTitle();
    this.showConnection();
  }

  /** Live lines: drop any already held (by seq) or that the loaded filters leave out, keep time order, follow
   * or count them. */
  receive(raw) {
    const fresh = [];
    for (const item of raw) {
      const last = this.lastSeq.get(item.agent);
      if (last !== undefined && item.seq <= last) continue;
      this.lastSeq.set(item.agent, item.seq);
      const agent = this.agents.get(item.agent);
      if (agent) {
        agent.last_seq = Math.max(agent.last_seq, item.seq);
        agent.line_count = agent.last_seq - agent.first_seq + 1;
      } else if (!this.agents.has(item.agent)) {
        // An agent waited for has been created: learn its name and status.
        if (this.waiting.delete(item.agent)) this.showConnection();
        this.learnAgent(item.agent);
      }
      if (!serverKeeps(makeLine(item), this.loadedWith)) continue;
      fresh.push(item);
      this.addSource(item.source);
    }
    this.showCounts();
    if (!fresh.length) return;
    const filter = this.filter();
    if (this.multi) fresh.sort(compareLines);
    const newest = this.lines[this.lines.length - 1];
    const inOrder = !this.multi || !newest || compareLines(fresh[0], newest) >= 0;
    if (inOrder) {
      for (const line of fresh) this.lines.push(line);
      if (this.shots) this.shots.add(fresh);
      const shown = fresh.filter((line) => passes(line, filter));
      // The list's items are the shown lines with step headers among them (steps.js), so not this.visible itself.
      for (const line of shown) this.visible.push(line);
      this.list.append(this.steps.append(shown));
      this.countNew(shown.length);
    } else {
      // A line older than the newest shown (clocks of different agents): put it in its place.
      for (const line of fresh) this.lines.splice(lowerBound(this.lines, line), 0, line);
      const before = this.visible.length;
      this.showLines();
      this.countNew(this.visible.length - before);
    }
    if (this.lines.length > MAX_LINES) this.dropOldest();
    this.showCounts();
  }

  dropOldest() {
    const dropped = this.lines.length - MAX_LINES + DROP_LINES;
    const removed = this.lines.slice(0, dropped);
    this.lines = this.lines.slice(dropped);
    // What was dropped can be loaded again from the server.
    for (const line of removed) {
      const before = this.older.get(line.agent);
      if (before === null || before === undefined || line.seq + 1 > before) this.older.set(line.agent, line.seq + 1);
    }
    this.showLines();
    this.showInfo();
  }

  learnAgent(id) {
    if (!this.agents.get(id)) this.agents.set(id, null);
    api(agentPath(id))
      .then((agent) => {
        const known = this.agents.get(id);
        // Lines may have come in meanwhile: keep the higher count.
        if (known && known.last_seq > agent.last_seq) Object.assign(agent, { last_seq: known.last_seq, line_count: known.line_count });
        this.agents.set(id, agent);
        this.showTitle();
        this.showCounts();
        this.showConnection();
      })
      .catch((error) => {
        if (error instanceof ApiError && error.status === 403) this.refuse(error.message);
      });
  }

  // ---- filters -------------------------------------------------------------------------------------

  filter() {
    const { level, source, since, until } = this.filters;
    return { level, source, terms: this.terms, since, until };
  }

  /** The filters the server is asked with, as a load remembers them. */
  loadedFilters() {
    return { level: this.filters.level, q: this.filters.q, terms: this.terms };
  }

  setFilter(change) {
    Object.assign(this.filters, change);
    if (this.run) this.run.setRange(this.filters);
    this.terms = parseQuery(this.filters.q);
    this.context = null;
    this.writeUrl();
    this.showLines();
    clearTimeout(this.reloadTimer);
    if (this.needsServer()) this.reloadTimer = setTimeout(() => this.load(), RELOAD_DELAY_MS);
  }

  reloadNow() {
    clearTimeout(this.reloadTimer);
    if (this.needsServer()) this.load();
  }

  /** True unless the loaded lines hold every line the new filter can match. */
  needsServer() {
    const { level } = this.filters;
    const loaded = this.loadedWith;
    const narrower = level >= loaded.level && narrowerTerms(this.terms, loaded.terms);
    const changed = level !== loaded.level || !narrower || !narrowerTerms(loaded.terms, this.terms);
    return changed && !(narrower && !this.hasOlder() && this.around === null);
  }

  writeUrl() {
    const params = new URLSearchParams();
    for (const id of this.route.agents) params.append("agent", id);
    for (const label of this.route.labels) params.append("label", label);
    if (this.filters.level) params.set("level", LEVELS[this.filters.level]);
    if (this.filters.q) params.set("q", this.filters.q);
    if (this.filters.source) params.set("source", this.filters.source);
    if (this.filters.since !== null) params.set("since", String(this.filters.since));
    if (this.filters.until !== null) params.set("until", String(this.filters.until));
    history.replaceState(null, "", `?${params}${location.hash}`);
    this.showDownloads();
  }

  addSource(source) {
    if (!source || this.sources.has(source)) return;
    this.sources.add(source);
    const options = [...this.el.source.options].slice(1);
    const next = options.find((option) => option.value.localeCompare(source) > 0) || null;
    this.el.source.add(new Option(source, source), next);
  }

  // ---- showing -------------------------------------------------------------------------------------

  /** Apply the filters to every loaded line and hand the result to the list. */
  showLines() {
    const filter = this.filter();
    this.visible = this.lines.filter((line) => passes(line, filter));
    if (this.shots) this.shots.show(this.lines);
    // Rows are built anew: the highlight of the search may have changed.
    this.list.clearRows();
    this.list.setItems(this.steps.rows(this.visible), (line) => lowerBound(this.list.items, line));
    this.el.log.classList.toggle("searching", filter.terms.length > 0);
    this.showCounts();
  }

  /** Lines in the run (every agent of the view), loaded or not; null while an agent is not known yet. */
  runLines() {
    let total = 0;
    for (const agent of this.agents.values()) {
      if (!agent) return null;
      total += agent.line_count;
    }
    return total;
  }

  showCounts() {
    const shown = this.visible.length;
    const loaded = this.lines.length;
    this.el.matches.textContent = this.filters.q ? `${shown.toLocaleString()} match${shown === 1 ? "" : "es"}` : "";
    this.el.counts.textContent = countsText({
      shown,
      loaded,
      narrowed: Boolean(this.filters.level || this.filters.q || this.filters.source || this.filters.since || this.filters.until),
      server: Boolean(this.loadedWith.level || this.loadedWith.q),
      total: this.runLines(),
      multi: this.multi,
    });
    this.page.classList.toggle("empty", shown === 0 && !this.loading);
  }

  showInfo() {
    const older = this.hasOlder();
    this.el.info.hidden = !older && !this.loading && this.around === null;
    this.el.newest.hidden = this.loading || this.around === null;
    if (this.loading) {
      this.el.infoText.textContent = `Loading… ${this.lines.length.toLocaleString()} lines so far`;
      this.el.earlier.hidden = true;
      return;
    }
    const full = this.lines.length >= MAX_LINES;
    const earlier = !older
      ? ""
      : full
        ? "Earlier lines are not loaded (memory limit); download the log to read them all."
        : "Earlier lines are not loaded.";
    const around = this.around === null ? "" : `Lines around #${this.around}: newer lines are not loaded or followed.`;
    this.el.infoText.textContent = [around, earlier].filter(Boolean).join(" ");
    this.el.earlier.hidden = full || !older;
  }

  showTitle() {
    const title = this.el.title;
    title.textContent = "";
    if (!this.multi) {
      const id = this.route.agents[0];
      const agent = this.agents.get(id);
      const badge = document.createElement("span");
      badge.className = `badge status-${agent ? agent.status : "unknown"}`;
      badge.textContent = agent ? agent.status : this.waiting.has(id) ? "not created yet" : "";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = (agent && agent.name) || id;
      title.append(badge, name);
      if (agent && agent.name && agent.name !== id) {
        const small = document.createElement("span");
        small.className = "agent-id";
        small.textContent = id;
        title.appendChild(small);
      }
      if (agent && agent.reason) {
        const reason = document.createElement("span");
        reason.className = "reason";
        reason.textContent = agent.reason;
        title.appendChild(reason);
      }
      this.setTitle((agent && agent.name) || id);
      this.run.update(agent);
      this.control.update(agent);
    } else {
      const label = this.route.labels.join(", ");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label ? `Label ${label}` : `${this.agents.size} agents`;
      title.appendChild(name);
      this.setTitle(label || "Merged view");
    }
    this.showChips();
    this.showDownloads();
  }

  showChips() {
    this.el.chips.textContent = "";
    if (!this.multi) return;
    for (const [id, agent] of this.agents) {
      const chip = document.createElement("a");
      chip.className = `chip ${agent ? `status-${agent.status}` : ""}`;
      chip.href = `/${query({ agent: id })}`;
      const dot = document.createElement("span");
      dot.className = `dot tag-dot ${tagClass(id)}`;
      chip.append(dot, document.createTextNode((agent && agent.name) || id));
      chip.title = `${id}: ${agent ? agent.status : "…"}`;
      this.el.chips.appendChild(chip);
    }
  }

  showDownloads() {
    fillDownloads(this.el.downloads, {
      multi: this.multi,
      agentId: this.route.agents[0],
      filters: this.filters,
      shown: () => this.visible,
    });
  }

  /** The connection state from what the live data said last: its stream's state and the agents still to end. */
  showConnection() {
    if (this.problem || !this.started) return;
    const { state, detail, text } = connectionState({
      lines: this.linesState,
      feed: this.feedState,
      pending: this.pending,
      waiting: this.waiting,
      labels: this.route.labels.join(", "),
      agents: this.agents.size,
    });
    this.setConnection(state, detail, text);
  }

  setConnection(state, detail, wording) {
    this.connection = state;
    const box = this.el.connection;
    box.dataset.state = state;
    let text = wording || CONNECTION_TEXT[state];
    if (state === "finished" && !this.multi) {
      const agent = this.agents.get(this.route.agents[0]);
      if (agent) text = `finished: ${agent.status}`;
    }
    box.querySelector(".connection-text").textContent = detail ? `${text}: ${detail}` : text;
    box.title = `Stream ${text}`;
  }

  showError(error) {
    const message = error instanceof ApiError ? error.message : String(error.message || error);
    this.problem = message;
    this.setConnection("error", message);
    if (!this.agents.size) this.showTitle();
    if (error instanceof ApiError && error.status === 401) {
      toast("Signed out: sign in again");
    }
  }

  // ---- follow mode ---------------------------------------------------------------------------------

  showFollow(stick) {
    this.el.follow.setAttribute("aria-pressed", String(stick));
    this.el.follow.classList.toggle("on", stick);
    if (stick) this.newLines = 0;
    this.showNewLines();
  }

  toggleFollow() {
    if (this.list.stick) this.list.setStick(false);
    else this.list.scrollToBottom();
  }

  countNew(count) {
    if (this.list.stick || count <= 0) return;
    this.newLines += count;
    this.showNewLines();
  }

  showNewLines() {
    const button = this.el.newLines;
    button.hidden = this.list.stick || this.newLines === 0;
    button.textContent = `${this.newLines.toLocaleString()} new line${this.newLines === 1 ? "" : "s"} ↓`;
  }

  // ---- rows, permalinks, keyboard ------------------------------------------------------------------

  permalink(line) {
    return this.multi ? `#${line.agent}:${line.seq}` : `#${line.seq}`;
  }

  parseHash() {
    const hash = decodeURIComponent(location.hash.slice(1));
    if (!hash) return null;
    const at = hash.lastIndexOf(":");
    const seq = Number(at >= 0 ? hash.slice(at + 1) : hash);
    if (!Number.isInteger(seq) || seq < 1) return null;
    return { agent: at >= 0 ? hash.slice(0, at) : this.route.agents[0], seq };
  }

  /** Scroll to the line named by the address's #seq and mark it, once it is loaded. */
  findTarget() {
    if (!this.target) return;
    const { agent, seq } = this.target;
    const index = this.visible.findIndex((line) => line.seq === seq && line.agent === agent);
    if (index < 0) return;
    this.target = null;
    // The list's rows are lines and step headers (steps.js); a line in a collapsed step opens the step.
    if (this.steps.reveal(this.visible[index])) this.showLines();
    this.list.scrollToIndex(this.list.items.indexOf(this.visible[index]));
    for (const row of this.el.log.querySelectorAll(".row.target")) row.classList.remove("target");
    const row = this.list.rows.get(this.visible[index]);
    if (row) row.classList.add("target");
    this.targetKey = this.visible[index].key;
  }

  onRowClick(event) {
    const row = event.target.closest(".row");
    if (!row) return;
    const line = row.vItem;
    if (event.target.closest(".fields-toggle")) {
      line.open = !line.open;
      renderFields(row.querySelector(".fields"), line);
      this.list.remeasure(line);
    } else if (event.target.closest(".copy-line")) {
      copyText(lineText(line)).then((ok) => toast(ok ? "Line copied" : "Could not copy"));
    } else if (event.target.closest(".copy-link") || event.target.closest(".time")) {
      event.preventDefault();
      const url = `${location.origin}${location.pathname}${location.search}${this.permalink(line)}`;
      history.replaceState(null, "", this.permalink(line));
      this.targetKey = line.key;
      for (const marked of this.el.log.querySelectorAll(".row.target")) marked.classList.remove("target");
      row.classList.add("target");
      copyText(url).then((ok) => toast(ok ? "Link copied" : url));
    }
  }

  onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest && event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "/") {
      event.preventDefault();
      this.el.search.focus();
      this.el.search.select();
    } else if (event.key === "f") {
      this.toggleFollow();
    } else if (event.key === "g" || event.key === "Home") {
      event.preventDefault();
      this.list.scrollToTop();
    } else if (event.key === "G" || event.key === "End") {
      event.preventDefault();
      this.list.scrollToBottom();
    }
  }
}

/**
 * Show the log page in `root` for the route in the address bar.
 * @param {HTMLElement} root
 * @param {URLSearchParams} params
 * @param {(title: string) => void} setTitle
 * @param {{followLines: Function}} live  The tab's connection to the shared live data (live.js).
 * @returns {LogView}
 */
export function showLogView(root, params, setTitle, live) {
  const view = new LogView(root, readRoute(params), setTitle, live);
  view.load();
  return view;
}
