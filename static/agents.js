/**
 * The agents page: the caller's agents, live from the agents feed the browser's viewer tabs share (live.js),
 * with a filter box and multi-select; and the search over every run's lines, at /?search=WORDS (search.js).
 *
 * @module agents
 */

import { query } from "./api.js";
import { FailureWatch } from "./notify.js";
import { SearchResults } from "./search.js";
import { Sparklines } from "./volume.js";

/** How often "last activity" times are refreshed. */
const CLOCK_MS = 1000;

/**
 * "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago".
 * @param {number|null} ts  Epoch seconds.
 * @returns {string}
 */
export function ago(ts) {
  if (!ts) return "—";
  const seconds = Math.max(0, Date.now() / 1000 - ts);
  if (seconds < 2) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** Text the filter box searches: id, name, status and every label as key=value. */
function haystack(agent) {
  const labels = Object.entries(agent.labels || {}).map(([key, value]) => `${key}=${value}`);
  return [agent.id, agent.name, agent.status, ...labels].join(" ").toLowerCase();
}

class AgentsPage {
  constructor(root, live, setTitle) {
    this.live = live;
    this.setTitle = setTitle;
    this.agents = new Map();
    this.rows = new Map();
    // A run seen running that turns failed: a desktop notification, if asked for.
    this.failures = new FailureWatch();
    // Each row's recent activity, fetched only for the rows on screen (volume.js).
    this.sparks = new Sparklines();
    this.selected = new Set();
    // An agent came or was renamed since the last render: the names of search results may be out of date.
    this.renamed = false;
    this.frame = 0;
    const page = document.getElementById("agents-page").content.firstElementChild.cloneNode(true);
    root.appendChild(page);
    this.page = page;
    const $ = (selector) => page.querySelector(selector);
    this.el = {
      filter: $(".agent-filter"),
      summary: $(".summary"),
      connection: $(".connection"),
      list: $(".agent-list"),
      empty: $(".empty-state"),
      example: $(".example"),
      together: $(".open-together"),
      searchForm: $(".run-search"),
      searchInput: $(".run-search-input"),
      results: $(".search-results"),
      searchClose: $(".search-close"),
    };
    this.results = new SearchResults(this.el.results, (id) => {
      const agent = this.agents.get(id);
      return (agent && agent.name) || id;
    });
    this.el.example.textContent =
      `curl -X POST ${location.origin}/api/agents/demo/logs \\\n` +
      `     -H "Authorization: Bearer $SENTRA_TOKEN" -d '{"message": "hello from my agent"}'`;
    this.el.filter.addEventListener("input", () => {
      const find = this.el.filter.value;
      history.replaceState(null, "", find ? `?${new URLSearchParams({ find })}` : location.pathname);
      this.render();
    });
    this.el.list.addEventListener("click", (event) => this.onClick(event));
    this.el.list.addEventListener("change", (event) => this.onSelect(event));
    this.wireSearch();
    document.addEventListener("keydown", (event) => {
      if (event.key === "/" && !event.target.closest("input, textarea, select")) {
        event.preventDefault();
        (this.searching ? this.el.searchInput : this.el.filter).focus();
      }
    });
    setInterval(() => this.tick(), CLOCK_MS);
    this.showRoute();
    this.connect();
  }

  wireSearch() {
    this.el.searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.navigate(this.el.searchInput.value.trim());
    });
    this.el.searchInput.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") {
        event.preventDefault();
        this.results.focusFirst();
      }
    });
    this.el.searchClose.addEventListener("click", (event) => {
      event.preventDefault();
      this.navigate("");
    });
    // Back and forward move between searches (and the list) without reloading the page.
    window.addEventListener("popstate", () => this.showRoute());
  }

  /** Go to the search for `search` (the agents list when empty): a new entry in the history, run afresh. */
  navigate(search) {
    history.pushState(null, "", search ? `/${query({ search })}` : "/");
    this.showRoute(true);
  }

  /** Show what the address asks for: the results of ?search=, or the agents (with ?find= in the filter box). */
  showRoute(again = false) {
    const params = new URLSearchParams(location.search);
    const search = (params.get("search") || "").trim();
    this.searching = Boolean(search);
    this.el.filter.value = params.get("find") || "";
    this.el.searchInput.value = search;
    this.page.classList.toggle("searching", this.searching);
    this.el.results.hidden = !this.searching;
    if (!this.searching) this.results.clear();
    else if (again || search !== this.results.q) this.results.show(search);
    this.setTitle(this.searching ? `Search: ${search}` : "Agents");
    this.render();
  }

  connect() {
    this.setConnection("connecting");
    this.feed = this.live.followAgents({
      onEvent: (data) => this.onEvent(data),
      onState: (state, detail) => {
        if (state === "open") this.setConnection("live");
        else if (state === "reconnecting") this.setConnection("reconnecting");
        else if (state === "ended" || state === "failed") this.setConnection("ended", detail);
      },
    });
  }

  setConnection(state, detail) {
    const text = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", ended: "stopped" }[state];
    this.el.connection.dataset.state = state === "live" ? "connected" : state === "ended" ? "error" : state;
    this.el.connection.querySelector(".connection-text").textContent = detail ? `${text}: ${detail}` : text;
  }

  onEvent(data) {
    if (data.type === "snapshot") this.agents.clear();
    for (const agent of data.agents || []) {
      if (data.type === "removed") {
        this.agents.delete(agent.id);
        this.selected.delete(agent.id);
        this.failures.forget(agent.id);
      } else {
        this.failures.see(agent);
        const known = this.agents.get(agent.id);
        if (!known || known.name !== agent.name) this.renamed = true;
        this.agents.set(agent.id, agent);
      }
    }
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    const words = this.el.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const agents = [...this.agents.values()]
      .filter((agent) => words.every((word) => haystack(agent).includes(word)))
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? -1 : 1));
    const seen = new Set();
    let previous = null;
    for (const agent of agents) {
      seen.add(agent.id);
      let row = this.rows.get(agent.id);
      if (!row) {
        row = this.buildRow(agent.id);
        this.rows.set(agent.id, row);
      }
      this.fillRow(row, agent);
      const expected = previous ? previous.nextSibling : this.el.list.firstChild;
      if (expected !== row) this.el.list.insertBefore(row, expected);
      previous = row;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.remove();
        this.sparks.forget(row.querySelector(".spark"));
        this.rows.delete(id);
      }
    }
    const running = [...this.agents.values()].filter((agent) => agent.status === "running").length;
    const total = this.agents.size;
    this.el.summary.textContent =
      `${total} agent${total === 1 ? "" : "s"} · ${running} running` +
      (agents.length !== total ? ` · ${agents.length} shown` : "");
    this.el.empty.hidden = total !== 0;
    this.showSelection();
    if (this.renamed && this.searching) this.results.refreshNames();
    this.renamed = false;
  }

  buildRow(id) {
    const row = document.getElementById("agent-row").content.firstElementChild.cloneNode(true);
    row.dataset.id = id;
    row.querySelector(".pick").setAttribute("aria-label", `Select ${id}`);
    return row;
  }

  fillRow(row, agent) {
    const href = `/${query({ agent: agent.id })}`;
    const badge = row.querySelector(".badge");
    badge.className = `badge status-${agent.status}`;
    badge.textContent = agent.status;
    badge.title = agent.reason ? `${agent.status}: ${agent.reason}` : agent.status;
    const link = row.querySelector(".agent-name");
    link.href = href;
    link.textContent = agent.name || agent.id;
    row.querySelector(".agent-id").textContent = agent.name && agent.name !== agent.id ? agent.id : "";
    const labels = row.querySelector(".labels");
    const text = JSON.stringify(agent.labels);
    if (labels.dataset.text !== text) {
      labels.dataset.text = text;
      labels.textContent = "";
      for (const [key, value] of Object.entries(agent.labels || {})) {
        const chip = document.createElement("a");
        chip.className = "label";
        chip.href = `/${query({ label: `${key}=${value}` })}`;
        chip.title = `Open every agent with ${key}=${value}, merged`;
        chip.textContent = `${key}=${value}`;
        labels.appendChild(chip);
      }
    }
    const count = row.querySelector(".line-count");
    count.textContent = agent.line_count.toLocaleString();
    count.appendChild(Object.assign(document.createElement("span"), {
      className: "unit",
      textContent: agent.line_count === 1 ? " line" : " lines",
    }));
    const when = row.querySelector(".activity");
    when.dataset.ts = String(agent.last_line_at || agent.updated_at || agent.created_at);
    when.textContent = ago(Number(when.dataset.ts));
    when.title = new Date(Number(when.dataset.ts) * 1000).toLocaleString();
    this.sparks.watch(row.querySelector(".spark"), agent);
    row.querySelector(".pick").checked = this.selected.has(agent.id);
    row.classList.toggle("is-running", agent.status === "running");
  }

  tick() {
    for (const when of this.el.list.querySelectorAll(".activity")) when.textContent = ago(Number(when.dataset.ts));
  }

  onClick(event) {
    if (event.target.closest("a, input, label, button")) return;
    const row = event.target.closest(".agent-row");
    if (row) location.href = `/${query({ agent: row.dataset.id })}`;
  }

  onSelect(event) {
    const box = event.target.closest(".pick");
    if (!box) return;
    const id = box.closest(".agent-row").dataset.id;
    if (box.checked) this.selected.add(id);
    else this.selected.delete(id);
    this.showSelection();
  }

  showSelection() {
    const ids = [...this.selected].filter((id) => this.agents.has(id));
    this.el.together.hidden = ids.length < 2;
    this.el.together.href = `/${query({ agent: ids })}`;
    this.el.together.textContent = `Open ${ids.length} together`;
  }
}

/**
 * Show the agents page in `root`.
 * @param {HTMLElement} root
 * @param {{followAgents: Function}} live  The tab's connection to the shared live data (live.js).
 * @param {(title: string) => void} setTitle
 * @returns {AgentsPage}
 */
export function showAgentsPage(root, live, setTitle) {
  return new AgentsPage(root, live, setTitle);
}
