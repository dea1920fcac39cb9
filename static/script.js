// Order lookup page: wires the page's events to its parts. Each part is an ES module of its own
// (no build step); orders are always rendered as text, never as HTML (see order-view.js).

import {
  close,
  find,
  forgetBadId,
  moreResults,
  open,
  restoreTypedSearch,
  retry,
  saveTypedSearch,
  searchInLocation,
  typedSearchUrl
} from "./lookup.js"
import { loadRecent, recentUnavailable } from "./recent.js"
import { startLive } from "./live.js"
import { access, configureSignIn, whoAmI } from "./auth.js"
import { uidInLocation } from "./order-id.js"

const byId = (id) => document.getElementById(id)

const ui = {
  form: byId("search-form"),
  input: byId("uid-input"),
  from: byId("from-input"),
  to: byId("to-input"),
  datesClear: byId("dates-clear"),
  results: byId("results"),
  resultsMore: byId("results-more"),
  retry: byId("retry-button"),
  recentMore: byId("recent-more"),
  recentRefresh: byId("recent-refresh")
}

const wideLayout = window.matchMedia("(min-width: 900px)")

const dates = () => ({ from: ui.from.value, to: ui.to.value })

ui.form.addEventListener("submit", (event) => {
  event.preventDefault()
  find(ui.input.value, dates(), { push: true })
})

ui.input.addEventListener("input", forgetBadId)
ui.from.addEventListener("input", forgetBadId)
ui.to.addEventListener("input", forgetBadId)
ui.datesClear.addEventListener("click", () => {
  ui.from.value = ""
  ui.to.value = ""
  forgetBadId()
})
ui.retry.addEventListener("click", retry)
ui.resultsMore.addEventListener("click", moreResults)

// Recent orders and search results: a click opens the order.
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest(".recent-list a[data-uid]") : null
  // Let modified clicks open a new tab as links normally do.
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
  event.preventDefault()
  open(link.dataset.uid, { push: true })
  // On one-column layouts the order is above the list, out of sight: take the reader there.
  if (!wideLayout.matches) ui.results.focus()
})

ui.recentMore.addEventListener("click", () => loadRecent({ reset: false }))
ui.recentRefresh.addEventListener("click", () => loadRecent({ reset: true }))

/** What the URL asks for: an order, a search, or nothing. */
function follow() {
  const uid = uidInLocation()
  const search = searchInLocation()
  if (uid !== null) open(uid, { push: false })
  else if (search !== null) find(search.q, search.dates, { push: false })
  else return false
  return true
}

window.addEventListener("popstate", () => {
  if (!follow()) close()
})

document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return
  const target = event.target
  if (
    target instanceof HTMLElement &&
    (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))
  )
    return
  event.preventDefault()
  ui.input.focus()
  ui.input.select()
})

// The search box has the focus from the start: `autofocus` alone is applied at the browser's next
// rendering step, which can come after keys typed right away went nowhere.
if (document.activeElement === null || document.activeElement === document.body) ui.input.focus()

// Signing in comes back to what is typed in the search box (also kept in this tab's storage).
configureSignIn({ returnTo: typedSearchUrl, beforeLeave: saveTypedSearch })
const who = whoAmI()

// An order by its id is public: it is looked up at once. A search, the recent orders and the live
// feed need an agent: asked for once it is known whether the person may (lookup.js then asks only
// for what they may see; an order id typed by anyone is still looked up).
restoreTypedSearch()
const search = uidInLocation() === null ? searchInLocation() : null
if (search === null) follow()
else {
  ui.input.value = search.q
  ui.from.value = search.dates.from
  ui.to.value = search.dates.to
  who.then(() => {
    // Unless the person started another search meanwhile.
    if (searchInLocation()?.q === search.q) follow()
  })
}

who.then((me) => {
  const verdict = access(me, "agent")
  if (verdict === "allowed") {
    loadRecent({ reset: true })
    startLive()
  } else recentUnavailable(verdict)
})
