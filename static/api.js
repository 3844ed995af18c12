/**
 * The viewer's calls to Sentra's JSON API (same origin, authenticated by the session cookie).
 *
 * @module api
 */

/** An error answer of the API: {"error": {"code", "message"}} and its HTTP status. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Call the API and return the decoded JSON (null for an empty answer); throws ApiError on an error status.
 * @param {string} path  e.g. "/api/agents?limit=10"
 * @param {object} [options]
 * @param {string} [options.method]
 * @param {object} [options.body]  Sent as JSON.
 * @param {AbortSignal} [options.signal]
 * @returns {Promise<any>}
 */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "Sentra cannot be reached");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : { code: "http_error", message: `HTTP ${response.status}` };
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

/**
 * The API path of an agent (or one of its sub-resources).
 * @param {string} agentId
 * @param {string} [suffix]  e.g. "/logs"
 * @returns {string}
 */
export function agentPath(agentId, suffix = "") {
  return `/api/agents/${encodeURIComponent(agentId)}${suffix}`;
}

/**
 * A query string from an object, leaving out empty values; arrays repeat the key.
 * @param {Record<string, string|number|string[]|null|undefined>} params
 * @returns {string}  "" or "?a=1&b=2"
 */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== null && item !== undefined && item !== "") search.append(key, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * Copy text to the clipboard; resolves true when it worked.
 * @param {string} text
 * @returns {Promise<boolean>}
 */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

/**
 * Show a short message at the bottom of the page.
 * @param {string} text
 */
export function toast(text) {
  let box = document.querySelector(".toast");
  if (!box) {
    box = document.createElement("div");
    box.className = "toast";
    box.setAttribute("role", "status");
    document.body.appendChild(box);
  }
  box.textContent = text;
  box.classList.add("show");
  clearTimeout(box.hideTimer);
  box.hideTimer = setTimeout(() => box.classList.remove("show"), 1600);
}
