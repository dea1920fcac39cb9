/** Reading back what the service stored, for tests: decoded orders and counts. */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { Order } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"

const decodeOrder = Schema.decodeUnknownSync(Order)

/** The stored order's canonical JSON with its digest, as a cache miss reads it, or none. */
export const findStoredJson = (uid: string) =>
  Effect.flatMap(OrderRepository, (r) => r.findJsonByUids([uid])).pipe(
    Effect.map((found) => Option.fromNullable(found.get(uid)))
  )

/** The stored order, decoded, or none. */
export const findStored = (uid: string) =>
  findStoredJson(uid).pipe(Effect.map(Option.map((stored) => decodeOrder(JSON.parse(stored.json)))))

/** The `limit` most recent orders, decoded, oldest of them first (as warm-up reads them). */
export const mostRecentStored = (limit: number) =>
  Effect.flatMap(OrderRepository, (r) => r.mostRecentJson(limit)).pipe(
    Effect.map((rows) => rows.map((row) => decodeOrder(JSON.parse(row.json))))
  )

/** How many orders are stored. */
export const storedCount = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ n: string }>`SELECT count(*) AS n FROM orders`.pipe(Effect.map((rows) => Number(rows[0]?.n ?? 0)))
)

/** The uids of `orders` in the order the service lists them: newest `date_created` first, then uid. */
export const newestFirstUids = (
  orders: ReadonlyArray<{ readonly order_uid: string; readonly date_created: string }>
): Array<string> =>
  [...orders]
    .sort((a, b) =>
      a.date_created === b.date_created
        ? a.order_uid < b.order_uid
          ? 1
          : -1
        : a.date_created < b.date_created
          ? 1
          : -1
    )
    .map((o) => o.order_uid)
