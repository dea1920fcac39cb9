// The recent orders in the sidebar, a page at a time.

import { h, isRecord } from "./dom.js"
import { getJson, RequestFailed } from "./api.js"
import { canSignIn, forbiddenText, sessionEnded, signInLink } from "./auth.js"
import { list, record } from "./format.js"
import { summaryEntry } from "./summary.js"

const RECENT_PAGE_SIZE = 20

const ui = {
  recentList: document.getElementById("recent-list"),
  recentStatus: document.getElementById("recent-status"),
  recentMore: document.getElementById("recent-more"),
  recentRefresh: document.getElementById("recent-refresh"),
  recentAuth: document.getElementById("recent-auth"),
  liveBar: document.querySelector(".live-bar"),
  liveNew: document.getElementById("live-new")
}

const recent = { cursor: null, loading: false, generation: 0 }
/** The id of the order the page shows (whatever its state), marked in the list when it is there. */
let shown = null

export async function loadRecent({ reset }) {
  if (recent.loading && !reset) return
  const generation = ++recent.generation
  // Read before disabling: a disabled button may lose focus.
  const moreHadFocus = document.activeElement === ui.recentMore
  recent.loading = true
  ui.recentMore.disabled = true
  setRecentStatus(reset ? "Loading recent orders…" : "Loading more…")
  const params = new URLSearchParams({ limit: String(RECENT_PAGE_SIZE) })
  if (!reset && recent.cursor) params.set("cursor", recent.cursor)
  try {
    const page = record(await getJson(`/orders?${params}`))
    if (generation !== recent.generation) return
    if (reset) ui.recentList.replaceChildren()
    const entries = list(page.items).filter(isRecord).map(recentEntry)
    ui.recentList.append(...entries)
    recent.cursor = typeof page.next_cursor === "string" && page.next_cursor !== "" ? page.next_cursor : null
    setRecentStatus(ui.recentList.childElementCount === 0 ? "No orders yet." : "")
    markShown()
    // Keep keyboard users in place when "Show more" disappears or moves down.
    if (!reset && moreHadFocus && entries.length > 0) entries[0].querySelector("a")?.focus()
  } catch (error) {
    if (generation !== recent.generation) return
    if (error instanceof RequestFailed && error.kind === "signed-out") {
      setRecentStatus("Couldn't load recent orders: you are signed out. Sign in again to see them.", true)
      sessionEnded()
      return
    }
    const why =
      error instanceof RequestFailed && (error.kind === "network" || error.kind === "server")
        ? error.message
        : error instanceof RequestFailed && error.kind === "forbidden"
          ? forbiddenText(error)
          : "Use Refresh to try again."
    setRecentStatus(`Couldn't load recent orders. ${why}`, true)
  } finally {
    if (generation === recent.generation) {
      recent.loading = false
      ui.recentMore.hidden = recent.cursor === null
      ui.recentMore.disabled = false
    }
  }
}

function setRecentStatus(text, isError = false) {
  ui.recentStatus.textContent = text
  ui.recentStatus.hidden = text === ""
  ui.recentStatus.classList.toggle("error-text", isError)
}

const recentEntry = (summary) => summaryEntry(summary, "recent-order")

/**
 * In place of the recent orders and the live feed, when the page does not ask for them: nobody is
 * signed in ("signed-out"), or the person lacks the agent role ("forbidden").
 */
export function recentUnavailable(kind) {
  for (const part of [
    ui.recentRefresh,
    ui.liveBar,
    ui.liveNew,
    ui.recentList,
    ui.recentMore,
    ui.recentStatus
  ])
    part.hidden = true
  ui.recentAuth.replaceChildren(
    kind === "forbidden"
      ? h("p", { "data-testid": "recent-forbidden" }, forbiddenText(null, "agent"))
      : canSignIn()
        ? h("p", {}, signInLink("Sign in", "recent-signin"), " to see recent orders")
        : h(
            "p",
            { class: "muted" },
            "Recent orders are shown to signed-in agents; this service has no sign-in page."
          )
  )
  ui.recentAuth.hidden = false
}

/** The live feed stopped: the session ended ("signed-out"), or the role went ("forbidden"). */
export function recentStopped(kind) {
  setRecentStatus(
    kind === "forbidden"
      ? `New orders are no longer shown. ${forbiddenText(null, "agent")}`
      : "New orders are no longer shown: you are signed out. Sign in again to see them.",
    true
  )
}

/** Most entries the list keeps while orders arrive live; older ones are dropped from the bottom. */
const RECENT_MAX = 500

/** Newly stored orders, oldest first, go on top of the list (those already in it are skipped). */
export function prependRecent(summaries) {
  const known = new Set(Array.from(ui.recentList.querySelectorAll("a[data-uid]"), (a) => a.dataset.uid))
  const fresh = summaries.filter((s) => !known.has(s.order_uid)).reverse()
  if (fresh.length === 0) return
  ui.recentList.prepend(...fresh.map(recentEntry))
  setRecentStatus("")
  markShown()
  if (ui.recentList.childElementCount > RECENT_MAX) {
    while (ui.recentList.childElementCount > RECENT_MAX) ui.recentList.lastElementChild.remove()
    // The next page would start after orders no longer listed: paging starts again from Refresh.
    recent.cursor = null
    ui.recentMore.hidden = true
  }
}

/** Whether the list is scrolled away from its newest entries (on a wide screen it scrolls itself). */
export function recentScrolled() {
  if (ui.recentList.scrollTop > 8) return true
  return ui.recentList.getBoundingClientRect().top < 0
}

/** Brings the newest entries into view. */
export function scrollRecentToTop() {
  ui.recentList.scrollTop = 0
  if (ui.recentList.getBoundingClientRect().top < 0) ui.recentList.scrollIntoView({ block: "start" })
}

/** Marks the order the page now shows, if it is in the list; null when it shows none. */
export function markCurrentRecent(uid) {
  shown = uid
  markShown()
}

function markShown() {
  for (const link of document.querySelectorAll(".recent-list a[data-uid]")) {
    if (link.dataset.uid === shown) link.setAttribute("aria-current", "page")
    else link.removeAttribute("aria-current")
  }
}
