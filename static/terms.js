/**
 * What a search matches, by the server's rule (sentra/storage/words.py, the README's "Search"), so the viewer's
 * own filtering agrees with every `q` the server answers: a query is split into terms at spaces ("quoted" text is
 * one term; a bare term ending in `*` makes its last word a prefix); a term's words are its runs of letters and
 * digits, compared without case, read after terminal escape sequences are dropped (a red ESC[31mFAILED ESC[0m
 * holds the word "failed"); a prefix needs MIN_PREFIX of them; a line matches when each term's words stand one
 * after another, whole, in its message or in one of its field values. The same terms give the patterns that
 * highlight a match (ansi.js, in the text as printed, without its escape sequences).
 *
 * @module terms
 */

/** A term: text in double quotes (an open quote runs to the end), or anything else between spaces. */
const TERM = /"([^"]*)"?|([^\s"]+)/g;
/** What separates words: anything but letters and digits (Unicode), as the server's `[\W_]+`. */
const SEPARATORS = /[^\p{L}\p{N}]+/u;
const WORD_CHAR = "[\\p{L}\\p{N}]";
const NOT_WORD = "[^\\p{L}\\p{N}]+";
const ENDS_IN_WORD = /[\p{L}\p{N}]$/u;
/** The shortest prefix the server accepts (words.py's MIN_PREFIX). */
const MIN_PREFIX = 3;
/**
 * Terminal escape sequences, dropped before words are read, as words.py's _ESCAPE: CSI, OSC (to BEL or ESC \, or
 * to the end of the line if left open) and other escapes (ESC, intermediates, a final byte: ESC ( B, ESC 7).
 */
const ESCAPE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[ -/]*[0-~])/g;

/**
 * @typedef {object} Term
 * @property {string[]} words  Case-folded.
 * @property {boolean} prefix  The last word is a prefix.
 * @property {string} needle   The words as they stand in a line's searchable text (see searchable).
 */

/** Case folding as near as JavaScript comes to the server's str.casefold() (ß is ss). */
function fold(text) {
  return text.toUpperCase().toLowerCase();
}

/**
 * The words of a text, case-folded, joined by single spaces.
 * @param {string} text
 * @returns {string}
 */
function wordsText(text) {
  const printed = text.indexOf("\x1b") < 0 ? text : text.replace(ESCAPE, "");
  return fold(printed).split(SEPARATORS).filter(Boolean).join(" ");
}

/**
 * The terms of a query; none for a query the server answers with a 400: without a word, or with a prefix of fewer
 * than MIN_PREFIX letters or digits.
 * @param {string} q
 * @returns {Term[]}
 */
export function parseQuery(q) {
  const terms = [];
  for (const [, quoted, bare] of q.matchAll(TERM)) {
    const text = wordsText(quoted ?? bare);
    if (!text) continue;
    const prefix = bare !== undefined && bare.endsWith("*") && ENDS_IN_WORD.test(bare.replace(/\*+$/, ""));
    const words = text.split(" ");
    if (prefix && [...words[words.length - 1]].length < MIN_PREFIX) return [];
    terms.push({ words, prefix, needle: ` ${text}${prefix ? "" : " "}` });
  }
  return terms;
}

/** A field value's searchable texts: strings as they are, other scalars as JSON writes them, nested ones too. */
function fieldTexts(value, out) {
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) for (const item of value) fieldTexts(item, out);
  else if (value !== null && typeof value === "object") for (const item of Object.values(value)) fieldTexts(item, out);
  else out.push(JSON.stringify(value));
}

/**
 * The words of a line's message and of each field value, each value apart (a phrase never spans two), kept on the
 * line: " words of the message \n words of a value ".
 * @param {{message: string, fields?: object}} line
 * @returns {string}
 */
function searchable(line) {
  if (line.searchable === undefined) {
    const texts = [line.message];
    if (line.fields) fieldTexts(line.fields, texts);
    line.searchable = ` ${texts.map(wordsText).join(" \n ")} `;
  }
  return line.searchable;
}

/**
 * Does the line match every term (true without terms)?
 * @param {Term[]} terms
 * @param {{message: string, fields?: object}} line
 * @returns {boolean}
 */
export function matchesTerms(terms, line) {
  if (!terms.length) return true;
  const text = searchable(line);
  return terms.every((term) => text.includes(term.needle));
}

/**
 * True when every line matching `narrow` also matches `wide`: each of wide's terms is one of narrow's.
 * @param {Term[]} narrow
 * @param {Term[]} wide
 * @returns {boolean}
 */
export function narrowerTerms(narrow, wide) {
  const needles = new Set(narrow.map((term) => term.needle));
  return wide.every((term) => needles.has(term.needle));
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The patterns that highlight what the terms match in a text: each term's words, whole (the last one's start for
 * a prefix), with only other characters between them; case-insensitive.
 * @param {Term[]} terms
 * @returns {RegExp[]}
 */
export function highlightPatterns(terms) {
  return terms.map(({ words, prefix }) => {
    const body = words.map(escapeRegExp).join(NOT_WORD);
    return new RegExp(`(?<!${WORD_CHAR})${body}${prefix ? "" : `(?!${WORD_CHAR})`}`, "giu");
  });
}
