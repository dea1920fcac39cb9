/**
 * The counts by kind `GET /dead-letters` shows: over all time exact (from `dead_letter_kinds`), over
 * a time range counted up to `COUNTS_CAP` per kind and flagged past it, so that a range as wide as
 * the table (`since=1970-01-01`) costs a bounded read. On a real PostgreSQL.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { COUNTS_CAP, DeadLetterIndex, type IndexedLetter } from "../../src/deadletters/DeadLetterIndex.ts"
import { TestDatabase } from "../support/database.ts"

const HOUR = 60 * 60 * 1000
const now = Date.now()

const letter = (offset: number, kind: string, failedAt: Date): IndexedLetter => ({
  partition: 0,
  offset: String(offset),
  kind,
  detail: "",
  failedAt,
  source: null,
  key: null,
  value: Buffer.from("{}"),
  headers: [],
  orderUid: null,
  replayOf: null
})

// Past the cap by five: one kind with more letters than the cap, a day old; a few of another, recent.
const MANY = COUNTS_CAP + 5
const many = Array.from({ length: MANY }, (_, i) => letter(i, "schema", new Date(now - 24 * HOUR + i)))
const few = [0, 1, 2].map((i) => letter(MANY + i, "invalid_json", new Date(now - HOUR + i)))

interface PlanNode {
  readonly "Relation Name"?: string
  /** Rows a node produced, on average per loop (PostgreSQL divides by the loops). */
  readonly "Actual Rows": number
  readonly "Actual Loops": number
  readonly "Rows Removed by Filter"?: number
  readonly Plans?: ReadonlyArray<PlanNode>
}

const layer = DeadLetterIndex.Default.pipe(Layer.provideMerge(TestDatabase))

describe("dead-letter counts", () => {
  it.layer(layer, { timeout: 120_000 })((it) => {
    it.effect("over a range wider than the cap, a kind's count stops at the cap and says so", () =>
      Effect.gen(function* () {
        const index = yield* DeadLetterIndex
        yield* index.upsert([...many, ...few])

        const wide = yield* index.counts({ since: new Date("1970-01-01T00:00:00Z") })
        expect(wide).toEqual({ counts: { schema: COUNTS_CAP, invalid_json: 3 }, capped: true })

        // Over all time the per-kind table answers, exact.
        expect(yield* index.counts({})).toEqual({ counts: { schema: MANY, invalid_json: 3 }, capped: false })

        // A range under the cap is exact and not flagged.
        expect(yield* index.counts({ since: new Date(now - 2 * HOUR) })).toEqual({
          counts: { invalid_json: 3 },
          capped: false
        })
        expect(
          yield* index.counts({ since: new Date(now - 25 * HOUR), until: new Date(now - 24 * HOUR + 10) })
        ).toEqual({ counts: { schema: 10 }, capped: false })
      })
    )

    it.effect("the count over a wide range reads at most the cap and one more letters of each kind", () =>
      Effect.gen(function* () {
        const index = yield* DeadLetterIndex
        const sql = yield* SqlClient.SqlClient
        yield* sql`ANALYZE dead_letters`
        const [text, params] = index.countsStatement({ since: new Date("1970-01-01T00:00:00Z") }).compile()
        const [row] = yield* sql.unsafe<{ "QUERY PLAN": ReadonlyArray<{ Plan: PlanNode }> }>(
          `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
          params
        )
        // Every node that reads `dead_letters` (by an index or not), with what it produced per loop.
        const reads: Array<PlanNode> = []
        const visit = (node: PlanNode) => {
          if (node["Relation Name"] === "dead_letters") reads.push(node)
          for (const child of node.Plans ?? []) visit(child)
        }
        visit(row!["QUERY PLAN"][0]!.Plan)
        expect(reads.length).toBeGreaterThan(0)
        // Each kind is read up to the cap and one more: the big one stops there, the small one is
        // read whole. PostgreSQL shows rows per loop, rounded: half a row per loop either way.
        const read = reads.reduce(
          (sum, node) =>
            sum + (node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0)) * node["Actual Loops"],
          0
        )
        const loops = reads.reduce((sum, node) => sum + node["Actual Loops"], 0)
        expect(read, JSON.stringify(reads)).toBeLessThanOrEqual(COUNTS_CAP + 1 + few.length + loops / 2)
      })
    )
  })
})
