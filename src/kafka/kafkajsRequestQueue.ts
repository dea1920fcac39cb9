/**
 * kafkajs 2.2.4, its last release, looks at its request queue again after every look, whether or
 * not a request waits: `throttledUntil - now` ms ahead, a negative delay whenever no broker is
 * throttling the client, which Node runs after 1 ms. So every broker connection ran a 1-ms timer
 * loop for as long as it was open (kafkajs#1556, #1704), an idle consumer's too, costing a timer
 * and its garbage a millisecond each; since Node 23 it also prints a TimeoutNegativeWarning
 * (kafkajs#1751). Here is the same method, scheduling a look only when a request waits: when the
 * throttling ends, or in kafkajs' 10 ms when it waits for a request in flight. A queue with nothing
 * waiting needs no timer: a new request is sent at once or scheduled when it is queued, and every
 * answer or timeout of a request in flight looks at the queue again (`fulfillRequest`,
 * `SocketRequest.timeout`). Each module that makes kafkajs clients imports this one.
 */
import { createRequire } from "node:module"

interface RequestQueue {
  throttledUntil: number
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null
  pending: Array<unknown>
  checkPendingRequests(): void
  scheduleCheckPendingRequests(): void
}

/** kafkajs' own interval (not exported) for looking again at requests held back. */
const CHECK_PENDING_REQUESTS_INTERVAL = 10

const load = createRequire(import.meta.url)
// Only the release whose method this is; another one keeps its own.
if ((load("kafkajs/package.json") as { version: string }).version === "2.2.4") {
  const { prototype } = load("kafkajs/src/network/requestQueue/index.js") as { prototype: RequestQueue }
  prototype.scheduleCheckPendingRequests = function (this: RequestQueue) {
    if (this.throttleCheckTimeoutId || this.pending.length === 0) return
    const throttledFor = this.throttledUntil - Date.now()
    const delay = throttledFor > 0 ? throttledFor : CHECK_PENDING_REQUESTS_INTERVAL
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null
      this.checkPendingRequests()
    }, delay)
  }
}
