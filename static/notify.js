/**
 * Desktop notifications when a run the person is watching fails: the agents list (its live feed) or an agent's
 * page (its lines stream's final event) is open, and an agent's status turns `failed`.
 *
 * Nothing is asked on page load. A toggle in the header ("Notify on failure") asks the browser's permission when
 * first pressed; the choice to be notified is kept in localStorage, and a browser that blocks notifications
 * shows the toggle disabled, saying so. Each notification is tagged with the agent's id, so several open tabs
 * that see the same failure show it once.
 *
 * @module notify
 */

/** localStorage key of the person's choice ("on" or absent). */
const STORAGE_KEY = "sentra-notify-failures";
/** Characters of the failure's reason in a notification's body. */
const REASON_CHARS = 200;
const SVG = "http://www.w3.org/2000/svg";
const BELL_PATH = "M8 1.5A4.5 4.5 0 0 0 3.5 6v2.8L2 11v1h12v-1l-1.5-2.2V6A4.5 4.5 0 0 0 8 1.5ZM6.2 13a1.8 1.8 0 0 0 3.6 0Z";

function supported() {
  return typeof window.Notification === "function";
}

function wanted() {
  try {
    return localStorage.getItem(STORAGE_KEY) === "on";
  } catch {
    return false; // storage blocked: the toggle still works for this page
  }
}

function remember(on) {
  try {
    if (on) localStorage.setItem(STORAGE_KEY, "on");
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage blocked: the choice lasts as long as the page
  }
}

/** True when a failure should show a notification now. */
function enabled() {
  return supported() && Notification.permission === "granted" && wanted();
}

/**
 * Show that agent `agent` failed, if the person asked for it. A click on the notification opens its page.
 * @param {{id: string, name?: string, reason?: string|null}} agent
 */
export function notifyFailed(agent) {
  if (!enabled()) return;
  const reason = agent.reason ? String(agent.reason) : "";
  const notification = new Notification(`Run failed: ${agent.name || agent.id}`, {
    body: reason.length > REASON_CHARS ? `${reason.slice(0, REASON_CHARS)}…` : reason || `agent ${agent.id}`,
    tag: `sentra-failed-${agent.id}`,
    icon: "/favicon.svg",
  });
  notification.onclick = () => {
    window.focus();
    location.assign(`/?${new URLSearchParams({ agent: agent.id })}`);
  };
}

/** The statuses of the agents a page has seen, to notice the moment one of them turns `failed`. */
export class FailureWatch {
  constructor() {
    this.statuses = new Map();
  }

  /**
   * The agent's status as the page learnt it now: a notification if it was known and not failed, and is now.
   * An agent first seen already failed says nothing (it failed before the page watched it).
   * @param {{id: string, status: string, name?: string, reason?: string|null}} agent
   */
  see(agent) {
    const before = this.statuses.get(agent.id);
    this.statuses.set(agent.id, agent.status);
    if (agent.status === "failed" && before !== undefined && before !== "failed") notifyFailed(agent);
  }

  /** @param {string} id  An agent the page no longer shows. */
  forget(id) {
    this.statuses.delete(id);
  }
}

/** A bell drawn in SVG (an emoji bell needs a colour font that not every system has). */
function bellIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("bell");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", BELL_PATH);
  path.setAttribute("fill", "currentColor");
  svg.appendChild(path);
  return svg;
}

function showState(button) {
  const blocked = supported() && Notification.permission === "denied";
  const on = enabled();
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("on", on);
  button.disabled = blocked;
  button.title = blocked
    ? "Notifications are blocked for this site in the browser's settings"
    : on
      ? "You get a desktop notification when a run you watch fails (click to stop)"
      : "Get a desktop notification when a run you watch fails";
}

/**
 * Put the "Notify on failure" toggle into `container` (the page header), before `before`. Hidden where the
 * browser has no Notification API.
 * @param {HTMLElement} container
 * @param {Element|null} before
 * @returns {HTMLButtonElement|null}
 */
export function showNotifyToggle(container, before) {
  if (!supported()) return null;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "notify-toggle";
  button.setAttribute("aria-label", "Notify on failure");
  const bell = bellIcon();
  const label = document.createElement("span");
  label.className = "notify-label";
  label.textContent = "Notify on failure";
  button.append(bell, label);
  button.addEventListener("click", async () => {
    if (enabled()) {
      remember(false);
    } else {
      // Asked only here, on the person's click: browsers refuse (or hide) prompts a page makes by itself.
      const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
      remember(permission === "granted");
    }
    showState(button);
  });
  container.insertBefore(button, before);
  showState(button);
  return button;
}
