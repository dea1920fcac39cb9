/**
 * The dead-letters page in a real browser (Debian's Chromium) against the real service on a real
 * PostgreSQL: what an operator sees. Letters are put in the service's index as its reader of the
 * dead-letter topic puts them (test/deadletters/replay.test.ts parks them through Kafka).
 */
import { mkdirSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { Browser, Page } from "playwright-core"
import { DeadLetterIndex, type IndexedLetter } from "../../src/deadletters/DeadLetterIndex.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { baseUrl, httpStack } from "../support/app.ts"
import { isStreamLeftBehind, scopedBrowser } from "../support/browser.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"

mkdirSync("test-results", { recursive: true })

const model = readFixtureJson("valid/model.json") as OrderJson
const tid = (id: string) => `[data-testid="${id}"]`

/** What a producer may send: markup, and a right-to-left override that would reverse what follows. */
const HOSTILE_MARKUP = `<img src=x onerror='window.__xss=1'>`
const RLO = "\u202E"
const hostileValue = `{"order_uid":"evil","note":"${HOSTILE_MARKUP}","file":"invoice${RLO}fdp.exe"}`

const letter = (over: Partial<IndexedLetter> & Pick<IndexedLetter, "offset" | "kind">): IndexedLetter => ({
  partition: 0,
  detail: "",
  failedAt: new Date("2026-11-29T10:00:00Z"),
  source: { topic: "orders", partition: 0, offset: over.offset },
  key: null,
  value: null,
  headers: [],
  orderUid: null,
  replayOf: null,
  ...over
})

const letters: ReadonlyArray<IndexedLetter> = [
  letter({
    offset: "1",
    kind: "schema",
    detail: `note: ${HOSTILE_MARKUP} is not a field an order has`,
    key: Buffer.from(`evil${RLO}key`),
    value: Buffer.from(hostileValue),
    headers: [{ name: "x-note", value: Buffer.from(`<script>window.__xss=3</script>${RLO}`) }]
  }),
  letter({
    offset: "2",
    kind: "conflict",
    detail: `a different order is already stored under order_uid "${model.order_uid}"; the stored one was kept`,
    failedAt: new Date("2026-11-29T11:00:00Z"),
    key: Buffer.from(model.order_uid),
    value: Buffer.from(JSON.stringify({ ...model, customer_id: "someone else" })),
    orderUid: model.order_uid
  }),
  letter({
    offset: "3",
    kind: "invalid_json",
    detail: "the message is not UTF-8",
    failedAt: new Date("2020-06-01T00:00:00Z"),
    value: Buffer.from([0xff, 0xfe, 0x00, 0x41])
  })
]

const seeded = Effect.gen(function* () {
  yield* Effect.flatMap(OrderRepository, (r) => r.insertBatch([Schema.decodeUnknownSync(Order)(model)]))
  yield* Effect.flatMap(DeadLetterIndex, (index) => index.upsert(letters))
  return yield* baseUrl
})

/** A page that records console errors (CSP violations among them), uncaught exceptions and failed requests. */
const openPage = (browser: Browser, options: { readonly timezoneId?: string } = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, ...options })
      const errors: Array<string> = []
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(`console: ${m.text()} (${m.location().url})`)
      })
      page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`))
      page.on("requestfailed", (r) => {
        if (!isStreamLeftBehind(r)) errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`)
      })
      page.on("response", (r) => {
        if (r.status() >= 400) errors.push(`response: ${r.status()} ${r.url()}`)
      })
      return { page, errors }
    }),
    ({ page }) => Effect.promise(() => page.close())
  )

const text = (page: Page, selector: string) => Effect.promise(() => page.locator(selector).innerText())
const count = (page: Page, selector: string) => Effect.promise(() => page.locator(selector).count())
const xss = (page: Page) => Effect.promise(() => page.evaluate(() => (window as { __xss?: number }).__xss))

describe("the dead-letters page in Chromium", () => {
  it.live(
    "from the order page's header: the letters are listed, and a hostile one shows its markup and its right-to-left override as text",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        const { page, errors } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${url}/`))
        yield* Effect.promise(() => page.locator(tid("nav-dead-letters")).click())
        yield* Effect.promise(() => page.waitForURL(`${url}/dead-letters`))
        yield* Effect.promise(() => page.locator(tid("letter-row")).nth(2).waitFor())
        expect(yield* count(page, tid("letter-row"))).toBe(3)
        // Newest first.
        expect(
          yield* Effect.promise(() =>
            page
              .locator(tid("letter-row"))
              .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-letter")))
          )
        ).toEqual(["0/2", "0/1", "0/3"])
        expect(yield* text(page, tid("counts"))).toMatch(/All\s*3/)
        expect(yield* text(page, tid("letters-table"))).toContain(HOSTILE_MARKUP)

        yield* Effect.promise(() => page.locator(`${tid("letter-link")}[data-letter="0/1"]`).click())
        yield* Effect.promise(() => page.locator(tid("letter-payload")).waitFor())
        expect(new URL(page.url()).searchParams.get("letter")).toBe("0/1")
        const payload = yield* text(page, tid("letter-payload"))
        expect(payload).toContain(HOSTILE_MARKUP)
        // The override is shown, not obeyed: the text after it reads as it was sent.
        expect(payload).toContain("invoiceU+202Efdp.exe")
        expect(payload).not.toContain(RLO)
        const view = yield* text(page, tid("letter-view"))
        expect(view).toContain("<script>window.__xss=3</script>U+202E")
        expect(yield* text(page, tid("letter-key"))).toBe("evilU+202Ekey")
        expect(view).not.toContain(RLO)
        expect(yield* count(page, "img:not(.brand img)")).toBe(0)
        expect(yield* count(page, "main script, aside script")).toBe(0)
        expect(yield* xss(page)).toBeUndefined()
        // Open mode (auth.mode none): anyone may replay, so the letter's view offers it.
        expect(yield* text(page, tid("replay-button"))).toBe("Replay")

        // Not UTF-8: shown as base64, said so.
        yield* Effect.promise(() => page.locator(`${tid("letter-link")}[data-letter="0/3"]`).click())
        yield* Effect.promise(() => page.locator(tid("letter-id"), { hasText: "Letter 0/3" }).waitFor())
        expect(yield* text(page, tid("letter-view"))).toMatch(/as base64 \(not UTF-8\)/i)
        expect(yield* text(page, tid("letter-payload"))).toBe(
          Buffer.from([0xff, 0xfe, 0x00, 0x41]).toString("base64")
        )
        yield* Effect.promise(() =>
          page.screenshot({ path: "test-results/dead-letters.png", fullPage: true })
        )
        expect(errors).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(httpStack(TestDatabase))),
    60_000
  )

  it.live(
    "filters by kind and by time in the operator's time zone; a conflict links to the stored order; on a phone-width screen nothing scrolls sideways",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        // An operator nine hours ahead of UTC: the times they type are theirs.
        const { page, errors } = yield* openPage(browser, { timezoneId: "Asia/Tokyo" })
        yield* Effect.promise(() => page.goto(`${url}/dead-letters`))
        yield* Effect.promise(() => page.locator(tid("letter-row")).nth(2).waitFor())

        yield* Effect.promise(() => page.fill(tid("filter-since"), "2025-01-01T00:00"))
        yield* Effect.promise(() => page.locator(tid("filter-apply")).click())
        yield* Effect.promise(() =>
          page.locator(`${tid("letter-row")}[data-letter="0/3"]`).waitFor({ state: "detached" })
        )
        expect(yield* count(page, tid("letter-row"))).toBe(2)
        expect(new URL(page.url()).searchParams.get("since")).toBe("2024-12-31T15:00:00.000Z")

        yield* Effect.promise(() => page.selectOption(tid("filter-kind"), "conflict"))
        yield* Effect.promise(() => page.locator(tid("filter-apply")).click())
        yield* Effect.promise(() =>
          page.locator(`${tid("letter-row")}[data-letter="0/1"]`).waitFor({ state: "detached" })
        )
        expect(yield* count(page, tid("letter-row"))).toBe(1)
        expect(new URL(page.url()).searchParams.get("kind")).toBe("conflict")

        yield* Effect.promise(() => page.locator(`${tid("letter-link")}[data-letter="0/2"]`).click())
        const link = page.locator(tid("conflict-order"))
        yield* Effect.promise(() => link.waitFor())
        expect(yield* Effect.promise(() => link.getAttribute("href"))).toBe(`/?uid=${model.order_uid}`)

        // A phone held upright: the page fits its width; the table scrolls inside its own box.
        yield* Effect.promise(() => page.setViewportSize({ width: 360, height: 800 }))
        const overflow = yield* Effect.promise(() =>
          page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
        )
        expect(overflow).toBeLessThanOrEqual(0)
        yield* Effect.promise(() =>
          page.screenshot({ path: "test-results/dead-letters-phone.png", fullPage: true })
        )

        yield* Effect.promise(() => link.click())
        yield* Effect.promise(() => page.locator(tid("order-view")).waitFor({ state: "visible" }))
        expect(yield* text(page, tid("order-uid"))).toContain(model.order_uid)
        expect(errors).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(httpStack(TestDatabase))),
    60_000
  )
})
