// Order lookup page: wires the page's events to its parts. Each part is an ES module of its own
// (no build step); orders are always rendered as text, never as HTML (see order-view.js).

import { close, forgetBadId, open, retry } from "./lookup.js"
import { loadRecent } from "./recent.js"
import { uidInLocation } from "./order-id.js"

const byId = (id) => document.getElementById(id)

const ui = {
  form: byId("search-form"),
  input: byId("uid-input"),
  results: byId("results"),
  retry: byId("retry-button"),
  recentList: byId("recent-list"),
  recentMore: byId("recent-more"),
  recentRefresh: byId("recent-refresh")
}

const wideLayout = window.matchMedia("(min-width: 900px)")

ui.form.addEventListener("submit", (event) => {
  event.preventDefault()
  open(ui.input.value, { push: true })
})

ui.input.addEventListener("input", forgetBadId)
ui.retry.addEventListener("click", retry)

ui.recentList.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-uid]") : null
  // Let modified clicks open a new tab as links normally do.
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
  event.preventDefault()
  open(link.dataset.uid, { push: true })
  // On one-column layouts the order is above the list, out of sight: take the reader there.
  if (!wideLayout.matches) ui.results.focus()
})

ui.recentMore.addEventListener("click", () => loadRecent({ reset: false }))
ui.recentRefresh.addEventListener("click", () => loadRecent({ reset: true }))

window.addEventListener("popstate", () => {
  const uid = uidInLocation()
  if (uid === null) close()
  else open(uid, { push: false })
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

const initialUid = uidInLocation()
if (initialUid !== null) open(initialUid, { push: false })
loadRecent({ reset: true })
