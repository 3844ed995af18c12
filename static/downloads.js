/**
 * The log page's Download menu, following the view's filters. One agent's log comes from the server's history
 * endpoint, which filters by `level` and `q` itself; it has no source filter, so with one the NDJSON it sends is
 * filtered here, line by line, and saved in the format asked for. Several agents' are the lines the view shows.
 *
 * @module downloads
 */

import { agentPath, query, toast } from "./api.js";
import { LEVELS, lineText } from "./rows.js";

/** The two formats: the server's `format` and the menu's words. */
const FORMATS = [
  ["text", "Text (.log)"],
  ["ndjson", "NDJSON"],
];

/**
 * What the filters keep, in words ("" without filters).
 * @param {{level: number, q: string, source: string}} filters
 * @returns {string}
 */
export function describeFilters({ level, q, source }) {
  const parts = [];
  if (level) parts.push(`${LEVELS[level]} and above`);
  if (q) parts.push(`containing “${q}”`);
  if (source) parts.push(`from ${source}`);
  return parts.length ? `Only lines ${parts.join(", ")}` : "";
}

/**
 * Fill the menu for the view as it is now.
 * @param {HTMLElement} box
 * @param {{multi: boolean, agentId: string, filters: {level: number, q: string, source: string},
 *          shown: () => object[]}} view  `shown` gives the lines the view shows (for several agents).
 */
export function fillDownloads(box, view) {
  box.textContent = "";
  const note = describeFilters(view.filters);
  if (note) box.appendChild(Object.assign(document.createElement("p"), { className: "download-note", textContent: note }));
  if (view.multi) {
    for (const [format, label] of FORMATS) {
      box.appendChild(button(`Shown lines (${format === "text" ? ".log" : label})`, () => saveShown(view.shown(), format)));
    }
    return;
  }
  const { level, q, source } = view.filters;
  const path = (format) => agentPath(view.agentId, "/logs") + query({ format, level: level ? LEVELS[level] : null, q });
  for (const [format, label] of FORMATS) {
    if (!source) {
      const link = Object.assign(document.createElement("a"), { href: path(format), textContent: label });
      link.setAttribute("download", "");
      box.appendChild(link);
    } else {
      box.appendChild(button(label, () => saveBySource(path("ndjson"), view.agentId, source, format)));
    }
  }
}

function button(text, onClick) {
  const element = Object.assign(document.createElement("button"), { type: "button", textContent: text });
  element.addEventListener("click", onClick);
  return element;
}

/** The server's NDJSON with only the lines of one source, saved as NDJSON (its very lines) or as its text. */
async function saveBySource(path, agentId, source, format) {
  let body;
  try {
    const response = await fetch(path, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    body = await response.text();
  } catch (error) {
    toast(`Download failed: ${error.message}`);
    return;
  }
  const out = [];
  for (const raw of body.split("\n")) {
    if (!raw) continue;
    const line = JSON.parse(raw);
    if (line.source !== source) continue;
    // The same bytes the server's download would hold: each NDJSON record as sent, or the message (format=text).
    out.push(format === "ndjson" ? `${raw}\n` : `${line.message}\n`);
  }
  save(out.join(""), format, agentId);
}

function saveShown(lines, format) {
  const text =
    format === "ndjson"
      ? lines.map((line) => JSON.stringify(pick(line))).join("\n") + "\n"
      : lines.map((line) => `${line.agent} ${lineText(line)}`).join("\n") + "\n";
  save(text, format, "sentra-merged");
}

function save(text, format, name) {
  const blob = new Blob([text], { type: format === "ndjson" ? "application/x-ndjson" : "text/plain" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${name}.${format === "ndjson" ? "ndjson" : "log"}`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function pick(line) {
  const { agent, seq, ts, level, message, source, fields } = line;
  return { agent, seq, ts, level, message, source, fields };
}
