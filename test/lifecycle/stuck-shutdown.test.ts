/**
 * However ingestion stands when the signal comes, SIGTERM ends the process within
 * `http.shutdown_timeout` plus the documented 30 seconds — here with its Kafka broker frozen
 * (SIGSTOP: connections open, nothing answered), so that every Kafka call closing down makes hangs.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as LocalKafka from "../../src/local/LocalKafka.ts"
import { createTestDatabase } from "../support/database.ts"
import { scopedService, serviceUrl, withServiceOutput } from "../support/service.ts"

const SHUTDOWN_TIMEOUT_S = 2
const GRACE_S = 30

describe("closing down while Kafka hangs", () => {
  it.live(
    "SIGTERM ends the process within http.shutdown_timeout + 30 s, saying so when it had to stop waiting",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        const kafka = yield* LocalKafka.make({ brokers: 1 })
        // Unfrozen before the broker is stopped, whatever happens here.
        yield* Effect.addFinalizer(() => kafka.freezeBroker(0, false))
        const service = yield* scopedService({
          CONFIG_FILE: "config/config.yaml",
          DATABASE_URL: databaseUrl,
          KAFKA_BROKERS: kafka.bootstrapServers,
          HTTP_HOST: "127.0.0.1",
          // Any free port, bound by the service itself and read from its log: a port picked here
          // could be taken (by an outgoing connection's local end) before the service binds it.
          HTTP_PORT: "0",
          HTTP_SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_S} seconds`,
          CACHE_WARM_COUNT: "0",
          LOG_LEVEL: "info"
        })
        yield* Effect.gen(function* () {
          const url = yield* serviceUrl(service)
          // Consuming: the group is joined and the dead-letter producers are connected.
          const deadline = Date.now() + 60_000
          while ((yield* Effect.promise(() => fetch(`${url}/readyz`).then((r) => r.status))) !== 200) {
            if (Date.now() > deadline) return yield* Effect.die(new Error("the service never became ready"))
            yield* Effect.sleep("200 millis")
          }

          expect(yield* kafka.freezeBroker(0, true)).toBe(true)
          const signalled = Date.now()
          service.child.kill("SIGTERM")
          const limitMs = (SHUTDOWN_TIMEOUT_S + GRACE_S) * 1000
          const exit = yield* Effect.promise(() => service.exited).pipe(
            Effect.timeoutFail({
              duration: `${limitMs + 10_000} millis`,
              onTimeout: () => new Error("the process was still running 10 s past its shutdown limit")
            })
          )
          const tookMs = Date.now() - signalled
          console.info(`closing down with a frozen broker: exit ${exit} after ${tookMs} ms`)
          expect(tookMs).toBeLessThan(limitMs + 5_000)
          // Either it closed down by itself (0), or its limit ended it (1) with a line saying so.
          if (exit === 1) expect(service.output()).toContain("order-service: closing down took longer than")
          else expect(exit).toBe(0)
        }).pipe(withServiceOutput(service))
      }).pipe(Effect.scoped),
    180_000
  )
})
