/**
 * `npm start -- --demo`: once the service runs, publish a batch of generated orders so the page
 * has something to show.
 */
import { Effect, Layer } from "effect"
import { Partitioners } from "kafkajs"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { kafkaError } from "../kafka/KafkaError.ts"
import { generateOrders } from "./OrderGenerator.ts"

export const DemoOrders = (count: number) =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const client = yield* KafkaClient
      const orders = generateOrders(count)
      yield* Effect.acquireUseRelease(
        Effect.sync(() => client.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })),
        (producer) =>
          Effect.tryPromise({
            try: async () => {
              await producer.connect()
              await producer.send({
                topic: client.topics.orders,
                acks: -1,
                messages: orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
              })
            },
            catch: kafkaError("Could not publish the demo orders")
          }),
        (producer) => Effect.promise(() => producer.disconnect().catch(() => undefined))
      )
      yield* Effect.logInfo("Published demo orders").pipe(
        Effect.annotateLogs({ count, try_order_uid: orders[0]?.order_uid ?? "" })
      )
    })
  )
