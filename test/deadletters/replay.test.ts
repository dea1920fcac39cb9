/**
 * Dead letters on a real broker and PostgreSQL, through the whole service as `App` composes it:
 * rejects of every kind parked, then found, inspected and replayed over HTTP and with
 * `npm run dlq`, as an operator would after fixing a cause.
 */
import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { DeadLetterHeaders, toKafkaMessage } from "../../src/kafka/DeadLetters.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import { baseUrl, serviceStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { runDlq } from "../support/dlq.ts"
import { readFixture, readFixtureJson } from "../support/fixtures.ts"
import { eventually, freshTopics, header, kafkaFor, produce, readTopic, topicEnds } from "../support/kafka.ts"
import { deltaOf, scrapeMetrics } from "../support/metrics.ts"

const topics = freshTopics()
const model = readFixtureJson("valid/model.json") as OrderJson

interface Bytes {
  readonly encoding: "utf8" | "base64"
  readonly data: string
}
interface Position {
  readonly topic: string
  readonly partition: number
  readonly offset: string
}
interface Letter {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly detail: string
  readonly source: Position | null
  readonly key: Bytes | null
  readonly failed_at: string
  readonly size: number
  readonly order_uid: string | null
  readonly replay_of: Position | null
}
interface LetterDetail extends Letter {
  readonly value: Bytes | null
  readonly headers: ReadonlyArray<{ readonly name: string; readonly value: Bytes }>
}
interface Page {
  readonly items: ReadonlyArray<Letter>
  readonly counts: Record<string, number>
  readonly next_cursor: string | null
}

const request = (path: string, init: RequestInit = {}) =>
  Effect.flatMap(baseUrl, (url) =>
    Effect.promise(async () => {
      const response = await fetch(`${url}${path}`, {
        ...init,
        headers: { accept: "application/json", ...(init.headers as Record<string, string>) }
      })
      const text = await response.text()
      return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) }
    })
  )

const page = (query: string) =>
  Effect.map(request(`/dead-letters?${query}`), (r) => {
    expect(r.status, r.text).toBe(200)
    return r.json() as Page
  })

/** Every listed letter for `query`, page after page. */
const listAll = (query = "") =>
  Effect.gen(function* () {
    const items: Array<Letter> = []
    let cursor: string | null = null
    do {
      const p: Page = yield* page(`limit=200${query}${cursor === null ? "" : `&cursor=${cursor}`}`)
      items.push(...p.items)
      cursor = p.next_cursor
    } while (cursor !== null)
    return items
  })

const withKey = (key: string) => Effect.map(listAll(), (items) => items.filter((l) => l.key?.data === key))

/** Waits until `count` letters are listed under `key`; returns them, newest first. */
const lettersUnder = (key: string, count: number) =>
  Effect.gen(function* () {
    yield* eventually(
      `${count} letter(s) with key ${key} are listed`,
      Effect.map(withKey(key), (l) => l.length >= count),
      60_000
    )
    return yield* withKey(key)
  })

const detail = (l: Pick<Letter, "partition" | "offset">) =>
  Effect.map(request(`/dead-letters/${l.partition}/${l.offset}`), (r) => {
    expect(r.status, r.text).toBe(200)
    return r.json() as LetterDetail
  })

/** POST /dead-letters/replay (the service runs open: who may is test/auth/'s matter). */
const replay = (body: object, headers: Record<string, string> = {}) =>
  request("/dead-letters/replay", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body)
  })

interface ReplayAnswer {
  readonly selected: number | null
  readonly already_replayed: number | null
  readonly until: string | null
  readonly sent: number
  readonly letters: ReadonlyArray<{ partition: number; offset: string; kind: string; outcome: string }>
  readonly next_cursor: string | null
}

const replayed = (body: object) =>
  Effect.map(replay(body), (r) => {
    expect(r.status, r.text).toBe(200)
    return r.json() as ReplayAnswer
  })

/** Every message on the orders topic so far: the sum of its partitions' end offsets. */
const ordersTopicEnd = Effect.map(
  Effect.promise(() => topicEnds(kafkaFor(topics.brokers), topics.topic)),
  (ends) => ends.reduce((sum, p) => sum + p.high, 0n)
)

const place = (l: { readonly partition: number; readonly offset: string }) => `${l.partition}/${l.offset}`

const headerOf = (letter: LetterDetail, name: string) =>
  letter.headers.find((h) => h.name === name)?.value.data

const newestFirst = (a: Letter, b: Letter) =>
  b.failed_at.localeCompare(a.failed_at) ||
  b.partition - a.partition ||
  Number(BigInt(b.offset) - BigInt(a.offset))

const orderRows = (uid: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: string }>`SELECT count(*) AS n FROM orders WHERE order_uid = ${uid}`.pipe(
      Effect.map((rows) => Number(rows[0]?.n ?? 0))
    )
  )

layer(serviceStack(topics, TestDatabase), {
  excludeTestServices: true,
  timeout: "180 seconds"
})("dead letters through the whole service", (it) => {
  it.effect(
    "rejects of every kind are listed newest first with counts by kind; kind and time narrow the list, pages cover it once, one letter shows its bytes",
    () =>
      Effect.gen(function* () {
        const id = randomBytes(4).toString("hex")
        const uid = `${id}-order`
        const binary = Buffer.from([0x7b, 0xff, 0xfe, 0x22])
        yield* produce(
          topics.brokers,
          topics.topic,
          [
            { key: uid, value: JSON.stringify({ ...model, order_uid: uid }) },
            { key: `${id}-json`, value: readFixture("invalid/not-json.txt") },
            { key: `${id}-binary`, value: binary },
            { key: `${id}-schema`, value: readFixture("invalid/amount-as-string.json") },
            { key: `${id}-rule`, value: readFixture("invalid/amount-mismatch.json") },
            { key: `${id}-large`, value: "x".repeat(65_537) },
            { key: uid, value: JSON.stringify({ ...model, order_uid: uid, customer_id: "someone else" }) }
          ],
          0
        )
        // Nothing the service does on its own is `unprocessable`: parked here as the service parks,
        // long ago, so that a time range can tell it from the rest.
        const unprocessable = toKafkaMessage(
          {
            kind: "unprocessable",
            detail: "the service could not process the message: RangeError: too deep",
            key: Buffer.from(`${id}-unprocessable`),
            value: Buffer.from("{}"),
            source: { topic: topics.topic, partition: 1, offset: "0" }
          },
          new Date("2020-01-01T00:00:00Z")
        )
        yield* produce(topics.brokers, topics.dlqTopic, [
          { key: `${id}-unprocessable`, value: unprocessable.value, headers: unprocessable.headers }
        ])
        yield* eventually(
          "all seven letters are listed",
          Effect.map(listAll(), (l) => l.length === 7),
          60_000
        )
        const all = yield* listAll()
        expect(all.map((l) => l.kind).sort()).toEqual([
          "business_rule",
          "conflict",
          "invalid_json",
          "invalid_json",
          "schema",
          "too_large",
          "unprocessable"
        ])
        expect(all).toEqual([...all].sort(newestFirst))
        expect(all.at(-1)?.kind).toBe("unprocessable")
        const first = yield* page("limit=3")
        expect(first.counts).toEqual({
          invalid_json: 2,
          schema: 1,
          business_rule: 1,
          too_large: 1,
          conflict: 1,
          unprocessable: 1
        })

        // A page at a time: every letter once, in the same order.
        const paged: Array<Letter> = [...first.items]
        let cursor = first.next_cursor
        while (cursor !== null) {
          const next: Page = yield* page(`limit=3&cursor=${cursor}`)
          expect(next.items.length).toBeGreaterThan(0)
          paged.push(...next.items)
          cursor = next.next_cursor
        }
        expect(paged).toEqual(all)

        const invalidJson = yield* page("kind=invalid_json")
        expect(invalidJson.items.map((l) => l.key?.data).sort()).toEqual([`${id}-binary`, `${id}-json`])
        const recent = yield* page("since=2021-01-01T00:00:00Z")
        expect(recent.items).toHaveLength(6)
        expect(recent.counts["unprocessable"]).toBeUndefined()
        const old = yield* page("until=2021-01-01T00:00:00Z")
        expect(old.items.map((l) => l.key?.data)).toEqual([`${id}-unprocessable`])
        expect(old.counts).toEqual({ unprocessable: 1 })

        const conflict = all.find((l) => l.kind === "conflict")!
        expect(conflict).toMatchObject({
          key: { encoding: "utf8", data: uid },
          order_uid: uid,
          source: { topic: topics.topic, partition: 0, offset: "6" },
          replay_of: null
        })
        expect(all.find((l) => l.kind === "too_large")?.size).toBe(65_537)

        const text = yield* detail(all.find((l) => l.key?.data === `${id}-json`)!)
        expect(text.value).toEqual({
          encoding: "utf8",
          data: readFixture("invalid/not-json.txt").toString("utf8")
        })
        expect(headerOf(text, DeadLetterHeaders.kind)).toBe("invalid_json")
        expect(headerOf(text, DeadLetterHeaders.topic)).toBe(topics.topic)
        const bytes = yield* detail(all.find((l) => l.key?.data === `${id}-binary`)!)
        expect(bytes.value).toEqual({ encoding: "base64", data: binary.toString("base64") })

        const missing = yield* request("/dead-letters/0/999999")
        expect(missing.status).toBe(404)
        expect(missing.json()).toMatchObject({
          error: "dead_letter_not_found",
          partition: 0,
          offset: "999999"
        })
        expect((yield* request("/dead-letters/x/1")).status).toBe(400)
        expect((yield* request("/dead-letters/0/9223372036854775808")).status).toBe(400)
        const typo = yield* request("/dead-letters?kind=typo")
        expect(typo.status).toBe(400)
        expect(typo.json()).toMatchObject({ error: "invalid_query" })

        // A browser gets the page at the same address, under the order page's policy.
        const html = yield* request("/dead-letters?kind=schema", { headers: { accept: "text/html" } })
        const orderPage = yield* request("/", { headers: { accept: "text/html" } })
        expect(html.status).toBe(200)
        expect(html.headers.get("content-type")).toMatch(/^text\/html/)
        expect(html.text).toContain("<title>Dead letters</title>")
        expect(html.headers.get("content-security-policy")).toBe(
          orderPage.headers.get("content-security-policy")
        )
        expect(html.headers.get("vary")).toMatch(/accept/i)
      }),
    120_000
  )

  it.effect(
    "a schema letter replayed unchanged is parked again with a new letter that names it; the copy has the original bytes",
    () =>
      Effect.gen(function* () {
        const key = `${randomBytes(4).toString("hex")}-schema`
        const original = readFixture("invalid/amount-as-string.json")
        yield* produce(topics.brokers, topics.topic, [{ key, value: original }], 1)
        const [letter] = yield* lettersUnder(key, 1)
        const before = (yield* scrapeMetrics).samples

        const answer = yield* replay({ partition: letter!.partition, offset: letter!.offset })
        expect(answer.status, answer.text).toBe(200)
        expect(answer.json()).toMatchObject({
          dry_run: false,
          selected: 1,
          sent: 1,
          failed: 0,
          letters: [
            { partition: letter!.partition, offset: letter!.offset, kind: "schema", outcome: "sent" }
          ],
          next_cursor: null
        })

        const [again, previous] = yield* lettersUnder(key, 2)
        expect(previous).toEqual(letter)
        expect(again!.kind).toBe("schema")
        expect(again!.replay_of).toEqual({
          topic: topics.dlqTopic,
          partition: letter!.partition,
          offset: letter!.offset
        })
        const copy = yield* detail(again!)
        expect(copy.value).toEqual({ encoding: "utf8", data: original.toString("utf8") })
        expect(headerOf(copy, "replay.of")).toBe(`${topics.dlqTopic}/${letter!.partition}/${letter!.offset}`)
        expect(Date.parse(headerOf(copy, "replay.at")!)).toBeGreaterThanOrEqual(Date.parse(letter!.failed_at))
        expect(headerOf(copy, DeadLetterHeaders.kind)).toBe("schema")

        yield* eventually(
          "the parked replay is counted",
          Effect.map(
            scrapeMetrics,
            ({ samples }) =>
              deltaOf(before, samples)("ingest_replayed_messages_total", { outcome: "parked" }) === 1
          )
        )
        const after = (yield* scrapeMetrics).samples
        expect(
          deltaOf(before, after)("dead_letters_replayed_total", { kind: "schema", outcome: "sent" })
        ).toBe(1)
      }),
    120_000
  )

  it.effect(
    "a conflict replayed after the stored order was removed is stored; replayed again, it is stored once and not parked",
    () =>
      Effect.gen(function* () {
        const uid = `${randomBytes(4).toString("hex")}-conflict`
        const first = { ...model, order_uid: uid }
        const second = { ...first, customer_id: "the-right-customer" }
        yield* produce(
          topics.brokers,
          topics.topic,
          [first, second].map((o) => ({ key: uid, value: JSON.stringify(o) })),
          2
        )
        const [conflict] = yield* lettersUnder(uid, 1)
        expect(conflict!.kind).toBe("conflict")
        const url = yield* baseUrl
        const served = () =>
          Effect.promise(() =>
            fetch(`${url}/order/${uid}`).then((r) => (r.ok ? (r.json() as Promise<OrderJson>) : null))
          )
        expect((yield* served())?.customer_id).toBe(model.customer_id)

        // The cause: the wrong order was stored first. An operator removes it, then replays.
        const sql = yield* SqlClient.SqlClient
        yield* sql`DELETE FROM orders WHERE order_uid = ${uid}`
        const one = { partition: conflict!.partition, offset: conflict!.offset }
        expect((yield* replay(one)).json()).toMatchObject({ sent: 1 })
        yield* eventually(
          "the replayed order is served",
          Effect.map(served(), (o) => o?.customer_id === "the-right-customer")
        )
        expect(yield* orderRows(uid)).toBe(1)

        const before = (yield* scrapeMetrics).samples
        expect((yield* replay(one)).json()).toMatchObject({ sent: 1 })
        yield* eventually(
          "the second replay is read back as a duplicate",
          Effect.map(
            scrapeMetrics,
            ({ samples }) =>
              deltaOf(before, samples)("ingest_replayed_messages_total", { outcome: "duplicate" }) === 1
          )
        )
        expect(yield* orderRows(uid)).toBe(1)
        expect((yield* served())?.customer_id).toBe("the-right-customer")
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(
          letters.filter((l) => l.key?.toString() === uid).map((l) => header(l, DeadLetterHeaders.kind))
        ).toEqual(["conflict"])
      }),
    120_000
  )

  it.effect(
    "a replay sent again with the same Idempotency-Key sends nothing and answers the same; with another body it is 422",
    () =>
      Effect.gen(function* () {
        const key = `${randomBytes(4).toString("hex")}-idempotent`
        yield* produce(
          topics.brokers,
          topics.topic,
          [{ key, value: readFixture("invalid/amount-as-string.json") }],
          1
        )
        const [letter] = yield* lettersUnder(key, 1)
        const one = { partition: letter!.partition, offset: letter!.offset }
        const idempotencyKey = { "idempotency-key": `test-${randomBytes(8).toString("hex")}` }

        const before = yield* ordersTopicEnd
        const first = yield* replay(one, idempotencyKey)
        expect(first.status, first.text).toBe(200)
        expect(first.json()).toMatchObject({ sent: 1 })
        const afterFirst = yield* ordersTopicEnd
        expect(afterFirst - before).toBe(1n)

        // A retry: what the first was answered, and nothing sent (a named letter is otherwise
        // always sent again).
        const again = yield* replay(one, idempotencyKey)
        expect(again.status, again.text).toBe(200)
        expect(again.json()).toEqual(first.json())
        expect(again.headers.get("idempotent-replayed")).toBe("true")
        expect(yield* ordersTopicEnd).toBe(afterFirst)

        const other = yield* replay({ ...one, dry_run: true }, idempotencyKey)
        expect(other.status, other.text).toBe(422)
        expect(other.json()).toMatchObject({ error: "idempotency_key_reused" })
        const tooLong = yield* replay(one, { "idempotency-key": "k".repeat(201) })
        expect(tooLong.status, tooLong.text).toBe(400)
        expect(yield* ordersTopicEnd).toBe(afterFirst)

        // Its copy is parked again; the next test counts letters parked after this one.
        yield* lettersUnder(key, 2)
      }),
    120_000
  )

  it.effect(
    "following next_cursor ends and never takes the run's own replays parked again; the next run takes only those, include_replayed all",
    () =>
      Effect.gen(function* () {
        const id = randomBytes(4).toString("hex")
        const keys = [0, 1, 2].map((i) => `${id}-${i}`)
        // The pipeline parks with this process's clock: letters parked by earlier tests are older.
        const since = new Date().toISOString()
        yield* produce(
          topics.brokers,
          topics.topic,
          keys.map((key) => ({ key, value: readFixture("invalid/amount-as-string.json") })),
          0
        )
        for (const key of keys) yield* lettersUnder(key, 1)
        const originals = (yield* listAll()).filter((l) => keys.includes(l.key!.data)).reverse()
        const selection = { kind: "schema", since, limit: 1 }

        // No until: the first page fixes it. Before each next page, the copies of what was sent
        // are parked again and indexed — after the cursor, and not yet replayed.
        const pages: Array<ReplayAnswer> = [yield* replayed(selection)]
        while (pages.at(-1)!.next_cursor !== null) {
          if (pages.length === 10) throw new Error("following next_cursor did not end")
          for (const l of pages.at(-1)!.letters) {
            const key = originals.find((o) => place(o) === place(l))?.key?.data
            if (key !== undefined) yield* lettersUnder(key, 2)
          }
          pages.push(yield* replayed({ ...selection, cursor: pages.at(-1)!.next_cursor }))
        }
        expect(pages.map((p) => p.letters.length)).toEqual([1, 1, 1])
        expect(pages.flatMap((p) => p.letters.map((l) => [place(l), l.outcome]))).toEqual(
          originals.map((l) => [place(l), "sent"])
        )
        expect(pages[0]).toMatchObject({ selected: 3, already_replayed: 0 })
        expect(pages[0]!.until).not.toBeNull()
        expect(pages.map((p) => p.until)).toEqual(pages.map(() => pages[0]!.until))

        for (const key of keys) yield* lettersUnder(key, 2)
        const copies = (yield* listAll()).filter((l) => keys.includes(l.key!.data) && l.replay_of !== null)
        expect(copies).toHaveLength(3)
        const next = yield* replayed({ kind: "schema", since, dry_run: true })
        expect(next).toMatchObject({ selected: 3, already_replayed: 3 })
        expect(next.letters.map(place).sort()).toEqual(copies.map(place).sort())
        const all = yield* replayed({ kind: "schema", since, dry_run: true, include_replayed: true })
        expect(all).toMatchObject({ selected: 6, already_replayed: 3 })
        expect(all.letters.map(place).sort()).toEqual([...originals, ...copies].map(place).sort())
      }),
    120_000
  )

  it.effect(
    "pages smaller than the selection: each run sends every letter once, in order, and ends; letters replayed before are skipped unless include_replayed, and the run's own copies never",
    () =>
      Effect.gen(function* () {
        const id = randomBytes(4).toString("hex")
        const keys = [0, 1, 2, 3].map((i) => `${id}-paged-${i}`)
        const since = new Date().toISOString()
        const ours = Effect.map(listAll(), (all) => all.filter((l) => keys.includes(l.key!.data)).reverse())
        /** Waits until `count` of our letters are listed; returns them oldest first. */
        const parked = (count: number) =>
          Effect.zipRight(
            eventually(
              `${count} letters under the test's keys are listed`,
              Effect.map(ours, (l) => l.length === count),
              60_000
            ),
            ours
          )
        /**
         * One run, `limit` letters a page, following next_cursor to its end. Before each next page
         * the copies of what was sent are parked and indexed: after the cursor, never replayed.
         */
        const run = (body: object, limit: number, parkedBefore: number) =>
          Effect.gen(function* () {
            const pages: Array<ReplayAnswer> = []
            let cursor: string | null = null
            do {
              if (pages.length === 20) throw new Error("following next_cursor did not end")
              const answer: ReplayAnswer = yield* replayed({
                kind: "schema",
                since,
                limit,
                ...body,
                ...(cursor === null ? {} : { cursor })
              })
              pages.push(answer)
              expect(answer.letters.every((l) => l.outcome === "sent")).toBe(true)
              const sent = pages.reduce((n, p) => n + p.letters.length, 0)
              yield* parked(parkedBefore + sent)
              cursor = answer.next_cursor
            } while (cursor !== null)
            return pages
          })
        const places = (pages: ReadonlyArray<ReplayAnswer>) => pages.flatMap((p) => p.letters.map(place))
        const sizes = (pages: ReadonlyArray<ReplayAnswer>) => pages.map((p) => p.letters.length)

        yield* produce(
          topics.brokers,
          topics.topic,
          keys.map((key) => ({ key, value: readFixture("invalid/amount-as-string.json") })),
          0
        )
        const originals = yield* parked(4)

        // The originals, three a page.
        const first = yield* run({}, 3, 4)
        expect(sizes(first)).toEqual([3, 1])
        expect(places(first)).toEqual(originals.map(place))
        expect(first[0]).toMatchObject({ selected: 4, already_replayed: 0 })
        // One copy of each original; the copies are parked on the partitions of their keys, in
        // whatever order those partitions' batches settle, so they are compared as a set.
        const copies = (yield* ours).filter((l) => !originals.some((o) => place(o) === place(l)))
        expect(copies.map((c) => c.replay_of && place(c.replay_of)).sort()).toEqual(
          originals.map(place).sort()
        )

        // Again: only the copies, never replayed; the originals, replayed, are left out.
        const second = yield* run({}, 3, 8)
        expect(sizes(second)).toEqual([3, 1])
        expect(places(second)).toEqual(copies.map(place))
        expect(second[0]).toMatchObject({ selected: 4, already_replayed: 4 })

        // With include_replayed: all twelve, each once, oldest first; none of this run's twelve copies.
        const before = yield* ours
        const third = yield* run({ include_replayed: true }, 5, 12)
        expect(sizes(third)).toEqual([5, 5, 2])
        expect(places(third)).toEqual(before.map(place))
        expect(third[0]).toMatchObject({ selected: 12, already_replayed: 8 })
        expect(third.slice(1).every((p) => p.selected === null)).toBe(true)
        expect(third.map((p) => p.until)).toEqual(third.map(() => third[0]!.until))
      }),
    180_000
  )

  it.effect(
    "npm run dlq -- replay lists with --dry-run, then sends the selection through the service and says what it sent",
    () =>
      Effect.gen(function* () {
        const key = `${randomBytes(4).toString("hex")}-rule`
        const since = new Date(Date.now() - 1000).toISOString()
        yield* produce(
          topics.brokers,
          topics.topic,
          [{ key, value: readFixture("invalid/amount-mismatch.json") }],
          0
        )
        const [letter] = yield* lettersUnder(key, 1)
        const selection = ["replay", "--kind", "business_rule", "--since", since]

        const dry = yield* runDlq([...selection, "--dry-run"], {})
        expect(dry.code, dry.stderr).toBe(0)
        expect(dry.stdout).toContain(
          `would send  ${letter!.partition}/${letter!.offset}  business_rule  "${key}"`
        )
        expect(dry.stdout).toContain(
          "would send 1 of 1 selected letters (business_rule 1); nothing sent (--dry-run)"
        )
        expect(yield* withKey(key)).toHaveLength(1)

        const run = yield* runDlq(selection, {})
        expect(run.code, run.stderr).toBe(0)
        expect(run.stdout).toContain("sent 1 of 1 selected letters to the orders topic (business_rule 1)")
        const [again] = yield* lettersUnder(key, 2)
        expect(again!.replay_of).toEqual({
          topic: topics.dlqTopic,
          partition: letter!.partition,
          offset: letter!.offset
        })

        // Run again: the letter sent back is left out, its copy parked since is new.
        const next = yield* runDlq([...selection, "--dry-run"], {})
        expect(next.code, next.stderr).toBe(0)
        expect(next.stdout).toContain(`would send  ${again!.partition}/${again!.offset}  business_rule`)
        expect(next.stdout).toContain("would send 1 of 1 selected letters")
        expect(next.stdout).toContain("left out 1 replayed before (--include-replayed takes them)")
        const both = yield* runDlq([...selection, "--dry-run", "--include-replayed"], {})
        expect(both.code, both.stderr).toBe(0)
        expect(both.stdout).toContain("would send 2 of 2 selected letters")
      }),
    120_000
  )
})
