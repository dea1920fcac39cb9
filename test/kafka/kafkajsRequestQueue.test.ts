import { createRequire } from "node:module"
import { afterEach, describe, expect, it, vi } from "vitest"
import "../../src/kafka/kafkajsRequestQueue.ts"

interface RequestQueue {
  throttledUntil: number
  pending: Array<unknown>
  scheduleCheckPendingRequests(): void
  destroy(): void
}
const RequestQueue = createRequire(import.meta.url)("kafkajs/src/network/requestQueue/index.js") as new (
  options: Record<string, unknown>
) => RequestQueue

/** The delay of the one timer a queue sets when asked to look at its pending requests again. */
const scheduledDelay = (arrange: (queue: RequestQueue) => void) => {
  const queue = new RequestQueue({ clientId: "test", broker: "localhost:9092", logger: console })
  arrange(queue)
  const setTimeout = vi.spyOn(globalThis, "setTimeout")
  queue.scheduleCheckPendingRequests()
  queue.destroy()
  expect(setTimeout).toHaveBeenCalledTimes(1)
  return setTimeout.mock.calls[0]![1]
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe("kafkajs' request queue schedules its next look", () => {
  it("1 ms ahead when no broker throttles it, not at a negative delay (which Node 23+ warns of)", () => {
    expect(scheduledDelay(() => {})).toBe(1)
  })

  it("when the throttling ends, or in kafkajs' 10 ms when requests wait unthrottled, as kafkajs does", () => {
    const throttled = scheduledDelay((q) => (q.throttledUntil = Date.now() + 5_000))
    expect(throttled).toBeGreaterThan(4_000)
    expect(throttled).toBeLessThanOrEqual(5_000)
    expect(scheduledDelay((q) => q.pending.push({}))).toBe(10)
  })
})
