/**
 * The web page in a real browser (Debian's Chromium) against the real service on a real
 * PostgreSQL: what a support agent sees.
 */
import { mkdirSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { Browser, Page } from "playwright-core"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { baseUrl, httpStack } from "../support/app.ts"
import { scopedBrowser } from "../support/browser.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"

const model = readFixtureJson("valid/model.json") as OrderJson
const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson
/** Order data comes from Kafka producers: the page must show markup as text. */
const hostile: OrderJson = {
  ...model,
  order_uid: "hostile-order",
  delivery: { ...model.delivery, name: `<img src=x onerror="window.__xss=1">` }
}

const toOrder = Schema.decodeUnknownSync(Order)
const tid = (id: string) => `[data-testid="${id}"]`

mkdirSync("test-results", { recursive: true })

/** A page that records console errors and uncaught exceptions (CSP violations included). */
const openPage = (browser: Browser, width = 1280) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const page = await browser.newPage({ viewport: { width, height: 900 } })
      const errors: Array<string> = []
      page.on("console", (m) => {
        // The browser's own note for a deliberate 404 is not a page error.
        if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text())
      })
      page.on("pageerror", (e) => errors.push(e.message))
      return { page, errors }
    }),
    ({ page }) => Effect.promise(() => page.close())
  )

const search = (page: Page, uid: string) =>
  Effect.promise(async () => {
    await page.fill("#uid-input", uid)
    await page.press("#uid-input", "Enter")
  })

const text = (page: Page, selector: string) => Effect.promise(() => page.locator(selector).innerText())

const stack = httpStack(TestDatabase)

const seeded = Effect.gen(function* () {
  const repo = yield* OrderRepository
  yield* repo.insertBatch([model, unicode, hostile].map((o) => toOrder(o)))
  return yield* baseUrl
})

describe("the web page in Chromium", () => {
  it.live(
    "typing the canonical order's id shows the whole order; a phone-width view works too",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        const { page, errors } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${url}/`))
        yield* search(page, model.order_uid)
        yield* Effect.promise(() => page.locator(tid("order-view")).waitFor({ state: "visible" }))
        expect(yield* text(page, tid("order-uid"))).toContain(model.order_uid)
        expect(yield* text(page, tid("items-table"))).toContain("Mascaras")
        expect(yield* text(page, tid("goods-total"))).toContain("317")
        expect(yield* text(page, tid("amount"))).toContain("1,817")
        expect(yield* text(page, tid("order-view"))).toContain("Test Testov")
        expect(yield* text(page, tid("order-view"))).toContain("WBILMTESTTRACK")
        expect(new URL(page.url()).searchParams.get("uid")).toBe(model.order_uid)
        yield* Effect.promise(() => page.screenshot({ path: "test-results/order-view.png", fullPage: true }))
        yield* Effect.promise(() => page.setViewportSize({ width: 360, height: 800 }))
        yield* Effect.promise(() =>
          page.screenshot({ path: "test-results/order-view-phone.png", fullPage: true })
        )
        expect(errors).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(stack)),
    60_000
  )

  it.live(
    "an unknown id shows the not-found state naming it; an impossible id says why",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        const { page, errors } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${url}/`))
        yield* search(page, "no-such-order")
        yield* Effect.promise(() => page.locator(tid("state-not-found")).waitFor({ state: "visible" }))
        expect(yield* text(page, tid("not-found-uid"))).toBe("no-such-order")
        yield* search(page, "x".repeat(200))
        yield* Effect.promise(() => page.locator(tid("state-bad-id")).waitFor({ state: "visible" }))
        expect(yield* text(page, tid("bad-id-message"))).toMatch(/128/)
        expect(errors).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(stack)),
    60_000
  )

  it.live(
    "a deep link opens an order directly, unicode intact; back and forward move between orders",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        const { page, errors } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${url}/?uid=${encodeURIComponent(unicode.order_uid)}`))
        yield* Effect.promise(() => page.locator(tid("order-view")).waitFor({ state: "visible" }))
        const items = yield* text(page, tid("items-table"))
        expect(items).toContain("Кружка «Утро»")
        expect(items).toContain("Наушники 🎧")
        yield* search(page, model.order_uid)
        yield* Effect.promise(() => page.locator(tid("order-uid"), { hasText: model.order_uid }).waitFor())
        yield* Effect.promise(() => page.goBack())
        yield* Effect.promise(() => page.locator(tid("order-uid"), { hasText: unicode.order_uid }).waitFor())
        yield* Effect.promise(() => page.goForward())
        yield* Effect.promise(() => page.locator(tid("order-uid"), { hasText: model.order_uid }).waitFor())
        expect(errors).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(stack)),
    60_000
  )

  it.live(
    "recent orders are listed and open with a click; markup in order data is shown as text",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        const { page, errors } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${url}/`))
        const recent = page.locator(`${tid("recent-order")}[data-uid="${hostile.order_uid}"]`)
        yield* Effect.promise(() => recent.waitFor())
        yield* Effect.promise(() => recent.click())
        yield* Effect.promise(() => page.locator(tid("order-uid"), { hasText: hostile.order_uid }).waitFor())
        expect(yield* text(page, tid("order-view"))).toContain(hostile.delivery.name)
        expect(yield* Effect.promise(() => page.locator(`${tid("order-view")} img`).count())).toBe(0)
        expect(
          yield* Effect.promise(() => page.evaluate(() => (window as { __xss?: number }).__xss))
        ).toBeUndefined()
        expect(errors).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(stack)),
    60_000
  )

  it.live(
    "the keyboard alone finds an order",
    () =>
      Effect.gen(function* () {
        const url = yield* seeded
        const browser = yield* scopedBrowser()
        const { page } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${url}/`))
        // The search box has the focus on load; typing and Enter are all it takes.
        yield* Effect.promise(() => page.keyboard.type(model.order_uid))
        yield* Effect.promise(() => page.keyboard.press("Enter"))
        yield* Effect.promise(() => page.locator(tid("order-view")).waitFor({ state: "visible" }))
        const focusable = yield* Effect.promise(async () => {
          const seen: Array<string> = []
          for (let i = 0; i < 30; i++) {
            await page.keyboard.press("Tab")
            seen.push(await page.evaluate(() => document.activeElement?.getAttribute("data-testid") ?? ""))
          }
          return seen
        })
        expect(focusable).toContain("recent-order")
      }).pipe(Effect.scoped, Effect.provide(stack)),
    60_000
  )
})
