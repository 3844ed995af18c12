/**
 * The viewer's entry point: sign-in (a ?token= in the address is posted once, then removed from it), the
 * header, and which page to show: the agents page at / (with the search over every run at /?search=WORDS), the log
 * page at /?agent=ID (repeatable) or /?label=key=value, and the webhooks settings at /?settings=webhooks.
 *
 * @module app
 */

import { showAgentsPage } from "./agents.js";
import { api, ApiError } from "./api.js";
import { openLive } from "./live.js";
import { showLogView } from "./logview.js";
import { showNotifyToggle } from "./notify.js";
import { markShared, shareSignIn, takeShareLink } from "./runcontrol.js";
import { showWebhooksPage } from "./webhooks.js";

/** The session endpoint: GET who is signed in, POST a token to sign in, DELETE to sign out. */
const SESSION = "/api/session";

/** Take ?token= out of the address bar at once, so it is not kept in history, bookmarks or screenshots. */
function takeTokenFromAddress() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token === null) return null;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
  return token.trim();
}

async function currentSession(token) {
  let problem = null;
  if (token) {
    try {
      return { session: await api(SESSION, { method: "POST", body: { token } }), problem };
    } catch (error) {
      problem = error.message;
    }
  }
  try {
    return { session: await api(SESSION), problem };
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      // A cookie that no longer works (expired, revoked) is cleared, so the next sign-in starts clean.
      if (error.code !== "not_authenticated") await api(SESSION, { method: "DELETE" }).catch(() => {});
      return { session: null, problem: problem || (error.code === "not_authenticated" ? null : error.message) };
    }
    throw error;
  }
}

function showHeader(session) {
  const who = document.querySelector(".who");
  const signOut = document.querySelector(".sign-out");
  document.querySelector(".settings-link").hidden = !session;
  if (!session || session.auth === "none") {
    who.textContent = session ? "auth off" : "";
    signOut.hidden = true;
    return;
  }
  who.textContent = session.subject;
  who.title = `Signed in as ${session.subject} (${session.scopes.join(", ")})`;
  signOut.hidden = false;
  signOut.addEventListener("click", async () => {
    await api(SESSION, { method: "DELETE" }).catch(() => {});
    location.assign("/");
  });
}

function showSignIn(root, problem) {
  const page = document.getElementById("sign-in-page").content.firstElementChild.cloneNode(true);
  root.appendChild(page);
  const form = page.querySelector("form");
  const input = page.querySelector("input");
  const error = page.querySelector(".sign-in-error");
  error.textContent = problem || "";
  error.hidden = !problem;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(SESSION, { method: "POST", body: { token: input.value.trim() } });
      location.reload();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
  input.focus();
  document.title = "Sign in · Sentra";
}

function setTitle(text) {
  document.title = text ? `${text} · Sentra` : "Sentra";
}

async function main() {
  const root = document.getElementById("main");
  const shared = takeShareLink();
  const token = takeTokenFromAddress() || (await shareSignIn(shared));
  let session;
  let problem;
  try {
    ({ session, problem } = await currentSession(token));
  } catch (error) {
    root.textContent = `Sentra cannot be reached: ${error.message}`;
    return;
  }
  showHeader(session);
  markShared(session);
  if (!session) {
    showSignIn(root, problem);
    return;
  }
  const params = new URLSearchParams(location.search);
  if (params.get("settings") === "webhooks") {
    document.querySelector(".settings-link").setAttribute("aria-current", "page");
    showWebhooksPage(root, setTitle);
    return;
  }
  // The pages that watch runs offer desktop notifications of failures (notify.js).
  showNotifyToggle(document.querySelector(".top"), document.querySelector(".settings-link"));
  // Live data comes through the hub every viewer tab of this user shares (one connection for all of them).
  const live = openLive(session.subject || "");
  if (params.has("agent") || params.has("label")) {
    document.body.classList.add("on-log");
    showLogView(root, params, setTitle, live);
  } else {
    showAgentsPage(root, live, setTitle);
  }
}

main();
