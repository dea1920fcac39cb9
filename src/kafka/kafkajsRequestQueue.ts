/**
 * kafkajs 2.2.4, its last release, schedules its request queue's next look `throttledUntil - now`
 * ms ahead: a negative delay whenever no broker is throttling the client. Node has always run such
 * a timer after 1 ms, and since Node 23 also prints a TimeoutNegativeWarning on stderr for it
 * (kafkajs#1751). Here is the same method with that delay written as the 1 ms it always was: the
 * same timing, no warning. Each module that makes kafkajs clients imports this one.
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
    if (this.throttleCheckTimeoutId) return
    const throttledFor = this.throttledUntil - Date.now()
    const delay =
      throttledFor > 0 ? throttledFor : this.pending.length > 0 ? CHECK_PENDING_REQUESTS_INTERVAL : 1
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null
      this.checkPendingRequests()
    }, delay)
  }
}
