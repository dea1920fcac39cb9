/**
 * When ingestion stops for good — here kafkajs gives up joining a group that another application
 * already holds with an incompatible protocol — a process that stayed up would serve HTTP and never
 * ingest again. It must close down and exit non-zero, saying why, so its supervisor notices.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { PartitionAssigners, type PartitionAssigner } from "kafkajs"
import { backlog } from "../support/backlog.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually, kafkaFor } from "../support/kafka.ts"
import { scopedService, withServiceOutput } from "../support/service.ts"

/** Round-robin under another name: a consumer of some other application's making. */
const foreignAssigner: PartitionAssigner = (config) => ({
  ...PartitionAssigners.roundRobin(config),
  name: "AnotherApplicationsAssigner"
})

describe("ingestion that stops by itself", () => {
  it.live(
    "the service exits with status 1 and names the reason when kafkajs gives up on the consumer group",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        const b = yield* backlog(20, 7, databaseUrl)

        // Another application's consumer holds the group with a protocol ours does not speak.
        const foreign = kafkaFor(b.topics.brokers).consumer({
          groupId: b.topics.groupId,
          partitionAssigners: [foreignAssigner]
        })
        yield* Effect.acquireRelease(
          Effect.promise(async () => {
            await foreign.connect()
            await foreign.subscribe({ topics: [b.topics.topic] })
            await foreign.run({ autoCommit: false, eachBatch: async () => new Promise(() => undefined) })
          }),
          () => Effect.promise(() => foreign.disconnect())
        )
        const admin = kafkaFor(b.topics.brokers).admin()
        yield* Effect.acquireRelease(
          Effect.promise(() => admin.connect()),
          () => Effect.promise(() => admin.disconnect())
        )
        yield* eventually(
          "the other application's consumer holds the group",
          Effect.promise(() => admin.describeGroups([b.topics.groupId])).pipe(
            Effect.map(({ groups }) => groups[0]?.state === "Stable")
          ),
          60_000
        )

        const service = yield* scopedService(b.env)
        const exit = yield* Effect.promise(() => service.exited).pipe(
          Effect.timeoutFail({
            duration: "90 seconds",
            onTimeout: () => new Error("the service kept running without its consumer")
          }),
          withServiceOutput(service)
        )
        expect(exit).toBe(1)
        expect(service.output()).toMatch(/order-service: Ingestion stopped: .*protocols are incompatible/)
        // Logged with its cause as an error too, for whoever reads the logs rather than the exit.
        expect(service.output()).toMatch(/"level":"error","message":"The ingest pipeline stopped"/)
      }).pipe(Effect.scoped),
    180_000
  )
})
