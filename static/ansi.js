/**
 * ANSI escape codes in log messages: SGR colours and styles become spans with classes, everything else
 * (cursor moves, OSC titles, stray control characters) is dropped, so no raw escape ever reaches the page.
 *
 * @module ansi
 */

/**
 * CSI (ESC [ … final), OSC (ESC ] … BEL or ESC \) and other escapes (ESC, intermediates, a final byte: tput sgr0's
 * ESC ( B, ESC 7): the sequences search's rule drops (terms.js).
 */
const ESCAPE = /\x1b(?:\[([0-9;:?<=>]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])/g;
/** Control characters a terminal would not print (tab, newline and ESC are handled apart). */
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g;
/** The most matches highlighted in one message. */
const MAX_HIGHLIGHTS = 500;
/** The 6×6×6 cube and grey ramp of 256-colour mode, as CSS colours (16–255). */
const CUBE_STEPS = [0, 95, 135, 175, 215, 255];

/**
 * @typedef {object} Segment
 * @property {string} text      Plain text.
 * @property {string[]} classes ansi-fg-N / ansi-bg-N (N 0–15), ansi-bold, ansi-dim, ansi-italic,
 *                              ansi-underline, ansi-strike, ansi-inverse-fg, ansi-inverse-bg.
 * @property {string|null} color      A CSS colour for 256-colour and true-colour foregrounds.
 * @property {string|null} background The same for backgrounds.
 */

/**
 * Undo what a terminal would overwrite: CRLF becomes LF, a carriage return keeps only the text after it
 * (progress bars), and non-printing control characters are removed.
 * @param {string} text
 * @returns {string}
 */
export function normalizeControls(text) {
  let out = text.indexOf("\r") >= 0 ? text.replace(/\r+\n/g, "\n") : text;
  if (out.indexOf("\r") >= 0) {
    out = out
      .split("\n")
      .map((line) => {
        const parts = line.split("\r").filter((part) => part.replace(ESCAPE, "") !== "");
        return parts.length ? parts[parts.length - 1] : "";
      })
      .join("\n");
  }
  return out.replace(CONTROL, "");
}

function color256(n) {
  if (n < 16) return n;
  if (n >= 232) {
    const grey = 8 + (n - 232) * 10;
    return `rgb(${grey}, ${grey}, ${grey})`;
  }
  const i = n - 16;
  return `rgb(${CUBE_STEPS[Math.floor(i / 36)]}, ${CUBE_STEPS[Math.floor(i / 6) % 6]}, ${CUBE_STEPS[i % 6]})`;
}

/** Read an extended colour (38/48 ;5;n or ;2;r;g;b) from codes[i…]; returns [colour, codes used]. */
function extendedColor(codes, i) {
  if (codes[i + 1] === 5 && codes.length > i + 2) {
    return [color256(Math.min(255, Math.max(0, codes[i + 2]))), 3];
  }
  if (codes[i + 1] === 2 && codes.length > i + 4) {
    const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.min(255, Math.max(0, v)));
    return [`rgb(${r}, ${g}, ${b})`, 5];
  }
  return [null, codes.length - i];
}

function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    if (code === 0) {
      for (const key of Object.keys(style)) style[key] = key === "fg" || key === "bg" ? null : false;
    } else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 7) style.inverse = true;
    else if (code === 9) style.strike = true;
    else if (code === 22) style.bold = style.dim = false;
    else if (code === 23) style.italic = false;
    else if (code === 24) style.underline = false;
    else if (code === 27) style.inverse = false;
    else if (code === 29) style.strike = false;
    else if (code >= 30 && code <= 37) style.fg = code - 30;
    else if (code >= 90 && code <= 97) style.fg = code - 90 + 8;
    else if (code === 39) style.fg = null;
    else if (code >= 40 && code <= 47) style.bg = code - 40;
    else if (code >= 100 && code <= 107) style.bg = code - 100 + 8;
    else if (code === 49) style.bg = null;
    else if (code === 38 || code === 48) {
      const [value, used] = extendedColor(codes, i);
      if (value !== null) style[code === 38 ? "fg" : "bg"] = value;
      i += used - 1;
    }
  }
}

function segmentFor(text, style) {
  let { fg, bg } = style;
  const classes = [];
  if (style.inverse) {
    [fg, bg] = [bg, fg];
    if (fg === null) classes.push("ansi-inverse-fg");
    if (bg === null) classes.push("ansi-inverse-bg");
  }
  if (typeof fg === "number") classes.push(`ansi-fg-${fg}`);
  if (typeof bg === "number") classes.push(`ansi-bg-${bg}`);
  for (const flag of ["bold", "dim", "italic", "underline", "strike"]) {
    if (style[flag]) classes.push(`ansi-${flag}`);
  }
  return {
    text,
    classes,
    color: typeof fg === "string" ? fg : null,
    background: typeof bg === "string" ? bg : null,
  };
}

/**
 * Split a message into styled segments; only SGR codes (ESC [ … m) carry over, as styles.
 * @param {string} text
 * @returns {Segment[]}
 */
export function parseAnsi(text) {
  const clean = normalizeControls(text);
  const segments = [];
  if (clean.indexOf("\x1b") < 0) {
    return clean ? [{ text: clean, classes: [], color: null, background: null }] : [];
  }
  const style = { fg: null, bg: null };
  let last = 0;
  ESCAPE.lastIndex = 0;
  for (let match = ESCAPE.exec(clean); match !== null; match = ESCAPE.exec(clean)) {
    if (match.index > last) segments.push(segmentFor(clean.slice(last, match.index), style));
    if (match[2] === "m") applySgr(style, match[1]);
    last = ESCAPE.lastIndex;
  }
  if (last < clean.length) segments.push(segmentFor(clean.slice(last), style));
  return segments.filter((segment) => segment.text !== "");
}

/**
 * The message as a terminal would print it, without any escape code.
 * @param {string} text
 * @returns {string}
 */
export function stripAnsi(text) {
  const clean = normalizeControls(text);
  return clean.indexOf("\x1b") < 0 ? clean : clean.replace(ESCAPE, "");
}

/**
 * Where the patterns match in `plain`: [start, end] pairs in order; overlapping matches of different patterns
 * join into one.
 * @param {string} plain
 * @param {RegExp[]} patterns  Global ("g") patterns, from terms.js.
 * @returns {number[][]}
 */
export function findMatches(plain, patterns) {
  const found = [];
  for (const pattern of patterns) {
    for (const match of plain.matchAll(pattern)) {
      if (!match[0]) continue;
      found.push([match.index, match.index + match[0].length]);
      if (found.length >= MAX_HIGHLIGHTS) break;
    }
  }
  found.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const ranges = [];
  for (const range of found) {
    const last = ranges[ranges.length - 1];
    if (last && range[0] < last[1]) last[1] = Math.max(last[1], range[1]);
    else ranges.push(range);
  }
  return ranges.slice(0, MAX_HIGHLIGHTS);
}

/**
 * Render a message: ANSI styles as spans with classes, what the search patterns match wrapped in <mark>.
 * @param {string} text
 * @param {RegExp[]} [patterns]  What to highlight (terms.js).
 * @returns {DocumentFragment}
 */
export function renderAnsi(text, patterns = []) {
  const fragment = document.createDocumentFragment();
  const segments = parseAnsi(text);
  const plain = segments.map((segment) => segment.text).join("");
  const ranges = findMatches(plain, patterns);
  let offset = 0;
  let r = 0;
  for (const segment of segments) {
    let target = fragment;
    if (segment.classes.length || segment.color || segment.background) {
      target = document.createElement("span");
      if (segment.classes.length) target.className = segment.classes.join(" ");
      if (segment.color) target.style.color = segment.color;
      if (segment.background) target.style.backgroundColor = segment.background;
      fragment.appendChild(target);
    }
    const end = offset + segment.text.length;
    let at = offset;
    while (at < end) {
      while (r < ranges.length && ranges[r][1] <= at) r += 1;
      const range = ranges[r];
      if (!range || range[0] >= end) {
        target.appendChild(document.createTextNode(plain.slice(at, end)));
        break;
      }
      if (range[0] > at) {
        target.appendChild(document.createTextNode(plain.slice(at, range[0])));
        at = range[0];
      }
      const stop = Math.min(range[1], end);
      const mark = document.createElement("mark");
      mark.className = "hit";
      mark.textContent = plain.slice(at, stop);
      target.appendChild(mark);
      at = stop;
    }
    offset = end;
  }
  return fragment;
}
