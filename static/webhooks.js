/**
 * The webhooks page (/?settings=webhooks): the caller's webhooks with their state (ok, or failing since when) and
 * last delivery, a form that adds one and shows its secret once, and per webhook "Send test", its last deliveries
 * (deliveries.js) and "Remove" after a confirmation. Every refusal of the API is shown in its own words.
 *
 * @module webhooks
 */

import { api, copyText, toast } from "./api.js";
import { DeliveriesPanel, describeAttempt, hookPath } from "./deliveries.js";
import { formatWhen } from "./search.js";

const HOOKS = "/api/webhooks";
const LINES_MATCHED = "lines.matched";
const FORMATS = { standard: "Standard Webhooks", slack: "Slack ({\"text\"})" };

/** "12:03:04.120" today, with the day otherwise; its full local date and time on hover. */
function setTime(element, ts) {
  element.textContent = ts ? formatWhen(ts) : "never";
  element.title = ts ? new Date(ts * 1000).toLocaleString() : "";
}

/** One webhook's item in the list: its facts, its buttons and its deliveries panel. */
class HookItem {
  constructor(page, hook) {
    this.page = page;
    this.id = hook.id;
    const item = document.getElementById("webhook-item").content.firstElementChild.cloneNode(true);
    item.dataset.id = hook.id;
    this.item = item;
    const $ = (selector) => item.querySelector(selector);
    this.el = {
      status: $(".hook-status"),
      url: $(".hook-url"),
      failing: $(".hook-failing"),
      feedback: $(".hook-feedback"),
      test: $(".hook-test"),
      toggle: $(".hook-toggle"),
      remove: $(".hook-remove"),
      confirm: $(".hook-confirm"),
      yes: $(".hook-remove-yes"),
      no: $(".hook-remove-no"),
      deliveries: $(".hook-deliveries"),
    };
    // The buttons of every item are named alike; each is described by its webhook's URL.
    const urlId = `hook-url-${hook.id}`;
    this.el.url.id = urlId;
    for (const button of [this.el.test, this.el.toggle, this.el.remove, this.el.yes]) {
      button.setAttribute("aria-describedby", urlId);
    }
    this.el.deliveries.id = `hook-deliveries-${hook.id}`;
    this.el.toggle.setAttribute("aria-controls", this.el.deliveries.id);
    this.el.confirm.setAttribute("aria-label", "Confirm removal");
    this.panel = new DeliveriesPanel(this.el.deliveries, hook.id, () => this.reread());
    this.el.test.addEventListener("click", () => this.sendTest());
    this.el.toggle.addEventListener("click", () => this.showDeliveries(this.el.deliveries.hidden));
    this.el.remove.addEventListener("click", () => this.askRemove(true));
    this.el.no.addEventListener("click", () => this.askRemove(false));
    this.el.yes.addEventListener("click", () => this.remove());
    this.el.confirm.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.askRemove(false);
    });
    this.fill(hook);
  }

  /** Show the webhook's settings and state. */
  fill(hook) {
    const failing = hook.status === "failing";
    this.item.classList.toggle("is-failing", failing);
    this.el.status.className = `badge hook-status status-${failing ? "failed" : "ok"}`;
    this.el.status.textContent = failing ? "failing" : "ok";
    this.el.url.textContent = hook.url;
    this.el.failing.hidden = !failing;
    if (failing) {
      this.el.failing.textContent = `Failing since ${formatWhen(hook.failing_since)}: every delivery since has failed.`;
      this.el.failing.title = new Date(hook.failing_since * 1000).toLocaleString();
    }
    const fact = (name, value) => {
      this.item.querySelector(`.hook-${name}-text`).textContent = value ?? "";
      const holder = this.item.querySelector(`.hook-${name}-fact`);
      if (holder) holder.hidden = value === null || value === undefined;
    };
    fact("events", hook.events.join(", "));
    fact("format", FORMATS[hook.format] || hook.format);
    fact("label", hook.label);
    fact("level", hook.min_level);
    fact("contains", hook.contains);
    setTime(this.item.querySelector(".hook-last"), hook.last_delivery_at);
  }

  /** Read the webhook again (its state changes as deliveries succeed or fail). */
  async reread() {
    try {
      this.fill(await api(hookPath(this.id)));
      this.page.showCount();
    } catch {
      // The list says what is wrong when it is next read; the deliveries already on screen stay.
    }
  }

  showDeliveries(open) {
    this.el.deliveries.hidden = !open;
    this.el.toggle.setAttribute("aria-expanded", String(open));
    if (open) this.panel.refresh();
  }

  async sendTest() {
    this.el.test.disabled = true;
    this.el.feedback.textContent = "Sending a test…";
    try {
      const sent = await api(hookPath(this.id, "/test"), { method: "POST" });
      this.el.feedback.textContent = `Test queued (${sent.id}); waiting for its delivery…`;
      this.showDeliveries(true);
      const attempt = await this.panel.watchFor(sent.id);
      this.el.feedback.textContent = attempt
        ? `Test ${describeAttempt(attempt)}.`
        : "The test has not been tried yet; Refresh the deliveries to see it.";
    } catch (error) {
      this.el.feedback.textContent = `The test could not be sent: ${error.message}`;
    } finally {
      this.el.test.disabled = false;
    }
  }

  askRemove(asking) {
    this.el.confirm.hidden = !asking;
    this.el.remove.hidden = asking;
    (asking ? this.el.yes : this.el.remove).focus();
  }

  async remove() {
    this.el.yes.disabled = true;
    try {
      await api(hookPath(this.id), { method: "DELETE" });
      this.page.removed(this);
    } catch (error) {
      this.el.feedback.textContent = `Not removed: ${error.message}`;
      this.el.yes.disabled = false;
    }
  }
}

class WebhooksPage {
  constructor(root, setTitle) {
    const page = document.getElementById("webhooks-page").content.firstElementChild.cloneNode(true);
    root.appendChild(page);
    const $ = (selector) => page.querySelector(selector);
    this.el = {
      summary: $(".summary"),
      heading: $("#hooks-heading"),
      status: $(".hooks-status"),
      list: $(".hook-list"),
      form: $(".hook-form"),
      url: $("#hook-url"),
      lines: $(".hook-lines"),
      error: $(".hook-form-error"),
      secretBox: $(".secret-box"),
      secret: $(".secret"),
    };
    this.items = new Map();
    this.el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    // The lines filters belong to lines.matched: they can be set only while it is ticked.
    this.el.form.addEventListener("change", () => {
      this.el.lines.disabled = !this.el.form.querySelector(`[value="${LINES_MATCHED}"]`).checked;
    });
    $(".copy-secret").addEventListener("click", async () => {
      toast((await copyText(this.el.secret.textContent)) ? "Secret copied" : "Could not copy: select it and copy");
    });
    $(".secret-done").addEventListener("click", () => {
      this.el.secret.textContent = "";
      this.el.secretBox.hidden = true;
      this.el.url.focus();
    });
    setTitle("Webhooks");
    this.load();
  }

  /** Read the caller's webhooks and show them, oldest first. */
  async load() {
    this.el.status.textContent = "reading…";
    let hooks;
    try {
      ({ webhooks: hooks } = await api(HOOKS));
    } catch (error) {
      this.el.status.textContent = `Could not read your webhooks: ${error.message}`;
      return;
    }
    for (const hook of hooks) {
      const known = this.items.get(hook.id);
      if (known) known.fill(hook);
      else this.append(hook);
    }
    this.showCount();
  }

  append(hook) {
    const item = new HookItem(this, hook);
    this.items.set(hook.id, item);
    this.el.list.appendChild(item.item);
  }

  showCount() {
    const count = this.items.size;
    const failing = [...this.items.values()].filter((item) => item.item.classList.contains("is-failing")).length;
    this.el.summary.textContent = `${count} webhook${count === 1 ? "" : "s"}${failing ? ` · ${failing} failing` : ""}`;
    this.el.status.textContent = count ? "" : "No webhooks yet: add one below.";
  }

  /** The form's fields as a POST /api/webhooks body (empty optional fields left out). */
  formBody() {
    const data = new FormData(this.el.form);
    const body = { url: String(data.get("url") || "").trim(), events: data.getAll("events"), format: data.get("format") };
    const label = String(data.get("label") || "").trim();
    if (label) body.label = label;
    if (body.events.includes(LINES_MATCHED)) {
      const level = data.get("min_level");
      const contains = String(data.get("contains") || "");
      if (level) body.min_level = level;
      if (contains) body.contains = contains;
    }
    return body;
  }

  async add() {
    const submit = this.el.form.querySelector("[type=submit]");
    submit.disabled = true;
    this.showError(null);
    try {
      const hook = await api(HOOKS, { method: "POST", body: this.formBody() });
      const { secret, ...shown } = hook;
      this.append(shown);
      this.showCount();
      this.el.form.reset();
      this.el.lines.disabled = true;
      this.el.secret.textContent = secret;
      this.el.secretBox.hidden = false;
      this.el.secretBox.focus();
    } catch (error) {
      this.showError(error.message, ["invalid_url", "target_not_allowed"].includes(error.code));
    } finally {
      submit.disabled = false;
    }
  }

  /** Say why the API refused the form (nothing for null); `aboutUrl` marks the URL field as the one to fix. */
  showError(message, aboutUrl = false) {
    this.el.error.textContent = message || "";
    this.el.error.hidden = !message;
    if (aboutUrl) this.el.url.setAttribute("aria-invalid", "true");
    else this.el.url.removeAttribute("aria-invalid");
  }

  /** A webhook was removed: take it off the list and say so. */
  removed(item) {
    item.item.remove();
    this.items.delete(item.id);
    this.showCount();
    this.el.status.textContent = `Removed ${item.el.url.textContent}.`;
    this.el.heading.focus();
  }
}

/**
 * Show the webhooks page in `root`.
 * @param {HTMLElement} root
 * @param {(title: string) => void} setTitle
 * @returns {WebhooksPage}
 */
export function showWebhooksPage(root, setTitle) {
  return new WebhooksPage(root, setTitle);
}
