// The recent orders in the sidebar, a page at a time.

import { h, isRecord } from "./dom.js"
import { getJson, RequestFailed } from "./api.js"
import { countText, display, list, money, record, shortDateTimeFormat } from "./format.js"
import { pageUrl } from "./order-id.js"

const RECENT_PAGE_SIZE = 20

const ui = {
  recentList: document.getElementById("recent-list"),
  recentStatus: document.getElementById("recent-status"),
  recentMore: document.getElementById("recent-more")
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
    const why =
      error instanceof RequestFailed && (error.kind === "network" || error.kind === "server")
        ? error.message
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

function recentEntry(summary) {
  const uid = typeof summary.order_uid === "string" ? summary.order_uid : display(summary.order_uid)
  const count = typeof summary.item_count === "number" ? summary.item_count : null
  const date = typeof summary.date_created === "string" ? new Date(summary.date_created) : null
  const link = h(
    "a",
    { class: "recent-item", href: pageUrl(uid), "data-uid": uid, "data-testid": "recent-order" },
    h("span", { class: "recent-uid mono" }, uid),
    h("span", { class: "recent-amount" }, money(summary.amount, summary.currency)),
    h(
      "span",
      { class: "recent-date" },
      date && !Number.isNaN(date.getTime()) ? shortDateTimeFormat.format(date) : display(summary.date_created)
    ),
    h(
      "span",
      { class: "recent-who" },
      count === null ? display(summary.customer_id) : `${display(summary.customer_id)} · ${countText(count)}`
    )
  )
  return h("li", {}, link)
}

/** Marks the order the page now shows, if it is in the list; null when it shows none. */
export function markCurrentRecent(uid) {
  shown = uid
  markShown()
}

function markShown() {
  for (const link of ui.recentList.querySelectorAll("a[data-uid]")) {
    if (link.dataset.uid === shown) link.setAttribute("aria-current", "page")
    else link.removeAttribute("aria-current")
  }
}
