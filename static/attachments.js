/**
 * Attachments in the viewer: a line whose fields carry an attachment record ({id, name, content_type, size, url},
 * as POST /api/agents/{id}/attachments and the base64 rule of ingest make them) shows image files as thumbnails
 * (loaded lazily; a click opens the full image) and other files as download links; the agent page has a strip of
 * the run's screenshots above its lines.
 *
 * Images load by their url like any page resource: the viewer is signed in by its HttpOnly session cookie
 * (api.js), which the browser sends with an <img> of the same origin, so no token is put in an address.
 *
 * @module attachments
 */

/** Types shown as images (the server serves exactly these inline). */
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/** A thumbnail row's height in a line (CSS .attachment-thumb img), for the list's first guess. */
const THUMB_ROW_PX = 104;
/** A row of download links. */
const FILE_ROW_PX = 22;
/** Screenshots kept in the strip: the newest, so a long run's strip stays light. */
const STRIP_MAX = 200;

/**
 * The attachment records among a line's field values, in field order.
 * @param {object} line
 * @returns {{id: string, name: string, content_type: string, size: number, url: string}[]}
 */
export function attachmentsOf(line) {
  const found = [];
  if (!line.fields) return found;
  for (const value of Object.values(line.fields)) {
    if (
      value &&
      typeof value === "object" &&
      typeof value.id === "string" &&
      typeof value.name === "string" &&
      typeof value.content_type === "string" &&
      typeof value.url === "string" &&
      /^\/api\/agents\/[^/]+\/attachments\/[0-9a-f]{32}$/.test(value.url)
    ) {
      found.push(value);
    }
  }
  return found;
}

/**
 * Whether an attachment is shown as an image.
 * @param {{content_type: string}} record
 * @returns {boolean}
 */
export function isImage(record) {
  return IMAGE_TYPES.includes(record.content_type.split(";")[0].trim().toLowerCase());
}

/**
 * The height a line's attachments add to its row, for the list's estimate before the row is measured.
 * @param {object} line
 * @returns {number}
 */
export function attachmentsHeight(line) {
  const records = attachmentsOf(line);
  if (!records.length) return 0;
  const images = records.some(isImage);
  const files = records.some((record) => !isImage(record));
  return (images ? THUMB_ROW_PX : 0) + (files ? FILE_ROW_PX : 0);
}

/**
 * A human size: 532 B, 12.4 KB, 3.1 MB.
 * @param {number} bytes
 * @returns {string}
 */
export function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * A thumbnail that opens the full image: a link to it (a middle click opens a tab), a lazy image.
 * @param {{name: string, url: string}} record
 * @param {string} className
 * @returns {HTMLAnchorElement}
 */
function thumbnail(record, className) {
  const link = document.createElement("a");
  link.className = className;
  link.href = record.url;
  link.title = `${record.name} (click to enlarge)`;
  const image = document.createElement("img");
  image.loading = "lazy";
  image.decoding = "async";
  image.alt = record.name;
  image.src = record.url;
  link.appendChild(image);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    event.stopPropagation();
    openImage(record);
  });
  return link;
}

/**
 * The attachments block of a line's row (null for a line without any): thumbnails, then download links.
 * @param {object} line
 * @returns {HTMLElement|null}
 */
export function renderAttachments(line) {
  const records = attachmentsOf(line);
  if (!records.length) return null;
  const block = document.createElement("div");
  block.className = "attachments";
  const images = records.filter(isImage);
  if (images.length) {
    const thumbs = document.createElement("div");
    thumbs.className = "attachment-thumbs";
    for (const record of images) thumbs.appendChild(thumbnail(record, "attachment-thumb"));
    block.appendChild(thumbs);
  }
  for (const record of records.filter((item) => !isImage(item))) {
    const link = document.createElement("a");
    link.className = "attachment-file";
    link.href = record.url;
    link.download = record.name;
    link.textContent = `⤓ ${record.name}`;
    const size = document.createElement("span");
    size.className = "attachment-size";
    size.textContent = ` ${sizeText(record.size)} · ${record.content_type}`;
    link.appendChild(size);
    link.addEventListener("click", (event) => event.stopPropagation());
    block.appendChild(link);
  }
  return block;
}

let viewer = null;

/**
 * Show an image at full size in a modal dialog (Escape, the close button or a click outside it closes it).
 * @param {{name: string, url: string}} record
 */
export function openImage(record) {
  if (!viewer) {
    viewer = document.createElement("dialog");
    viewer.className = "image-viewer";
    const bar = document.createElement("div");
    bar.className = "image-viewer-bar";
    const name = document.createElement("a");
    name.className = "image-viewer-name";
    name.target = "_blank";
    name.rel = "noopener";
    const close = document.createElement("button");
    close.type = "button";
    close.className = "image-viewer-close";
    close.textContent = "Close";
    close.addEventListener("click", () => viewer.close());
    bar.append(name, close);
    const image = document.createElement("img");
    image.className = "image-viewer-image";
    viewer.append(bar, image);
    viewer.addEventListener("click", (event) => {
      if (event.target === viewer) viewer.close();
    });
    document.body.appendChild(viewer);
  }
  const image = viewer.querySelector(".image-viewer-image");
  image.src = record.url;
  image.alt = record.name;
  const name = viewer.querySelector(".image-viewer-name");
  name.href = record.url;
  name.textContent = record.name;
  if (!viewer.open) viewer.showModal();
}

/** The run's screenshots in a strip above its lines, newest last, growing as lines come. */
export class ScreenshotStrip {
  /**
   * @param {HTMLElement} element  The strip's container (hidden until there is a screenshot).
   */
  constructor(element) {
    this.element = element;
    this.seen = new Set();
    const label = document.createElement("span");
    label.className = "screenshots-label";
    label.textContent = "Screenshots";
    this.count = document.createElement("span");
    this.count.className = "screenshots-count";
    this.track = document.createElement("div");
    this.track.className = "screenshots-track";
    element.append(label, this.count, this.track);
  }

  /**
   * Show the screenshots of every loaded line anew (after a reload or filter change).
   * @param {object[]} lines  Every loaded line, in order.
   */
  show(lines) {
    this.seen.clear();
    this.track.textContent = "";
    this.add(lines);
  }

  /**
   * Add the screenshots of lines that just came (in order, after those shown).
   * @param {object[]} lines
   */
  add(lines) {
    const atEnd = this.track.scrollLeft + this.track.clientWidth >= this.track.scrollWidth - 8;
    for (const line of lines) {
      if (!line.fields) continue;
      for (const record of attachmentsOf(line)) {
        if (!isImage(record) || this.seen.has(record.id)) continue;
        this.seen.add(record.id);
        const item = thumbnail(record, "screenshot");
        item.title = `#${line.seq} · ${record.name}: ${line.message}`.slice(0, 300);
        this.track.appendChild(item);
      }
    }
    while (this.track.childElementCount > STRIP_MAX) this.track.firstElementChild.remove();
    this.element.hidden = this.seen.size === 0;
    this.count.textContent = String(this.seen.size);
    // Keep the newest in view while the strip follows the run.
    if (atEnd) this.track.scrollLeft = this.track.scrollWidth;
  }
}
