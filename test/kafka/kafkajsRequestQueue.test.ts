import { createRequire } from "node:module"
import { afterEach, describe, expect, it, vi } from "vitest"
import "../../src/kafka/kafkajsRequestQueue.ts"

interface RequestQueue {
  throttledUntil: number
  pending: Array<unknown>
  scheduleCheckPendingRequests(): void
  checkPendingRequests(): void
  destroy(): void
}
const RequestQueue = createRequire(import.meta.url)("kafkajs/src/network/requestQueue/index.js") as new (
  options: Record<string, unknown>
) => RequestQueue

const newQueue = () => new RequestQueue({ clientId: "test", broker: "localhost:9092", logger: console })

/** The delays of the timers a queue sets when asked to look at its pending requests again. */
const scheduledDelays = (arrange: (queue: RequestQueue) => void) => {
  const queue = newQueue()
  arrange(queue)
  const setTimeout = vi.spyOn(globalThis, "setTimeout")
  queue.scheduleCheckPendingRequests()
  queue.destroy()
  return setTimeout.mock.calls.map((call) => call[1])
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe("kafkajs' request queue", () => {
  it("sets no timer when no request waits, throttled or not (kafkajs polled every 1 ms)", () => {
    expect(scheduledDelays(() => {})).toEqual([])
    expect(scheduledDelays((q) => (q.throttledUntil = Date.now() + 5_000))).toEqual([])
  })

  it("looks again when the throttling ends, or in kafkajs' 10 ms when requests wait unthrottled", () => {
    const [throttled] = scheduledDelays((q) => {
      q.pending.push({})
      q.throttledUntil = Date.now() + 5_000
    })
    expect(throttled).toBeGreaterThan(4_000)
    expect(throttled).toBeLessThanOrEqual(5_000)
    expect(scheduledDelays((q) => q.pending.push({}))).toEqual([10])
  })

  it("left idle after a look, runs no timers at all", async () => {
    const queue = newQueue()
    const wait = globalThis.setTimeout
    const setTimeout = vi.spyOn(globalThis, "setTimeout")
    queue.checkPendingRequests()
    await new Promise((resolve) => wait(resolve, 50))
    queue.destroy()
    // kafkajs' own loop set a timer every millisecond.
    expect(setTimeout).not.toHaveBeenCalled()
  })
})
