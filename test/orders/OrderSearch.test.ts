/**
 * Finding orders by what a customer has, on a real PostgreSQL: every kind of key, the way a person
 * types it, pages that stay put while orders arrive, and every kind of match an index lookup.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, Schema } from "effect"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository, type SearchQuery, SearchKinds } from "../../src/orders/OrderRepository.ts"
import { ORDER_SEARCH_MATCHES } from "../../src/db/migrations/0007_search_matches_batched.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"
import { TestDatabase } from "../support/database.ts"
import { newestFirstUids } from "../support/orders.ts"
import { readFixtureJson } from "../support/fixtures.ts"

const toOrder = Schema.decodeUnknownSync(Order)
const model = readFixtureJson("valid/model.json") as OrderJson

/** The model order under another id, with the given changes to its contact details. */
const variant = (
  uid: string,
  changes: Partial<OrderJson["delivery"]>,
  date = model.date_created
): OrderJson => ({
  ...model,
  order_uid: uid,
  payment: { ...model.payment, transaction: `tx-${uid}` },
  items: model.items.map((item) => ({ ...item, rid: `rid-${uid}` })),
  delivery: { ...model.delivery, ...changes },
  date_created: date
})

const withRepository = <A, E>(effect: Effect.Effect<A, E, OrderRepository | SqlClient.SqlClient>) =>
  effect.pipe(Effect.provide(OrderRepository.Default.pipe(Layer.provideMerge(TestDatabase))))

const query = (q: string, more: Partial<SearchQuery> = {}): SearchQuery => ({
  q: Option.some(q),
  from: Option.none(),
  to: Option.none(),
  limit: 20,
  cursor: Option.none(),
  ...more
})

/** One search by `q`, alone in its statement: its page, or why its cursor was refused. */
const searchAlone = (search: SearchQuery) =>
  Effect.flatMap(OrderRepository, (repo) => repo.searchByKeys([search])).pipe(
    Effect.flatMap(([page]) => page!)
  )

const uidsFor = (q: string, more: Partial<SearchQuery> = {}) =>
  searchAlone(query(q, more)).pipe(Effect.map((page) => page.items.map((i) => i.order_uid)))

/** Stores `orders` in batches of 1,000, then ANALYZE, so that the planner sees them as they are. */
const storeAnalyzed = (orders: ReadonlyArray<unknown>) =>
  Effect.gen(function* () {
    const repo = yield* OrderRepository
    for (let i = 0; i < orders.length; i += 1_000) {
      yield* repo.insertBatch(orders.slice(i, i + 1_000).map((o) => toOrder(o)))
    }
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ANALYZE`)
  })

describe("searching orders on a real PostgreSQL", () => {
  it.live("each key a customer may have finds its order, written the way a person types it", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const phone = variant("phone-order", {
          phone: "+7 (912) 345-67-89",
          email: "Anna.Petrova@Example.COM"
        })
        const other = variant(
          "other-order",
          { phone: "+7 912 000 00 00", email: "someone@example.com" },
          "2022-05-01T10:00:00Z"
        )
        yield* repo.insertBatch([model, phone, other].map((o) => toOrder(o)))

        expect(yield* uidsFor(model.order_uid)).toEqual([model.order_uid])
        // Track number and customer id are shared by all three: newest first.
        const byDate = newestFirstUids([model, phone, other])
        expect(yield* uidsFor(model.track_number)).toEqual(byDate)
        expect(yield* uidsFor(` ${model.customer_id}  `)).toEqual(byDate)
        // The model's payment transaction is its own uid; the variants have their own, and rids.
        expect(yield* uidsFor(model.items[0]!.rid)).toEqual([model.order_uid])
        expect(yield* uidsFor("tx-phone-order")).toEqual(["phone-order"])
        expect(yield* uidsFor("rid-other-order")).toEqual(["other-order"])

        // One phone, written three ways: digits are what count.
        for (const written of ["+7 (912) 345-67-89", "79123456789", "7-912-345 67 89"]) {
          expect(yield* uidsFor(written), written).toEqual(["phone-order"])
        }
        // E-mail in any case, with stray spaces; stored mixed-case, found lower-case too.
        for (const written of [
          "anna.petrova@example.com",
          "  ANNA.PETROVA@example.com ",
          "Anna.Petrova@Example.COM"
        ]) {
          expect(yield* uidsFor(written), written).toEqual(["phone-order"])
        }
        expect(yield* uidsFor("TEST@GMAIL.COM")).toEqual([model.order_uid])
        // Exact, not partial: a prefix or another case of an id finds nothing.
        expect(yield* uidsFor("WBILMTEST")).toEqual([])
        expect(yield* uidsFor("wbilmtesttrack")).toEqual([])
        expect(yield* uidsFor("+7 912")).toEqual([])
        // Text without digits is no phone: it must not match phones that have none either; nor do
        // the digits inside another kind of id make it a phone.
        expect(yield* uidsFor("no digits here")).toEqual([])
        expect(yield* uidsFor("ab-79123456789")).toEqual([])
      })
    )
  )

  it.live("the date range bounds date_created: from inclusive, to exclusive; alone it lists the range", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const days = ["2024-03-01T09:00:00Z", "2024-03-02T09:00:00Z", "2024-03-03T09:00:00Z"]
        yield* repo.insertBatch(days.map((d, i) => toOrder(variant(`day-${i}`, {}, d))))
        const between = (from: string, to: string, q = model.customer_id) =>
          uidsFor(q, { from: Option.some(from), to: Option.some(to) })
        expect(yield* between("2024-03-02T00:00:00Z", "2024-03-03T00:00:00Z")).toEqual(["day-1"])
        expect(yield* between("2024-03-01T09:00:00Z", "2024-03-03T09:00:00Z")).toEqual(["day-1", "day-0"])
        expect(yield* uidsFor(model.customer_id, { from: Option.some("2024-03-02T12:00:00+03:00") })).toEqual(
          ["day-2", "day-1"]
        )
        const rangeOnly = yield* repo.searchByDates({
          q: Option.none(),
          from: Option.some("2024-03-01T00:00:00Z"),
          to: Option.some("2024-03-02T23:59:59Z"),
          limit: 20,
          cursor: Option.none()
        })
        expect(rangeOnly.items.map((i) => i.order_uid)).toEqual(["day-1", "day-0"])
        expect(rangeOnly.items[0]).toEqual({
          order_uid: "day-1",
          date_created: days[1],
          customer_id: model.customer_id,
          amount: model.payment.amount,
          currency: model.payment.currency,
          item_count: 1
        })
      })
    )
  )

  it.live("pages stay put while orders arrive: no order repeated, none skipped, newest first", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        // 45 orders of one customer; several share a timestamp, so the uid must break ties.
        const hour = (h: number) => `2024-06-01T${String(h).padStart(2, "0")}:00:00Z`
        const first = Array.from({ length: 45 }, (_, i) =>
          variant(`c-${String(i).padStart(2, "0")}`, {}, hour((i % 9) + 5))
        )
        yield* repo.insertBatch(first.map((o) => toOrder(o)))
        const seen: Array<string> = []
        let cursor = Option.none<string>()
        let arrivals = 0
        do {
          const page = yield* searchAlone(query(model.customer_id, { limit: 10, cursor }))
          seen.push(...page.items.map((i) => i.order_uid))
          cursor = page.nextCursor
          // Between pages, newer orders of the same customer arrive (as they do during a call).
          yield* repo.insertBatch([toOrder(variant(`new-${arrivals++}`, {}, hour(20)))])
        } while (Option.isSome(cursor))
        const expected = newestFirstUids(first)
        expect(seen).toEqual(expected)
        // A fresh search starts with what arrived.
        expect((yield* searchAlone(query(model.customer_id, { limit: 5 }))).items[0]!.order_uid).toMatch(
          /^new-/
        )
        const bad = yield* Effect.either(searchAlone(query("x", { cursor: Option.some("not-a-cursor") })))
        expect(bad._tag === "Left" && bad.left._tag).toBe("InvalidCursor")
      })
    )
  )

  it.live("searches run together in one statement each get the page they would get alone", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const hour = (h: number) => `2024-07-01T${String(h).padStart(2, "0")}:00:00Z`
        // 12 orders of one customer, an hour apart, each with its own phone, transaction and rid.
        const orders = Array.from({ length: 12 }, (_, i) =>
          variant(`b-${String(i).padStart(2, "0")}`, { phone: `+7 900 000 00 ${10 + i}` }, hour(i + 5))
        )
        yield* repo.insertBatch(orders.map((o) => toOrder(o)))
        const firstPage = yield* searchAlone(query(model.customer_id, { limit: 5 }))
        const queries: Array<SearchQuery> = [
          query(model.customer_id, { limit: 5 }),
          query(model.customer_id, { limit: 5, cursor: firstPage.nextCursor }),
          query(model.customer_id, { from: Option.some(hour(8)), to: Option.some(hour(11)) }),
          query("+7 900 000 00 13"),
          query("tx-b-07"),
          query("nothing has this"),
          query(model.customer_id, { cursor: Option.some("not-a-cursor") }),
          query("rid-b-11", { limit: 1 })
        ]
        const together = yield* repo.searchByKeys(queries)
        const alone = yield* Effect.forEach(queries, (q) => Effect.either(searchAlone(q)))
        expect(together).toEqual(alone)
        // And what alone gives is right: pages, bounds, keys and the refused cursor.
        const uids = (i: number) => Either.getOrThrow(alone[i]!).items.map((item) => item.order_uid)
        expect(uids(0)).toEqual(["b-11", "b-10", "b-09", "b-08", "b-07"])
        expect(uids(1)).toEqual(["b-06", "b-05", "b-04", "b-03", "b-02"])
        expect(uids(2)).toEqual(["b-05", "b-04", "b-03"])
        expect(uids(3)).toEqual(["b-03"])
        expect(uids(4)).toEqual(["b-07"])
        expect(uids(5)).toEqual([])
        expect(Either.isLeft(alone[6]!) && alone[6].left._tag).toBe("InvalidCursor")
        expect(uids(7)).toEqual(["b-11"])
        expect(yield* repo.searchByKeys([])).toEqual([])
      })
    )
  )

  it.live(
    "every kind of match is an index lookup, never a sequential scan (EXPLAIN on 5,000 orders)",
    () =>
      withRepository(
        Effect.gen(function* () {
          const orders = generateOrders(5_000, 14)
          yield* storeAnalyzed(orders)
          const sample = orders[1234]!
          const keys: Record<(typeof SearchKinds)[number], string> = {
            order_uid: sample.order_uid,
            track_number: sample.track_number,
            customer_id: sample.customer_id,
            phone: sample.delivery.phone,
            email: sample.delivery.email.toUpperCase(),
            transaction: sample.payment.transaction,
            rid: sample.items[0]!.rid
          }
          const expectedIndex: Record<(typeof SearchKinds)[number], string> = {
            order_uid: "orders_pkey",
            track_number: "orders_track_number_search_idx",
            customer_id: "orders_customer_id_search_idx",
            phone: "deliveries_phone_search_idx",
            email: "deliveries_email_search_idx",
            transaction: "payments_transaction_search_idx",
            rid: "items_rid_search_idx"
          }
          for (const kind of SearchKinds) {
            const q = keys[kind]
            // The search statement, and the lookups it calls (order_search_matches), as PostgreSQL
            // plans them: the function keeps one generic plan, so that is the one explained.
            const plan = yield* explainQuery(query(q))
            const matches = yield* explainMatches(q)
            yield* Effect.logInfo(`EXPLAIN search by ${kind} (${q}):\n${plan.text}\n${matches.text}`)
            expect(plan.seqScans, `${kind}: ${plan.text}`).toEqual([])
            expect(plan.indexes, `${kind}: ${plan.text}`).toContain("orders_pkey")
            expect(matches.seqScans, `${kind}: ${matches.text}`).toEqual([])
            expect(matches.indexes, `${kind}: ${matches.text}`).toContain(expectedIndex[kind])
            // And the search finds the order by it.
            expect(yield* uidsFor(q), kind).toContain(sample.order_uid)
          }
          const range = yield* explainRange
          yield* Effect.logInfo(`EXPLAIN search by date range:\n${range.text}`)
          expect(range.seqScans, range.text).toEqual([])
          expect(range.indexes, range.text).toContain("orders_recent_idx")
        })
      ),
    120_000
  )

  it.live(
    "a key most orders share (test data) does not turn the lookups for other keys into sequential scans",
    () =>
      withRepository(
        Effect.gen(function* () {
          // Orders produced from one template: the same customer id and e-mail on every one of them.
          const orders = generateOrders(3_000, 15).map((o) => ({
            ...o,
            customer_id: "test",
            delivery: { ...o.delivery, email: "test@gmail.com" }
          }))
          yield* storeAnalyzed(orders)
          const sample = orders[777]!
          for (const q of [sample.track_number, sample.payment.transaction, "test", "nobody@example.com"]) {
            const matches = yield* explainMatches(q)
            yield* Effect.logInfo(`EXPLAIN order_search_matches(${q}) over skewed data:\n${matches.text}`)
            expect(matches.seqScans, `${q}: ${matches.text}`).toEqual([])
          }
          expect(yield* uidsFor(sample.track_number)).toEqual([sample.order_uid])
          expect((yield* uidsFor("test")).length).toBe(20)
        })
      ),
    120_000
  )
})

interface Plan {
  readonly text: string
  readonly seqScans: ReadonlyArray<string>
  readonly indexes: ReadonlyArray<string>
}

interface PlanNode {
  readonly "Node Type": string
  readonly "Relation Name"?: string
  readonly "Index Name"?: string
  readonly Plans?: ReadonlyArray<PlanNode>
}

const nodesOf = (node: PlanNode): Array<PlanNode> => [node, ...(node.Plans ?? []).flatMap(nodesOf)]

/** The plan of `statement`, with its sequential scans and the indexes it uses. */
const explain = (sql: SqlClient.SqlClient, statement: string, params: ReadonlyArray<unknown>) =>
  Effect.gen(function* () {
    const [json] = yield* sql.unsafe<{ "QUERY PLAN": ReadonlyArray<{ Plan: PlanNode }> }>(
      `EXPLAIN (FORMAT JSON) ${statement}`,
      params
    )
    const text = (yield* sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN ${statement}`, params))
      .map((r) => r["QUERY PLAN"])
      .join("\n")
    const nodes = nodesOf(json!["QUERY PLAN"][0]!.Plan)
    return {
      text,
      seqScans: nodes.filter((n) => n["Node Type"] === "Seq Scan").map((n) => n["Relation Name"] ?? "?"),
      indexes: nodes.flatMap((n) => (n["Index Name"] === undefined ? [] : [n["Index Name"]]))
    } satisfies Plan
  })

/** The plan of the very statement the repository runs for `search`. */
const explainQuery = (search: SearchQuery) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* OrderRepository
    const [statement, params] = (yield* repo.searchStatement(search)).compile()
    return yield* explain(sql, statement, params)
  })

/**
 * The plan `order_search_matches` keeps for its lookups, explained for `q`: planned under the
 * settings the function itself runs with (`SET` clauses of its definition, such as the generic
 * plan it keeps).
 */
const explainMatches = (q: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.gen(function* () {
        const [fn] = yield* sql<{ readonly proconfig: ReadonlyArray<string> | null }>`
          SELECT proconfig FROM pg_proc WHERE proname = 'order_search_matches'`
        for (const setting of fn?.proconfig ?? []) {
          const [name, value] = setting.split("=") as [string, string]
          yield* sql.unsafe(`SET LOCAL ${name} = '${value.replaceAll("'", "''")}'`)
        }
        yield* sql.unsafe(`PREPARE search_matches(text[]) AS ${ORDER_SEARCH_MATCHES}`)
        const plan = yield* explain(sql, `EXECUTE search_matches(ARRAY['${q.replaceAll("'", "''")}'])`, [])
        yield* sql.unsafe("DEALLOCATE search_matches")
        return plan
      })
    )
  )

const explainRange = explainQuery({
  q: Option.none(),
  from: Option.some("2023-01-01T00:00:00Z"),
  to: Option.some("2023-01-02T00:00:00Z"),
  limit: 20,
  cursor: Option.none()
})
