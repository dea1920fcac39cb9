// Finding an order: what the page shows in place of the order, and every way a search arrives.
// An order id opens the order; anything else a customer may have lists the orders that match.

import { announce, isRecord } from "./dom.js"
import { getJson, RequestFailed } from "./api.js"
import { access, forbiddenText, hadSession, lastKnown, sessionEnded } from "./auth.js"
import { countText, list, record } from "./format.js"
import { checkUid, orderUrl, pageUrl, uidInLocation } from "./order-id.js"
import { renderOrder } from "./order-view.js"
import { markCurrentRecent } from "./recent.js"
import { summaryEntry } from "./summary.js"

/** The server's limit on what a search may be (`q` of GET /orders/search). */
const MAX_QUERY_LENGTH = 256
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/
const RESULTS_PAGE_SIZE = 20

const byId = (id) => document.getElementById(id)

const ui = {
  input: byId("uid-input"),
  from: byId("from-input"),
  to: byId("to-input"),
  uidError: byId("uid-error"),
  uidErrorTitle: byId("uid-error-title"),
  uidErrorMessage: byId("uid-error-message"),
  results: byId("results"),
  empty: document.querySelector("[data-testid=state-empty]"),
  loading: document.querySelector("[data-testid=state-loading]"),
  loadingUid: byId("loading-uid"),
  notFound: document.querySelector("[data-testid=state-not-found]"),
  notFoundUid: byId("not-found-uid"),
  notFoundDates: byId("not-found-dates"),
  list: document.querySelector("[data-testid=state-results]"),
  listTitle: byId("results-title"),
  listItems: byId("results-list"),
  listStatus: byId("results-status"),
  listMore: byId("results-more"),
  error: document.querySelector("[data-testid=state-error]"),
  errorTitle: byId("error-title"),
  errorMessage: byId("error-message"),
  signedOut: document.querySelector("[data-testid=state-signed-out]"),
  signedOutMessage: byId("signed-out-message"),
  forbidden: document.querySelector("[data-testid=forbidden-notice]"),
  forbiddenMessage: byId("forbidden-message"),
  order: byId("order-view")
}

// Exactly one of empty, loading, not-found, bad-id, error, signed-out, forbidden, list, order is visible.
let current = { kind: "empty" }
let inFlight = null

function show(state) {
  current = state
  ui.empty.hidden = state.kind !== "empty"
  ui.loading.hidden = state.kind !== "loading"
  ui.notFound.hidden = state.kind !== "not-found"
  ui.error.hidden = state.kind !== "error"
  ui.signedOut.hidden = state.kind !== "signed-out"
  ui.forbidden.hidden = state.kind !== "forbidden"
  ui.order.hidden = state.kind !== "order"
  ui.list.hidden = state.kind !== "list"
  ui.uidError.hidden = state.kind !== "bad-id"
  ui.results.setAttribute("aria-busy", String(state.kind === "loading"))

  const invalid = state.kind === "bad-id"
  if (invalid) ui.input.setAttribute("aria-invalid", "true")
  else ui.input.removeAttribute("aria-invalid")

  switch (state.kind) {
    case "empty":
      document.title = "Order lookup"
      break
    case "loading":
      ui.loadingUid.textContent = state.uid
      announce(`Looking for ${state.uid}`)
      break
    case "bad-id":
      ui.uidErrorTitle.textContent = state.title ?? "That can't be an order id."
      ui.uidErrorMessage.textContent = state.message
      document.title = "Nothing to search for · Order lookup"
      announce(`${ui.uidErrorTitle.textContent} ${state.message}`)
      break
    case "not-found":
      ui.notFoundUid.textContent = state.uid
      ui.notFoundUid.hidden = state.uid === ""
      ui.notFoundDates.textContent = state.dates ? `Created ${datesText(state.dates)}.` : ""
      ui.notFoundDates.hidden = !state.dates
      document.title = "No order found · Order lookup"
      announce(
        `No order matches ${[state.uid, state.dates && datesText(state.dates)].filter(Boolean).join(", ")}`
      )
      break
    case "list":
      ui.listTitle.textContent = listTitle(state.query)
      ui.listItems.replaceChildren(...state.items.map((s) => summaryEntry(s, "result-order")))
      ui.listMore.hidden = state.cursor === null
      ui.listStatus.hidden = true
      document.title = `${ui.listTitle.textContent} · Order lookup`
      announce(
        `${ui.listTitle.textContent}: ${state.items.length}${state.cursor ? " shown, more below" : ""}`
      )
      break
    case "error":
      ui.errorTitle.textContent = state.network ? "Can't reach the server" : "The server had a problem"
      ui.errorMessage.textContent = state.message
      document.title = "Error · Order lookup"
      announce(`${ui.errorTitle.textContent}. ${state.message}`)
      break
    case "signed-out":
      // The page-wide notice (auth.js) says it and links to the sign-in; this keeps the place.
      ui.signedOutMessage.textContent = state.triedId
        ? "No order has this id, and searching by anything else needs a signed-in agent. What you typed is still in the box above."
        : "Searching needs a signed-in agent. What you typed is still in the box above."
      document.title = "Sign in · Order lookup"
      break
    case "forbidden":
      ui.forbiddenMessage.textContent = state.message
      document.title = "Not allowed · Order lookup"
      announce(state.message)
      break
    case "order":
      ui.order.replaceChildren(...renderOrder(state.order, state.uid))
      document.title = `Order ${state.uid} · Order lookup`
      announce(`Order ${state.uid} loaded, ${countText(list(state.order.items).length)}`)
      break
  }
  markCurrentRecent(state.kind === "empty" || state.kind === "list" ? null : state.uid)
}

/** `dates` ({ from, to }: "YYYY-MM-DD" or "") as words. */
function datesText({ from, to }) {
  const day = (d) => new Date(`${d}T00:00`).toLocaleDateString(undefined, { dateStyle: "medium" })
  if (from && to) return from === to ? `on ${day(from)}` : `from ${day(from)} to ${day(to)}`
  return from ? `on or after ${day(from)}` : `on or before ${day(to)}`
}

const hasDates = (dates) => dates.from !== "" || dates.to !== ""

function listTitle({ q, dates }) {
  const created = hasDates(dates) ? `created ${datesText(dates)}` : ""
  return q ? `Orders matching “${q}”${created ? `, ${created}` : ""}` : `Orders ${created}`
}

/** The page's URL for a search, so that it can be shared and comes back with Back. */
export function searchUrl(q, dates) {
  const params = new URLSearchParams()
  if (q) params.set("q", q)
  if (dates.from) params.set("from", dates.from)
  if (dates.to) params.set("to", dates.to)
  return `/?${params}`
}

/** The search in the page's URL, if any. */
export function searchInLocation() {
  const params = new URLSearchParams(window.location.search)
  const search = {
    q: params.get("q") ?? "",
    dates: { from: params.get("from") ?? "", to: params.get("to") ?? "" }
  }
  return search.q !== "" || hasDates(search.dates) ? search : null
}

const DAY = /^\d{4}-\d{2}-\d{2}$/

/** Local midnight at the start of `day` ("YYYY-MM-DD"), `plusDays` later, as an instant the API takes. */
function instant(day, plusDays = 0) {
  const date = new Date(`${day}T00:00`)
  date.setDate(date.getDate() + plusDays)
  return date.toISOString()
}

/** Why this search cannot be run, or null. */
function searchProblem(q, dates) {
  if (q === "" && !hasDates(dates))
    return "Type what the customer has — an order id, track number, phone or e-mail — or pick a date."
  if (q.length > MAX_QUERY_LENGTH)
    return `Searches are at most ${MAX_QUERY_LENGTH} characters; this one has ${q.length}. Was more than one value pasted?`
  if (CONTROL_CHARACTER.test(q))
    return "It contains a control character (a tab, line break or similar). Copy just the value and try again."
  if ((dates.from && !DAY.test(dates.from)) || (dates.to && !DAY.test(dates.to)))
    return "Dates must be days, such as 2024-01-31."
  if (dates.from && dates.to && dates.from > dates.to) return "The From date is after the To date."
  return null
}

function searchRequest(q, dates, cursor) {
  const params = new URLSearchParams({ limit: String(RESULTS_PAGE_SIZE) })
  if (q) params.set("q", q)
  // Whole days in the agent's time zone: from the first day's midnight to the midnight after the last.
  if (dates.from) params.set("from", instant(dates.from))
  if (dates.to) params.set("to", instant(dates.to, 1))
  if (cursor) params.set("cursor", cursor)
  return `/orders/search?${params}`
}

const nextCursor = (page) =>
  typeof page.next_cursor === "string" && page.next_cursor !== "" ? page.next_cursor : null

const isRefusal = (error) =>
  error instanceof RequestFailed && (error.kind === "signed-out" || error.kind === "forbidden")

/**
 * A search or lookup refused: signed out (401) or without the role (403); false for other failures.
 * `triedId`: the text was also looked up as an order id, and no order has it.
 */
function refused(error, uid, { triedId = false } = {}) {
  if (!isRefusal(error)) return false
  if (error.kind === "signed-out") {
    show({ kind: "signed-out", uid, triedId })
    sessionEnded()
  } else show({ kind: "forbidden", uid, message: forbiddenText(error) })
  return true
}

function failed(error, uid) {
  if (refused(error, uid)) return
  if (!(error instanceof RequestFailed)) {
    console.error(error)
    show({ kind: "error", uid, message: "The result could not be displayed." })
  } else if (error.kind === "bad-id")
    show({ kind: "bad-id", uid, title: "That can't be searched for.", message: error.message })
  else show({ kind: "error", uid, message: error.message, network: error.kind === "network" })
}

async function runSearch(q, dates) {
  inFlight?.abort()
  const controller = new AbortController()
  inFlight = controller
  show({ kind: "loading", uid: q || datesText(dates) })
  try {
    // Known not to be allowed: not asked (the answer would only be a refusal).
    const verdict = access(lastKnown(), "agent")
    if (verdict !== "allowed") throw new RequestFailed(verdict, "", { requiredRole: "agent" })
    const page = record(await getJson(searchRequest(q, dates, null), controller.signal))
    const items = list(page.items).filter(isRecord)
    // An exact order id opens the order, as it always has; with dates, the agent asked for a list.
    if (q !== "" && !hasDates(dates) && items.some((item) => item.order_uid === q)) {
      if (uidInLocation() !== q) history.replaceState({ uid: q }, "", pageUrl(q))
      inFlight = null
      loadOrder(q)
      return
    }
    if (items.length === 0) show({ kind: "not-found", uid: q, dates: hasDates(dates) ? dates : null })
    else show({ kind: "list", query: { q, dates }, items, cursor: nextCursor(page) })
  } catch (error) {
    if (controller.signal.aborted) return
    // Refused, but what was typed may be an order id, and looking one up needs nobody signed in.
    if (isRefusal(error) && q !== "" && !hasDates(dates) && checkUid(q).ok) {
      await lookUpInstead(q, error, controller)
      return
    }
    failed(error, q)
  } finally {
    if (inFlight === controller) inFlight = null
  }
}

/** A refused search for `q`, which may be an order id: the order by its id, if there is one. */
async function lookUpInstead(q, refusal, controller) {
  try {
    const order = await getJson(orderUrl(q), controller.signal)
    if (!isRecord(order)) throw new RequestFailed("server", "The server sent something that is not an order.")
    if (uidInLocation() !== q) history.replaceState({ uid: q }, "", pageUrl(q))
    show({ kind: "order", uid: q, order })
    // The order is there; a session that ended is still worth knowing about.
    if (refusal.kind === "signed-out" && hadSession()) sessionEnded()
  } catch (error) {
    if (controller.signal.aborted) return
    if (error instanceof RequestFailed && error.kind === "not-found") refused(refusal, q, { triedId: true })
    else failed(error, q)
  }
}

/** The list's "Show more". */
export async function moreResults() {
  if (current.kind !== "list" || current.cursor === null || inFlight) return
  const state = current
  const controller = new AbortController()
  inFlight = controller
  ui.listMore.disabled = true
  try {
    const page = record(
      await getJson(searchRequest(state.query.q, state.query.dates, state.cursor), controller.signal)
    )
    const entries = list(page.items)
      .filter(isRecord)
      .map((s) => summaryEntry(s, "result-order"))
    ui.listItems.append(...entries)
    state.cursor = nextCursor(page)
    ui.listMore.hidden = state.cursor === null
    entries[0]?.querySelector("a")?.focus()
  } catch (error) {
    if (controller.signal.aborted) return
    ui.listStatus.textContent =
      error instanceof RequestFailed && error.kind === "forbidden"
        ? `Couldn't load more. ${forbiddenText(error)}`
        : error instanceof RequestFailed && error.kind === "signed-out"
          ? "Couldn't load more: you are signed out. Sign in again to see the rest."
          : `Couldn't load more. ${error instanceof RequestFailed ? error.message : ""}`
    ui.listStatus.hidden = false
    if (error instanceof RequestFailed && error.kind === "signed-out") sessionEnded()
  } finally {
    ui.listMore.disabled = false
    if (inFlight === controller) inFlight = null
  }
}

/**
 * Entry point for a search, from the form or the URL: an order id opens the order; anything else
 * lists the orders that match (between the dates, when given).
 */
export function find(raw, dates, { push }) {
  const q = String(raw ?? "").trim()
  ui.input.value = q
  ui.from.value = dates.from
  ui.to.value = dates.to
  const problem = searchProblem(q, dates)
  if (problem !== null) {
    inFlight?.abort()
    show({ kind: "bad-id", uid: q, title: "That can't be searched for.", message: problem })
    return
  }
  const url = searchUrl(q, dates)
  if (push && `${window.location.pathname}${window.location.search}` !== url) history.pushState({}, "", url)
  runSearch(q, dates)
}

async function loadOrder(uid) {
  inFlight?.abort()
  const controller = new AbortController()
  inFlight = controller
  show({ kind: "loading", uid })
  try {
    const order = await getJson(orderUrl(uid), controller.signal)
    if (!isRecord(order)) throw new RequestFailed("server", "The server sent something that is not an order.")
    show({ kind: "order", uid, order })
  } catch (error) {
    if (controller.signal.aborted) return // a newer lookup replaced this one
    // Looking an order up by its id is public by default; a service may ask for an agent.
    if (refused(error, uid)) return
    if (!(error instanceof RequestFailed)) {
      console.error(error)
      show({ kind: "error", uid, message: "The order could not be displayed." })
    } else if (error.kind === "not-found") show({ kind: "not-found", uid, dates: null })
    else if (error.kind === "bad-id")
      show({ kind: "bad-id", uid, message: error.message || "The server does not accept this id." })
    else show({ kind: "error", uid, message: error.message, network: error.kind === "network" })
  } finally {
    if (inFlight === controller) inFlight = null
  }
}

/** Entry point for every way an order id arrives: a listed order, a deep link, history. */
export function open(rawUid, { push }) {
  const check = checkUid(rawUid)
  ui.input.value = check.uid
  ui.from.value = ""
  ui.to.value = ""
  if (!check.ok) {
    inFlight?.abort()
    show({ kind: "bad-id", uid: check.uid, message: check.message })
    return
  }
  if (push && uidInLocation() !== check.uid) history.pushState({ uid: check.uid }, "", pageUrl(check.uid))
  loadOrder(check.uid)
}

/** The error state's "Try again": the search again, or the order. */
export function retry() {
  if (current.kind !== "error") return
  const search = searchInLocation()
  if (search !== null) runSearch(search.q, search.dates)
  else loadOrder(current.uid)
}

/** The page's URL for what is typed in the search fields, or the current one when nothing is. */
export function typedSearchUrl() {
  const q = ui.input.value.trim()
  const dates = { from: ui.from.value, to: ui.to.value }
  if (q === "" && !hasDates(dates)) return `${window.location.pathname}${window.location.search}`
  return searchUrl(q, dates)
}

const SAVED_SEARCH = "order-lookup:typed-search"

/** Keeps what is typed in the search fields for this tab, to be put back after a sign-in. */
export function saveTypedSearch({ signingOut = false } = {}) {
  try {
    if (signingOut) sessionStorage.removeItem(SAVED_SEARCH)
    else
      sessionStorage.setItem(
        SAVED_SEARCH,
        JSON.stringify({ q: ui.input.value, from: ui.from.value, to: ui.to.value })
      )
  } catch {
    // Storage may be off or full: the sign-in link's return_to still carries the search.
  }
}

/** Puts back what saveTypedSearch kept (once), unless the URL asks for a search or an order. */
export function restoreTypedSearch() {
  let saved = null
  try {
    saved = JSON.parse(sessionStorage.getItem(SAVED_SEARCH) ?? "null")
    sessionStorage.removeItem(SAVED_SEARCH)
  } catch {
    return
  }
  const params = new URLSearchParams(window.location.search)
  if (!isRecord(saved) || params.has("q") || uidInLocation() !== null) return
  const text = (value) => (typeof value === "string" ? value : "")
  ui.input.value = text(saved.q)
  if (!params.has("from") && !params.has("to")) {
    ui.from.value = text(saved.from)
    ui.to.value = text(saved.to)
  }
}

/** Editing the id: the error described the previous text; stale advice is worse than none. */
export function forgetBadId() {
  if (current.kind === "bad-id") show({ kind: "empty" })
}

/** Back to the page without an id (history). */
export function close() {
  inFlight?.abort()
  ui.input.value = ""
  ui.from.value = ""
  ui.to.value = ""
  show({ kind: "empty" })
}
