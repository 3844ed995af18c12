/**
 * The SharedWorker every viewer tab of a browser (one per signed-in user) connects to: it runs the hub, so all
 * the tabs share one lines stream and one agents feed instead of holding a connection each.
 *
 * @module live-worker
 */

import { Hub } from "./hub.js";

const hub = new Hub();

self.addEventListener("connect", (event) => {
  for (const port of event.ports) hub.attach(port);
});
