/**
 * Stop and Share on one agent's page, and the read-only view a share link opens.
 *
 * Stop asks for a confirmation, then POSTs /api/agents/{id}/stop (the run's own process stops it: `sentra run`
 * interrupts its command). Share makes a link with a chosen lifetime, shows it for copying, and lists the agent's
 * links with a Revoke button each.
 *
 * A share link is /?agent=ID#share=TOKEN. takeShareLink() takes the token out of the address bar before anything
 * else reads the address (history.replaceState), and the page then signs in with it as with a pasted token (the
 * HttpOnly session cookie, so page scripts never hold it), unless the browser's own session may already read the
 * agent. A session whose subject is "share:…" is a link's: the page says so and offers no control.
 *
 * @module runcontrol
 */

import { agentPath, api, copyText, toast } from "./api.js";

/** The subject of a share link's token starts with this. */
const SHARE_SUBJECT = "share:";
/** The lifetimes offered for a new link: [ttl, label]; the server refuses more than auth.max_share_ttl. */
const TTLS = [
  ["1h", "1 hour"],
  ["24h", "1 day"],
  ["7d", "7 days"],
  ["30d", "30 days"],
];
const DEFAULT_TTL = "24h";

/**
 * Take a share link's token out of the address bar (#share=TOKEN), leaving the rest of the address.
 * @returns {string|null}  The token, or null when the address holds none.
 */
export function takeShareLink() {
  const match = /^#share=([A-Za-z0-9._~-]+)$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", `${location.pathname}${location.search}`);
  return match[1];
}

/**
 * The token to sign in with for a share link: null when the browser's own session already reads the agent (its
 * owner opening the link keeps their session), else the link's.
 * @param {string|null} token  From takeShareLink().
 * @returns {Promise<string|null>}
 */
export async function shareSignIn(token) {
  if (!token) return null;
  const agent = new URLSearchParams(location.search).get("agent");
  if (!agent) return token;
  try {
    await api(agentPath(agent));
    return null;
  } catch {
    return token;
  }
}

/**
 * Is this session a share link's?
 * @param {{subject?: string}|null} session
 * @returns {boolean}
 */
export function isShared(session) {
  return Boolean(session && session.subject && session.subject.startsWith(SHARE_SUBJECT));
}

/**
 * Mark the page as a share link's read-only view: the header says so, and the webhooks link goes.
 * @param {{subject?: string}|null} session
 */
export function markShared(session) {
  if (!isShared(session)) return;
  document.body.classList.add("shared-view");
  const who = document.querySelector(".who");
  who.textContent = "Shared link · read-only";
  who.title = "You are viewing one run through a share link; it can be revoked by its owner.";
  document.querySelector(".settings-link").hidden = true;
}

let sessionRead = null;

/** The signed-in session, read once per page. */
function currentSession() {
  if (!sessionRead) sessionRead = api("/api/session").catch(() => null);
  return sessionRead;
}

function button(text, className, extra = {}) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  Object.assign(element, extra);
  return element;
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

/** The Stop and Share controls of one agent's page. */
export class RunControl {
  /**
   * @param {HTMLElement} page  The log page (its .page-head gets the buttons; the panels go below it).
   * @param {string} agentId
   */
  constructor(page, agentId) {
    this.agentId = agentId;
    this.agent = null;
    const head = page.querySelector(".page-head");
    this.box = document.createElement("span");
    this.box.className = "run-control";
    this.stop = button("Stop", "stop-run", { hidden: true, title: "Ask this run to stop" });
    this.share = button("Share", "share-run", { hidden: true, title: "A read-only link to this run" });
    this.share.setAttribute("aria-expanded", "false");
    this.box.append(this.stop, this.share);
    head.insertBefore(this.box, head.querySelector(".connection"));
    this.confirm = this.buildConfirm();
    this.panel = this.buildPanel();
    head.after(this.confirm, this.panel);
    this.stop.addEventListener("click", () => this.askStop());
    this.share.addEventListener("click", () => this.togglePanel());
  }

  buildConfirm() {
    const box = document.createElement("div");
    box.className = "stop-confirm";
    box.setAttribute("role", "group");
    box.hidden = true;
    const text = document.createElement("span");
    text.className = "confirm-text";
    text.textContent = "Stop this run? Its process is told to stop (sentra run interrupts its command) and the run fails.";
    this.stopYes = button("Yes, stop", "stop-yes danger");
    this.stopNo = button("Cancel", "stop-no");
    this.stopYes.addEventListener("click", () => this.requestStop());
    this.stopNo.addEventListener("click", () => this.closeConfirm());
    box.append(text, this.stopYes, this.stopNo);
    return box;
  }

  buildPanel() {
    const panel = document.createElement("section");
    panel.className = "share-panel";
    panel.setAttribute("aria-label", "Share this run");
    panel.hidden = true;
    const form = document.createElement("div");
    form.className = "share-form";
    const label = document.createElement("label");
    label.textContent = "Link valid for ";
    this.ttl = document.createElement("select");
    this.ttl.className = "share-ttl";
    for (const [value, text] of TTLS) this.ttl.add(new Option(text, value, false, value === DEFAULT_TTL));
    label.appendChild(this.ttl);
    this.create = button("Create link", "share-create primary");
    this.create.addEventListener("click", () => this.createLink());
    form.append(label, this.create);
    this.made = document.createElement("div");
    this.made.className = "share-made";
    this.made.hidden = true;
    this.url = document.createElement("input");
    this.url.className = "share-url";
    this.url.readOnly = true;
    this.url.setAttribute("aria-label", "Share link");
    const copy = button("Copy link", "share-copy");
    copy.addEventListener("click", async () => toast((await copyText(this.url.value)) ? "Link copied" : "Copy failed"));
    const note = document.createElement("p");
    note.className = "share-note";
    note.textContent = "Anyone with this link can read this run, and only this run, until it expires or is revoked.";
    this.made.append(this.url, copy, note);
    this.status = document.createElement("p");
    this.status.className = "share-status";
    this.status.setAttribute("role", "status");
    this.list = document.createElement("ul");
    this.list.className = "share-list";
    this.list.setAttribute("aria-label", "Links to this run");
    panel.append(form, this.made, this.status, this.list);
    return panel;
  }

  /**
   * Show the controls this agent and session allow.
   * @param {object|undefined} agent  The agent record (undefined while it does not exist yet).
   */
  async update(agent) {
    this.agent = agent || null;
    const session = await currentSession();
    if (!agent || !session || isShared(session)) {
      this.stop.hidden = this.share.hidden = true;
      return;
    }
    const authOff = session.auth === "none";
    const owner = authOff || session.subject === agent.owner;
    const admin = (session.scopes || []).includes("admin");
    const running = agent.status === "running";
    this.stop.hidden = !running || !(owner || admin);
    this.stop.disabled = Boolean(agent.stop_requested);
    this.stop.textContent = agent.stop_requested ? "Stop requested" : "Stop";
    if (!running || agent.stop_requested) this.closeConfirm();
    this.share.hidden = !owner || authOff;
  }

  askStop() {
    this.confirm.hidden = false;
    this.stopNo.focus();
  }

  closeConfirm() {
    this.confirm.hidden = true;
  }

  async requestStop() {
    this.stopYes.disabled = true;
    try {
      const agent = await api(agentPath(this.agentId, "/stop"), { method: "POST" });
      this.closeConfirm();
      toast(`Stop requested by ${agent.stop_requested_by}`);
      await this.update(agent);
    } catch (error) {
      toast(error.message);
    } finally {
      this.stopYes.disabled = false;
    }
  }

  async togglePanel() {
    const open = this.panel.hidden;
    this.panel.hidden = !open;
    this.share.setAttribute("aria-expanded", String(open));
    if (open) await this.showLinks();
  }

  async createLink() {
    this.create.disabled = true;
    try {
      const link = await api(agentPath(this.agentId, "/share"), { method: "POST", body: { ttl: this.ttl.value } });
      this.url.value = link.url;
      this.made.dataset.id = link.id;
      this.made.hidden = false;
      this.url.focus();
      this.url.select();
      this.status.textContent = `Link created; it expires ${when(link.expires_at)}.`;
      await this.showLinks();
    } catch (error) {
      this.status.textContent = error.message;
    } finally {
      this.create.disabled = false;
    }
  }

  async showLinks() {
    let shares;
    try {
      ({ shares } = await api(agentPath(this.agentId, "/shares")));
    } catch (error) {
      this.status.textContent = error.message;
      return;
    }
    this.list.replaceChildren(
      ...shares.map((share) => {
        const item = document.createElement("li");
        item.className = "share-item";
        item.dataset.id = share.id;
        const text = document.createElement("span");
        text.textContent = `Link made ${when(share.created_at)}, expires ${when(share.expires_at)}`;
        const revoke = button("Revoke", "share-revoke");
        revoke.addEventListener("click", () => this.revoke(share.id));
        item.append(text, revoke);
        return item;
      }),
    );
  }

  async revoke(shareId) {
    try {
      await api(agentPath(this.agentId, `/share/${encodeURIComponent(shareId)}`), { method: "DELETE" });
      this.status.textContent = "Link revoked: it stops working within a second.";
      if (this.made.dataset.id === shareId) this.made.hidden = true;
      await this.showLinks();
    } catch (error) {
      this.status.textContent = error.message;
    }
  }
}
