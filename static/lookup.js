// Looking an order up: what the page shows in place of the order, and every way an id arrives.

import { announce, isRecord } from "./dom.js"
import { getJson, RequestFailed } from "./api.js"
import { countText, list } from "./format.js"
import { checkUid, orderUrl, pageUrl, uidInLocation } from "./order-id.js"
import { renderOrder } from "./order-view.js"
import { markCurrentRecent } from "./recent.js"

const byId = (id) => document.getElementById(id)

const ui = {
  input: byId("uid-input"),
  uidError: byId("uid-error"),
  uidErrorMessage: byId("uid-error-message"),
  results: byId("results"),
  empty: document.querySelector("[data-testid=state-empty]"),
  loading: document.querySelector("[data-testid=state-loading]"),
  loadingUid: byId("loading-uid"),
  notFound: document.querySelector("[data-testid=state-not-found]"),
  notFoundUid: byId("not-found-uid"),
  error: document.querySelector("[data-testid=state-error]"),
  errorTitle: byId("error-title"),
  errorMessage: byId("error-message"),
  order: byId("order-view")
}

// Exactly one of empty, loading, not-found, bad-id, error, order is visible.
let current = { kind: "empty" }
let inFlight = null

function show(state) {
  current = state
  ui.empty.hidden = state.kind !== "empty"
  ui.loading.hidden = state.kind !== "loading"
  ui.notFound.hidden = state.kind !== "not-found"
  ui.error.hidden = state.kind !== "error"
  ui.order.hidden = state.kind !== "order"
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
      announce(`Loading order ${state.uid}`)
      break
    case "bad-id":
      ui.uidErrorMessage.textContent = state.message
      document.title = "Invalid order id · Order lookup"
      announce(`That can't be an order id. ${state.message}`)
      break
    case "not-found":
      ui.notFoundUid.textContent = state.uid
      document.title = "Order not found · Order lookup"
      announce(`No order with id ${state.uid}`)
      break
    case "error":
      ui.errorTitle.textContent = state.network ? "Can't reach the server" : "The server had a problem"
      ui.errorMessage.textContent = state.message
      document.title = "Error · Order lookup"
      announce(`${ui.errorTitle.textContent}. ${state.message}`)
      break
    case "order":
      ui.order.replaceChildren(...renderOrder(state.order, state.uid))
      document.title = `Order ${state.uid} · Order lookup`
      announce(`Order ${state.uid} loaded, ${countText(list(state.order.items).length)}`)
      break
  }
  markCurrentRecent(state.kind === "empty" ? null : state.uid)
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
    if (!(error instanceof RequestFailed)) {
      console.error(error)
      show({ kind: "error", uid, message: "The order could not be displayed." })
    } else if (error.kind === "not-found") show({ kind: "not-found", uid })
    else if (error.kind === "bad-id")
      show({ kind: "bad-id", uid, message: error.message || "The server does not accept this id." })
    else show({ kind: "error", uid, message: error.message, network: error.kind === "network" })
  } finally {
    if (inFlight === controller) inFlight = null
  }
}

/** Entry point for every way an id arrives: the form, a recent order, a deep link, history. */
export function open(rawUid, { push }) {
  const check = checkUid(rawUid)
  ui.input.value = check.uid
  if (!check.ok) {
    inFlight?.abort()
    show({ kind: "bad-id", uid: check.uid, message: check.message })
    return
  }
  if (push && uidInLocation() !== check.uid) history.pushState({ uid: check.uid }, "", pageUrl(check.uid))
  loadOrder(check.uid)
}

/** The error state's "Try again". */
export function retry() {
  if (current.kind === "error") loadOrder(current.uid)
}

/** Editing the id: the error described the previous text; stale advice is worse than none. */
export function forgetBadId() {
  if (current.kind === "bad-id") show({ kind: "empty" })
}

/** Back to the page without an id (history). */
export function close() {
  inFlight?.abort()
  ui.input.value = ""
  show({ kind: "empty" })
}
