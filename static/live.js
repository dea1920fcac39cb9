// Orders arriving live (GET /orders/live, server-sent events) go on top of the recent orders.
// While the list is scrolled away from its top, or paused, they wait behind an "N new orders"
// button instead of moving what the agent is reading.
//
// An EventSource says nothing of why it failed: one refused for want of a session (401) would be
// tried again forever. So each failure asks GET /auth/me, and the feed stops when nobody is signed
// in any more (or the person lost the agent role), saying so.

import { isRecord } from "./dom.js"
import { access, sessionEnded, whoAmI } from "./auth.js"
import { loadRecent, prependRecent, recentScrolled, recentStopped, scrollRecentToTop } from "./recent.js"

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
/** Set when the feed stopped for good: signed out, or not allowed. */
let stopped = false
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

/** After a failure: whether the feed may go on; if not, it stops and the page says why. */
async function stillAllowed() {
  const verdict = access(await whoAmI(), "agent")
  if (verdict === "allowed") return !stopped
  stop(verdict)
  return false
}

function stop(verdict) {
  if (stopped) return
  stopped = true
  source?.close()
  setStatus("offline", verdict === "forbidden" ? "Not allowed" : "Signed out")
  ui.toggle.hidden = true
  recentStopped(verdict)
  if (verdict === "signed-out") sessionEnded()
}

function connect() {
  if (stopped) return
  const current = new EventSource("/orders/live")
  source = current
  setStatus("connecting", "Connecting…")
  current.addEventListener("open", () => {
    reconnectDelay = 1_000
    setStatus(paused ? "paused" : "live", paused ? "Paused" : "Live")
  })
  current.addEventListener("order", onOrder)
  current.addEventListener("gap", resync)
  current.addEventListener("dropped", () => {
    // Too far behind: start over rather than resume into the same backlog.
    current.close()
    resync()
    setTimeout(connect, 1_000)
  })
  current.addEventListener("error", () => {
    if (stopped) return
    // The stream broke and the browser tries again itself: a refused retry ends up below.
    if (current.readyState === EventSource.CONNECTING) {
      setStatus("connecting", "Reconnecting…")
      return
    }
    // The browser gave up: refused (401, 403), or e.g. a 503 while an instance shuts down. Unless
    // the person is signed out now, try again, less and less often.
    current.close()
    setStatus("offline", "Offline — retrying")
    const delay = reconnectDelay
    reconnectDelay = Math.min(reconnectDelay * 2, 30_000)
    stillAllowed().then((allowed) => {
      if (allowed) setTimeout(connect, delay)
    })
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
