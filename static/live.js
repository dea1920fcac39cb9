// Orders arriving live (GET /orders/live, server-sent events) go on top of the recent orders.
// While the list is scrolled away from its top, or paused, they wait behind an "N new orders"
// button instead of moving what the agent is reading.

import { isRecord } from "./dom.js"
import { loadRecent, prependRecent, recentScrolled, scrollRecentToTop } from "./recent.js"

const ui = {
  status: document.getElementById("live-status"),
  toggle: document.getElementById("live-toggle"),
  pending: document.getElementById("live-new"),
  list: document.getElementById("recent-list")
}

/** Arrivals not yet shown, oldest first. */
let waiting = []
let paused = false
let source = null
let reconnectDelay = 1_000
/** Arrivals are put on the page once per frame, however many come in. */
let frame = 0
let arrived = []

function setStatus(state, text) {
  ui.status.dataset.state = state
  ui.status.textContent = text
}

function showPending() {
  const n = waiting.length
  ui.pending.hidden = n === 0
  ui.pending.textContent = n === 1 ? "1 new order" : `${n} new orders`
}

/** Puts the waiting orders on top of the list. */
function flush() {
  prependRecent(waiting)
  waiting = []
  showPending()
}

function place() {
  frame = 0
  waiting.push(...arrived)
  arrived = []
  if (!paused && !recentScrolled()) flush()
  else showPending()
}

function onOrder(event) {
  let summary
  try {
    summary = JSON.parse(event.data)
  } catch {
    return
  }
  if (!isRecord(summary) || typeof summary.order_uid !== "string") return
  arrived.push(summary)
  if (frame === 0) frame = requestAnimationFrame(place)
}

/** Orders were missed (the server let this page go, or cannot resume it): list them afresh. */
function resync() {
  waiting = []
  showPending()
  loadRecent({ reset: true })
}

function connect() {
  source = new EventSource("/orders/live")
  setStatus("connecting", "Connecting…")
  source.addEventListener("open", () => {
    reconnectDelay = 1_000
    setStatus(paused ? "paused" : "live", paused ? "Paused" : "Live")
  })
  source.addEventListener("order", onOrder)
  source.addEventListener("gap", resync)
  source.addEventListener("dropped", () => {
    // Too far behind: start over rather than resume into the same backlog.
    source.close()
    resync()
    setTimeout(connect, 1_000)
  })
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CONNECTING) {
      setStatus("connecting", "Reconnecting…")
      return
    }
    // The browser gave up (e.g. a 503 while an instance shuts down): try again, less and less often.
    source.close()
    setStatus("offline", "Offline — retrying")
    setTimeout(connect, reconnectDelay)
    reconnectDelay = Math.min(reconnectDelay * 2, 30_000)
  })
}

ui.toggle.addEventListener("click", () => {
  paused = !paused
  ui.toggle.setAttribute("aria-pressed", String(paused))
  ui.toggle.textContent = paused ? "Resume" : "Pause"
  if (source?.readyState === EventSource.OPEN)
    setStatus(paused ? "paused" : "live", paused ? "Paused" : "Live")
  if (!paused && !recentScrolled()) flush()
})

ui.pending.addEventListener("click", () => {
  flush()
  scrollRecentToTop()
})

// Scrolled back to the top: what waited comes in, unless paused.
ui.list.addEventListener("scroll", () => {
  if (!paused && waiting.length > 0 && !recentScrolled()) flush()
})

export function startLive() {
  if (typeof EventSource === "function") connect()
  else setStatus("offline", "Live updates need a newer browser")
}
