/**
 * A virtualised list: only the rows near the viewport are in the DOM, so 100,000 lines scroll like 100.
 *
 * Rows may differ in height (multi-line messages, wrapped text, expanded fields): each starts with an estimate
 * and is measured once rendered; offsets are prefix sums, and the row under the top edge stays put while
 * heights above it change. The list also follows the bottom ("stick") until the user scrolls away from it.
 *
 * @module virtual
 */

/** Pixels rendered beyond each edge of the viewport. */
const OVERSCAN_PX = 800;
/** Within this many pixels of the end counts as "at the bottom". */
const BOTTOM_SLACK_PX = 4;
/** Passes of render-and-measure per frame before giving up on a stable layout. */
const MAX_LAYOUT_PASSES = 4;

/**
 * @typedef {object} VirtualListOptions
 * @property {(item: object) => HTMLElement} renderRow  Build the element of one item.
 * @property {(item: object, width: number) => number} estimateHeight  A guess before it is measured.
 * @property {(stick: boolean) => void} [onStickChange]  The user scrolled away from the bottom, or back.
 * @property {() => void} [onRender]  After each render (e.g. to check what is in view).
 */

export class VirtualList {
  /**
   * @param {HTMLElement} scroller  The scrolling element (overflow: auto); the list fills it.
   * @param {VirtualListOptions} options
   */
  constructor(scroller, options) {
    this.scroller = scroller;
    this.options = options;
    this.canvas = document.createElement("div");
    this.canvas.className = "vlist-canvas";
    scroller.appendChild(this.canvas);
    this.items = [];
    this.heights = new Float64Array(1024);
    this.offsets = new Float64Array(1025);
    this.validFrom = 0;
    this.rows = new Map();
    this.epoch = 1;
    this.width = scroller.clientWidth;
    this.stick = true;
    this.setTop = null;
    this.frame = 0;
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    // A wheel turned upwards means "stop following" even if a new line moves the view first.
    scroller.addEventListener(
      "wheel",
      (event) => {
        if (event.deltaY < 0 && scroller.scrollHeight > scroller.clientHeight) this.setStick(false);
      },
      { passive: true },
    );
    new ResizeObserver(() => this.onResize()).observe(scroller);
  }

  /** Number of items. */
  get length() {
    return this.items.length;
  }

  /** Total height of all rows, in pixels. */
  get totalHeight() {
    this.computeOffsets();
    return this.offsets[this.items.length];
  }

  heightOf(item) {
    return item.vEpoch === this.epoch ? item.vHeight : this.options.estimateHeight(item, this.width);
  }

  reserve(count) {
    if (count <= this.heights.length) return;
    let size = this.heights.length;
    while (size < count) size *= 2;
    const heights = new Float64Array(size);
    heights.set(this.heights.subarray(0, this.items.length));
    this.heights = heights;
    const offsets = new Float64Array(size + 1);
    offsets.set(this.offsets.subarray(0, this.items.length + 1));
    this.offsets = offsets;
  }

  computeOffsets() {
    const n = this.items.length;
    for (let i = this.validFrom; i < n; i += 1) this.offsets[i + 1] = this.offsets[i] + this.heights[i];
    this.validFrom = n;
  }

  /** Index of the item at vertical position y. */
  indexAt(y) {
    this.computeOffsets();
    let lo = 0;
    let hi = this.items.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid] <= y) lo = mid;
      else hi = mid - 1;
    }
    return Math.max(0, lo);
  }

  /** The item at the top edge and how far the edge is into it, to put it back after a change. */
  anchor() {
    if (!this.items.length) return null;
    const top = this.scroller.scrollTop;
    const index = this.indexAt(top);
    return { item: this.items[index], index, delta: top - this.offsets[index] };
  }

  restore(anchor, locate) {
    if (!anchor || !this.items.length) return;
    let index = this.items[anchor.index] === anchor.item ? anchor.index : this.items.indexOf(anchor.item);
    let delta = anchor.delta;
    if (index < 0) {
      index = locate ? locate(anchor.item) : Math.min(anchor.index, this.items.length - 1);
      delta = 0;
    }
    this.computeOffsets();
    this.scrollTo(this.offsets[Math.max(0, Math.min(index, this.items.length - 1))] + delta);
  }

  /**
   * Replace every item; the row at the top edge stays where it was (or the list stays at the bottom).
   * @param {object[]} items
   * @param {(item: object) => number} [locate] Where a vanished anchor item would have been.
   */
  setItems(items, locate) {
    const anchor = this.stick ? null : this.anchor();
    this.items = items;
    this.reserve(items.length);
    for (let i = 0; i < items.length; i += 1) this.heights[i] = this.heightOf(items[i]);
    this.validFrom = 0;
    this.offsets[0] = 0;
    if (this.stick) this.settle();
    else this.restore(anchor, locate);
    this.render();
  }

  /**
   * Add items at the end.
   * @param {object[]} items
   */
  append(items) {
    if (!items.length) return;
    const start = this.items.length;
    this.reserve(start + items.length);
    for (let i = 0; i < items.length; i += 1) {
      this.items.push(items[i]);
      this.heights[start + i] = this.heightOf(items[i]);
    }
    this.validFrom = Math.min(this.validFrom, start);
    this.schedule();
  }

  scrollTo(top) {
    this.computeOffsets();
    this.canvas.style.height = `${this.offsets[this.items.length]}px`;
    this.scroller.scrollTop = top;
    this.setTop = this.scroller.scrollTop;
  }

  /** Keep the bottom in view when sticking. */
  settle() {
    if (this.stick) this.scrollTo(this.totalHeight);
  }

  /** Follow the bottom from now on. */
  scrollToBottom() {
    this.setStick(true);
    this.settle();
    this.render();
  }

  /** Go to the first row (and stop following). */
  scrollToTop() {
    this.setStick(false);
    this.scrollTo(0);
    this.render();
  }

  /**
   * Bring item `index` into the middle of the view (and stop following).
   * @param {number} index
   */
  scrollToIndex(index) {
    this.setStick(false);
    this.computeOffsets();
    const middle = this.offsets[index] - (this.scroller.clientHeight - this.heights[index]) / 2;
    this.scrollTo(Math.max(0, middle));
    this.render();
  }

  /** True if the view shows the last row. */
  atBottom() {
    const { scrollTop, clientHeight } = this.scroller;
    return scrollTop + clientHeight >= this.totalHeight - BOTTOM_SLACK_PX;
  }

  setStick(stick) {
    if (stick === this.stick) return;
    this.stick = stick;
    if (this.options.onStickChange) this.options.onStickChange(stick);
  }

  onScroll() {
    if (this.setTop !== null && Math.abs(this.scroller.scrollTop - this.setTop) < 1) {
      this.setTop = null;
    } else {
      // Moved by the user: leaving the bottom pauses following, coming back resumes it.
      this.setTop = null;
      this.setStick(this.atBottom());
    }
    this.schedule();
  }

  onResize() {
    const width = this.scroller.clientWidth;
    if (width !== this.width) {
      const anchor = this.stick ? null : this.anchor();
      this.width = width;
      this.epoch += 1;
      for (let i = 0; i < this.items.length; i += 1) this.heights[i] = this.heightOf(this.items[i]);
      this.validFrom = 0;
      this.restore(anchor);
    }
    this.settle();
    this.schedule();
  }

  /** Render on the next animation frame (once, however often it is asked). */
  schedule() {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  /**
   * Measure an item's row again (after it grew or shrank, e.g. fields expanded).
   * @param {object} item
   */
  remeasure(item) {
    const row = this.rows.get(item);
    if (row) this.measure([row]);
    this.render();
  }

  measure(rows) {
    const anchor = this.stick ? null : this.anchor();
    let changed = false;
    const sizes = rows.map((row) => row.offsetHeight);
    rows.forEach((row, k) => {
      const item = row.vItem;
      const index = row.vIndex;
      item.vHeight = sizes[k];
      item.vEpoch = this.epoch;
      if (this.items[index] === item && this.heights[index] !== sizes[k]) {
        this.heights[index] = sizes[k];
        this.validFrom = Math.min(this.validFrom, index);
        changed = true;
      }
    });
    if (changed) {
      if (this.stick) this.settle();
      else this.restore(anchor);
    }
    return changed;
  }

  /** Put the rows in view into the DOM, measure new ones, and remove the rest. */
  render() {
    if (this.frame) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    let settled = false;
    for (let pass = 0; pass < MAX_LAYOUT_PASSES && !settled; pass += 1) {
      this.computeOffsets();
      const n = this.items.length;
      this.canvas.style.height = `${this.offsets[n]}px`;
      if (this.stick && !this.atBottom()) this.scrollTo(this.offsets[n]);
      const top = this.scroller.scrollTop;
      const first = n ? this.indexAt(Math.max(0, top - OVERSCAN_PX)) : 0;
      const limit = top + this.scroller.clientHeight + OVERSCAN_PX;
      const wanted = new Set();
      const fresh = [];
      for (let i = first; i < n && this.offsets[i] < limit; i += 1) {
        const item = this.items[i];
        wanted.add(item);
        let row = this.rows.get(item);
        if (!row) {
          row = this.options.renderRow(item);
          row.vItem = item;
          this.rows.set(item, row);
          this.canvas.appendChild(row);
          if (item.vEpoch !== this.epoch) fresh.push(row);
        }
        row.vIndex = i;
        row.style.transform = `translateY(${this.offsets[i]}px)`;
      }
      for (const [item, row] of this.rows) {
        if (!wanted.has(item)) {
          row.remove();
          this.rows.delete(item);
        }
      }
      settled = !fresh.length || !this.measure(fresh);
    }
    if (!settled) this.schedule();
    if (this.options.onRender) this.options.onRender();
  }

  /** Remove every rendered row, so the next render builds them anew. */
  clearRows() {
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
  }

  /** The rendered rows, for tests and keyboard navigation. */
  renderedItems() {
    return [...this.rows.keys()];
  }
}
