/**
 * One webhook's last delivery attempts on the webhooks page, as a table (time, event, result, HTTP status, attempt,
 * error) read from GET /api/webhooks/{id}/deliveries, newest first; refreshed on request, and watched for a while
 * after a test is sent until the test's first attempt is listed.
 *
 * @module deliveries
 */

import { api } from "./api.js";
import { formatWhen } from "./search.js";

/** How often, and how many times, the table is read again while waiting for a test's first attempt. */
const WATCH_EVERY_MS = 700;
const WATCH_TIMES = 20;
/** How a result reads in the table. */
const RESULTS = { delivered: "delivered", failed: "failed, will retry", refused: "refused, will retry", gave_up: "gave up" };

/**
 * The API path of a webhook (or one of its sub-resources).
 * @param {string} hookId
 * @param {string} [suffix]  e.g. "/deliveries"
 * @returns {string}
 */
export function hookPath(hookId, suffix = "") {
  return `/api/webhooks/${encodeURIComponent(hookId)}${suffix}`;
}

/**
 * What an attempt came to, in words: "delivered (HTTP 204)", "failed, will retry (HTTP 500)".
 * @param {{result: string, status: number|null, error: string|null}} attempt
 * @returns {string}
 */
export function describeAttempt(attempt) {
  const result = RESULTS[attempt.result] || attempt.result;
  if (attempt.status) return `${result} (HTTP ${attempt.status})`;
  return attempt.error ? `${result}: ${attempt.error}` : result;
}

/** The deliveries panel of one webhook: its table, its Refresh button and its status line. */
export class DeliveriesPanel {
  /**
   * @param {HTMLElement} box  The .hook-deliveries element of the webhook's item.
   * @param {string} hookId
   * @param {() => void} onRead  Called after each read, so the webhook's own state can be read again too.
   */
  constructor(box, hookId, onRead) {
    this.box = box;
    this.hookId = hookId;
    this.onRead = onRead;
    this.body = box.querySelector("tbody");
    this.status = box.querySelector(".deliveries-status");
    this.watchTimer = 0;
    box.querySelector(".deliveries-refresh").addEventListener("click", () => this.refresh());
  }

  /** Read the deliveries and show them; resolves to the attempts read (null when the read failed). */
  async refresh() {
    this.status.textContent = "reading…";
    let attempts;
    try {
      ({ deliveries: attempts } = await api(hookPath(this.hookId, "/deliveries")));
    } catch (error) {
      this.status.textContent = `Could not read the deliveries: ${error.message}`;
      return null;
    }
    this.show(attempts);
    this.status.textContent = attempts.length
      ? `${attempts.length} attempt${attempts.length === 1 ? "" : "s"}, newest first · read ${formatWhen(Date.now() / 1000)}`
      : "No deliveries yet.";
    this.onRead();
    return attempts;
  }

  /** Fill the table with `attempts`, newest first. */
  show(attempts) {
    const rows = attempts.map((attempt) => {
      const row = document.createElement("tr");
      row.className = `result-${attempt.result}`;
      row.dataset.id = attempt.id;
      const time = document.createElement("td");
      time.textContent = formatWhen(attempt.at);
      time.title = new Date(attempt.at * 1000).toLocaleString();
      const event = document.createElement("td");
      event.textContent = attempt.event;
      event.title = `webhook-id ${attempt.id}`;
      const cells = [RESULTS[attempt.result] || attempt.result, attempt.status ?? "—", attempt.attempt, attempt.error || ""];
      row.append(time, event, ...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
      return row;
    });
    this.body.replaceChildren(...rows);
  }

  /**
   * Read the deliveries again every WATCH_EVERY_MS (WATCH_TIMES at most) until message `messageId` has an attempt.
   * @param {string} messageId  The webhook-id of the message sent.
   * @returns {Promise<object|null>}  Its newest attempt, or null if none came while watching.
   */
  async watchFor(messageId) {
    clearTimeout(this.watchTimer);
    for (let round = 0; round < WATCH_TIMES; round += 1) {
      const attempts = await this.refresh();
      if (!attempts) return null; // the status line says why the deliveries could not be read
      const found = attempts.find((attempt) => attempt.id === messageId);
      if (found) return found;
      await new Promise((resolve) => {
        this.watchTimer = setTimeout(resolve, WATCH_EVERY_MS);
      });
    }
    return null;
  }
}
