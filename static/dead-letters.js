// The dead-letters page: wires the filters, the list and the letter view to the URL, so that a
// filter or a letter can be linked to and the back button works.

import { lettersUnavailable, loadLetters, pageUrl } from "./dead-letter-list.js"
import { letterUnavailable, showLetter } from "./dead-letter-view.js"
import { access, configureSignIn, whoAmI } from "./auth.js"

const byId = (id) => document.getElementById(id)

const ui = {
  form: byId("filters"),
  kind: byId("filter-kind"),
  since: byId("filter-since"),
  until: byId("filter-until"),
  clear: byId("filter-clear"),
  error: byId("filter-error"),
  body: byId("letters-body"),
  more: byId("letters-more"),
  counts: byId("counts"),
  view: byId("letter-view")
}

/** What the URL asks for. */
function fromLocation() {
  const params = new URLSearchParams(window.location.search)
  return {
    filter: {
      kind: params.get("kind") || "",
      since: params.get("since") || "",
      until: params.get("until") || ""
    },
    letter: /^\d+\/\d+$/.test(params.get("letter") ?? "") ? params.get("letter") : null
  }
}

const pad = (n) => String(n).padStart(2, "0")

/** An instant as a datetime-local value, in this browser's time zone. */
function toLocalInput(iso) {
  const d = new Date(iso)
  if (!iso || Number.isNaN(d.getTime())) return ""
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

/** A datetime-local value (this browser's time zone) as an ISO 8601 instant; "" when empty, null when invalid. */
function toIso(local) {
  if (local === "") return ""
  const d = new Date(local)
  return Number.isNaN(d.getTime()) ? null : d.toISOString()
}

let current = fromLocation()

function fill(state) {
  current = state
  ui.kind.value = state.filter.kind
  ui.since.value = toLocalInput(state.filter.since)
  ui.until.value = toLocalInput(state.filter.until)
}

function apply(state) {
  fill(state)
  loadLetters(state.filter, { reset: true })
  showLetter(state.letter, state.filter)
}

/** The page's URL for the filters as typed (those applied where a typed one is incomplete). */
function typedUrl() {
  const since = toIso(ui.since.value)
  const until = toIso(ui.until.value)
  return pageUrl({
    kind: ui.kind.value,
    since: since ?? current.filter.since,
    until: until ?? current.filter.until,
    letter: current.letter
  })
}

function navigate(state) {
  history.pushState(null, "", pageUrl({ ...state.filter, letter: state.letter }))
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault()
  const since = toIso(ui.since.value)
  const until = toIso(ui.until.value)
  const problem =
    since === null || until === null
      ? "Enter a complete date and time."
      : since !== "" && until !== "" && since >= until
        ? "“Parked from” must be before “until”."
        : ""
  ui.error.textContent = problem
  ui.error.hidden = problem === ""
  if (problem !== "") return
  const state = { filter: { kind: ui.kind.value, since, until }, letter: null }
  navigate(state)
  apply(state)
})

ui.clear.addEventListener("click", () => {
  ui.error.hidden = true
  const state = { filter: { kind: "", since: "", until: "" }, letter: null }
  navigate(state)
  apply(state)
})

ui.more.addEventListener("click", () => loadLetters(current.filter, { reset: false }))

const plainClick = (event) =>
  event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey && !event.altKey

// A letter's link opens it beside the list; modified clicks open a new tab as links normally do.
for (const area of [ui.body, ui.view]) {
  area.addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest("a[data-letter]") : null
    if (!link || !plainClick(event)) return
    event.preventDefault()
    current = { ...current, letter: link.dataset.letter }
    navigate(current)
    showLetter(current.letter, current.filter)
  })
}

// A count's link filters by its kind, keeping the time range.
ui.counts.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-kind]") : null
  if (!link || !plainClick(event)) return
  event.preventDefault()
  const state = { filter: { ...current.filter, kind: link.dataset.kind }, letter: null }
  navigate(state)
  apply(state)
})

window.addEventListener("popstate", () => apply(fromLocation()))

// Signing in comes back to the filters as typed. The letters are an operator's: they are asked for
// only when the person may see them (or when that cannot be told).
configureSignIn({ returnTo: typedUrl })
fill(current)
whoAmI().then((me) => {
  const verdict = access(me, "operator")
  if (verdict === "allowed") apply(current)
  else {
    lettersUnavailable(verdict)
    letterUnavailable(verdict)
  }
})
