/**
 * The pages of one search over every run (GET /api/search), newest first: each page follows the cursor the last
 * one gave, and only one is asked for at a time.
 *
 * @module searchpages
 */

import { api, query } from "./api.js";

/** The endpoint that searches every run the caller may read. */
const SEARCH = "/api/search";

export class SearchPages {
  /**
   * @param {string} q  The words to search for, as typed.
   */
  constructor(q) {
    this.q = q;
    this.cursor = null;
    this.done = false;
    this.busy = false;
    this.abort = new AbortController();
  }

  /**
   * The next page's lines, each with its `agent`; null when there are no more or one is on its way already.
   * Throws the API's error (an ApiError; a 400 says what was wrong with the query).
   * @returns {Promise<object[]|null>}
   */
  async next() {
    if (this.done || this.busy) return null;
    this.busy = true;
    try {
      const page = await api(`${SEARCH}${query({ q: this.q, cursor: this.cursor })}`, { signal: this.abort.signal });
      this.cursor = page.next_cursor;
      this.done = page.next_cursor === null || page.next_cursor === undefined;
      return page.lines;
    } finally {
      this.busy = false;
    }
  }

  /** Stop: a page on its way is dropped (its promise rejects with an AbortError). */
  close() {
    this.done = true;
    this.abort.abort();
  }
}
