/**
 * Signing in, in a real browser (Debian's Chromium), through the real local OpenID provider
 * (`oidc-provider`, test/support/auth.ts), against the whole service: ingestion on the run's Kafka
 * broker, PostgreSQL, the dead-letter index and replay. What an anonymous visitor, an agent and an
 * operator see, and what a person sees when their session ends while they are typing.
 */
import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { Browser, Page } from "playwright-core"
import type { OrderJson } from "../../src/orders/Order.ts"
import { baseUrl as url, serviceStack } from "../support/app.ts"
import { API_KEYS, authConfig, sha256hex, startProvider } from "../support/auth.ts"
import { scopedBrowser } from "../support/browser.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixture, readFixtureJson } from "../support/fixtures.ts"
import { eventually, freshTopics, produce } from "../support/kafka.ts"

const topics = freshTopics()
const run = randomBytes(4).toString("hex")

const model = readFixtureJson("valid/model.json") as OrderJson
const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson
/** Both fixtures are the same customer's: this e-mail (any case) finds them. */
const customerEmail = "TEST@gmail.com"
/** The invalid order (its amount is not its parts' sum), parked under this key. */
const invalidKey = `amount-mismatch-${run}`

let browser: Browser | undefined

/** The provider, the service on it (sessions rechecked every 200 ms) and a browser, for the file. */
const stack = Layer.unwrapScoped(
  Effect.map(startProvider, (provider) =>
    serviceStack(topics, TestDatabase, {
      auth: authConfig(provider.server, { session: { recheck: "200 millis" } })
    })
  )
).pipe(Layer.merge(Layer.scopedDiscard(Effect.tap(scopedBrowser(), (b) => Effect.sync(() => (browser = b))))))

/** The service's JSON as an operator's API key sees it (the test's own look, never the page's). */
const asOperator = (path: string) =>
  Effect.flatMap(url, (base) =>
    Effect.promise(async () => {
      const response = await fetch(`${base}${path}`, {
        headers: { accept: "application/json", authorization: `Bearer ${API_KEYS.operator}` }
      })
      return { status: response.status, body: (await response.json()) as unknown }
    })
  )

interface Letter {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly key: { readonly data: string } | null
  readonly replay_of: { readonly topic: string; readonly partition: number; readonly offset: string } | null
}

const lettersUnder = (key: string) =>
  Effect.map(asOperator("/dead-letters?limit=200"), (r) =>
    ((r.body as { items: ReadonlyArray<Letter> }).items ?? []).filter((l) => l.key?.data === key)
  )

const stored = (uid: string) =>
  Effect.map(asOperator(`/order/${encodeURIComponent(uid)}`), (r) => r.status === 200)

/** Two valid orders and an invalid one through Kafka (once per file); back once they are stored and parked. */
let isSeeded = false
const seeded = Effect.suspend(() => (isSeeded ? Effect.void : seed)).pipe(Effect.tap(() => (isSeeded = true)))
const seed = Effect.gen(function* () {
  yield* produce(topics.brokers, topics.topic, [
    { key: model.order_uid, value: JSON.stringify(model) },
    { key: unicode.order_uid, value: JSON.stringify(unicode) },
    { key: invalidKey, value: readFixture("invalid/amount-mismatch.json") }
  ])
  yield* eventually(
    "both valid orders are stored and the invalid one is listed as a dead letter",
    Effect.map(
      Effect.all([stored(model.order_uid), stored(unicode.order_uid), lettersUnder(invalidKey)]),
      ([a, b, letters]) => a && b && letters.length === 1
    ),
    45_000
  )
})

const tid = (id: string) => `[data-testid="${id}"]`

/**
 * A fresh browser context (its own cookies, as another person's browser) and a page in it that
 * records uncaught exceptions and console errors (CSP violations among them); the browser's own
 * note of a refused request ("Failed to load resource") is left out: refusals are the subject here.
 */
const freshPage = Effect.acquireRelease(
  Effect.promise(async () => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    const errors: Array<string> = []
    page.on("pageerror", (e) => errors.push(`uncaught: ${e.message} (${page.url()})`))
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
        errors.push(`console: ${m.text()} (${m.location().url})`)
    })
    return { context, page, errors }
  }),
  ({ context }) => Effect.promise(() => context.close())
)

const step = <A>(f: () => Promise<A>) => Effect.promise(f)

/** On the provider's form: the user's name and password (the demo's passwords are the names), then "Sign in". */
const fillProviderForm = async (page: Page, user: string) => {
  await page.locator('input[name="login"]').fill(user)
  await page.locator('input[name="password"]').fill(user)
  await page.getByRole("button", { name: "Sign in" }).click()
}

/** From a page of the service: its sign-in link `testid` → the provider's form → back, signed in. */
const signInThrough = (page: Page, testid: string, user: string) =>
  step(async () => {
    await page.getByTestId(testid).click()
    await page.waitForURL((u) => u.pathname.startsWith("/interaction/"))
    await fillProviderForm(page, user)
    await page.getByTestId("auth-name").waitFor()
  })

const text = (page: Page, testid: string) => step(() => page.getByTestId(testid).innerText())

layer(stack, { excludeTestServices: true, timeout: "150 seconds" })("signing in, in Chromium", (it) => {
  it.effect(
    "an anonymous visitor is offered Sign in, is told to sign in for the recent orders, and still finds an order by its exact id",
    () =>
      Effect.gen(function* () {
        yield* seeded
        const base = yield* url
        const { page, errors } = yield* freshPage
        yield* step(() => page.goto(`${base}/`))

        const signIn = page.getByTestId("auth-signin")
        yield* step(() => signIn.waitFor())
        expect(yield* step(() => signIn.innerText())).toBe("Sign in")
        expect(yield* step(() => page.getByTestId("auth-name").count())).toBe(0)
        expect(yield* step(() => page.getByTestId("auth-open-badge").count())).toBe(0)

        yield* step(() => page.getByTestId("recent-signin").waitFor())
        expect(yield* text(page, "recent-auth")).toBe("Sign in to see recent orders")
        expect(yield* step(() => page.getByTestId("recent-order").count())).toBe(0)
        expect(yield* step(() => page.getByTestId("recent-list").isVisible())).toBe(false)

        // The lookup by an exact order id is public.
        yield* step(async () => {
          await page.getByTestId("uid-input").fill(model.order_uid)
          await page.getByTestId("uid-input").press("Enter")
          await page.getByTestId("order-view").waitFor()
        })
        expect(yield* text(page, "order-uid")).toContain(model.order_uid)
        expect(yield* text(page, "order-view")).toContain("Test Testov")
        expect(new URL(page.url()).searchParams.get("uid")).toBe(model.order_uid)
        // Nothing says a session ended: there was none.
        expect(yield* step(() => page.getByTestId("session-ended").count())).toBe(0)
        expect(errors).toEqual([])
      }).pipe(Effect.scoped)
  )

  it.effect(
    "an agent signs in through the provider's form; searches by e-mail, sees orders arrive live, and is told the dead letters need the operator role, with no letter shown",
    () =>
      Effect.gen(function* () {
        yield* seeded
        const base = yield* url
        const { page, errors } = yield* freshPage
        yield* step(() => page.goto(`${base}/`))
        yield* signInThrough(page, "auth-signin", "agent")
        expect(new URL(page.url()).origin).toBe(base)
        expect(new URL(page.url()).pathname).toBe("/")
        expect(yield* text(page, "auth-name")).toBe("Agent")
        expect(yield* text(page, "auth-roles")).toBe("agent")
        expect(yield* step(() => page.getByTestId("auth-signout").isVisible())).toBe(true)
        expect(yield* step(() => page.getByTestId("auth-signin").count())).toBe(0)

        // The recent orders, and the live feed.
        const recent = (uid: string) => page.locator(`${tid("recent-order")}[data-uid="${uid}"]`)
        yield* step(() => recent(model.order_uid).waitFor())
        yield* step(() => recent(unicode.order_uid).waitFor())
        expect(yield* step(() => page.getByTestId("recent-auth").isVisible())).toBe(false)
        yield* step(() => page.locator(`${tid("live-status")}[data-state="live"]`).waitFor())
        const arriving: OrderJson = { ...model, order_uid: `live-${run}` }
        yield* produce(topics.brokers, topics.topic, [
          { key: arriving.order_uid, value: JSON.stringify(arriving) }
        ])
        yield* step(() => recent(arriving.order_uid).waitFor({ timeout: 20_000 }))
        // On top of the list: the newest.
        expect(yield* step(() => page.getByTestId("recent-order").first().getAttribute("data-uid"))).toBe(
          arriving.order_uid
        )

        // A search by what the customer has: their e-mail, in another case.
        yield* step(async () => {
          await page.getByTestId("uid-input").fill(customerEmail)
          await page.getByTestId("uid-input").press("Enter")
          await page.getByTestId("state-results").waitFor()
        })
        expect(yield* text(page, "results-title")).toContain(customerEmail)
        const found = yield* step(() =>
          page
            .getByTestId("result-order")
            .evaluateAll((links) => links.map((a) => a.getAttribute("data-uid")))
        )
        expect([...found].sort()).toEqual([arriving.order_uid, model.order_uid, unicode.order_uid].sort())
        expect(new URL(page.url()).searchParams.get("q")).toBe(customerEmail)

        // The dead letters are an operator's.
        yield* step(() => page.getByTestId("nav-dead-letters").click())
        yield* step(() => page.waitForURL(`${base}/dead-letters`))
        yield* step(() => page.getByTestId("forbidden-notice").waitFor())
        expect(yield* text(page, "forbidden-message")).toBe(
          "This needs the operator role. You are signed in as agent."
        )
        expect(yield* text(page, "auth-name")).toBe("Agent")
        expect(yield* step(() => page.getByTestId("letter-row").count())).toBe(0)
        expect(yield* step(() => page.getByTestId("letters-table").isVisible())).toBe(false)
        expect(yield* text(page, "letter-status")).toBe("Letters are shown to operators.")
        // Nor is a letter shown when its address is opened: no view, nothing to replay.
        const [letter] = yield* lettersUnder(invalidKey)
        yield* step(() => page.goto(`${base}/dead-letters?letter=${letter!.partition}/${letter!.offset}`))
        yield* step(() => page.getByTestId("forbidden-notice").waitFor())
        expect(yield* text(page, "letter-status")).toBe("Letters are shown to operators.")
        expect(yield* step(() => page.getByTestId("letter-view").isVisible())).toBe(false)
        expect(yield* step(() => page.getByTestId("letter-id").count())).toBe(0)
        expect(yield* step(() => page.getByTestId("replay-button").count())).toBe(0)
        expect(errors).toEqual([])
      }).pipe(Effect.scoped)
  )

  it.effect(
    "an operator signs in from the dead-letters page, replays the invalid order's letter with its Replay button and sees it parked again; after Sign out the letters are gone",
    () =>
      Effect.gen(function* () {
        yield* seeded
        const base = yield* url
        const [original] = yield* lettersUnder(invalidKey)
        const originalId = `${original!.partition}/${original!.offset}`
        const { page, errors } = yield* freshPage

        // Signed out, the page says to sign in, and signing in comes back to it.
        yield* step(() => page.goto(`${base}/dead-letters`))
        yield* step(() => page.getByTestId("letters-signin").waitFor())
        expect(yield* step(() => page.getByTestId("letter-row").count())).toBe(0)
        yield* signInThrough(page, "letters-signin", "operator")
        expect(page.url()).toBe(`${base}/dead-letters`)
        expect(yield* text(page, "auth-name")).toBe("Operator")
        expect(yield* text(page, "auth-roles")).toBe("operator")

        // The invalid order's letter.
        const row = (id: string) => page.locator(`${tid("letter-row")}[data-letter="${id}"]`)
        yield* step(() => row(originalId).waitFor())
        expect(yield* step(() => row(originalId).innerText())).toContain(invalidKey)
        expect(yield* step(() => page.getByTestId("forbidden-notice").isVisible())).toBe(false)
        yield* step(() => row(originalId).getByTestId("letter-link").click())
        yield* step(() =>
          page
            .getByTestId("letter-id")
            .filter({ hasText: `Letter ${originalId}` })
            .waitFor()
        )
        expect(yield* text(page, "letter-kind")).toBe("business_rule")
        expect(yield* text(page, "letter-key")).toBe(invalidKey)
        expect(yield* text(page, "letter-payload")).toContain('"order_uid": "b563feb7b2b84b6test"')

        // Replay, from the letter's view: asked to confirm in the page, then sent.
        yield* step(() => page.getByTestId("replay-button").click())
        expect(yield* step(() => page.getByTestId("replay-status").isVisible())).toBe(false)
        yield* step(() => page.getByTestId("replay-confirm").click())
        yield* step(() =>
          page
            .getByTestId("replay-status")
            .filter({ hasText: "Sent back to the orders topic." })
            .waitFor({ timeout: 20_000 })
        )
        expect(yield* text(page, "replay-status")).toBe(
          "Sent back to the orders topic. If it is still invalid it will be parked again, linked to this letter."
        )

        // Still invalid, it is parked again, naming the letter it is a copy of.
        yield* eventually(
          "the replayed order is parked again",
          Effect.map(lettersUnder(invalidKey), (l) => l.length === 2),
          20_000
        )
        const again = (yield* lettersUnder(invalidKey)).find((l) => l.replay_of !== null)!
        const againId = `${again.partition}/${again.offset}`
        yield* step(() => page.getByTestId("filter-apply").click())
        yield* step(() => row(againId).waitFor())
        expect(yield* step(() => page.locator(tid("letter-row"), { hasText: invalidKey }).count())).toBe(2)
        yield* step(() => row(againId).getByTestId("letter-link").click())
        yield* step(() =>
          page
            .getByTestId("letter-id")
            .filter({ hasText: `Letter ${againId}` })
            .waitFor()
        )
        expect(yield* text(page, "letter-view")).toContain(
          `Parked again after a replay of ${topics.dlqTopic}/${original!.partition}/${original!.offset}`
        )
        yield* step(() => page.getByTestId("previous-letter").click())
        yield* step(() =>
          page
            .getByTestId("letter-id")
            .filter({ hasText: `Letter ${originalId}` })
            .waitFor()
        )

        // Sign out: through the provider's end-session and back to the service's page, signed out.
        yield* step(() => page.getByTestId("auth-signout").click())
        yield* step(() => page.waitForURL(`${base}/`))
        yield* step(() => page.getByTestId("auth-signin").waitFor())
        expect(yield* step(() => page.getByTestId("auth-name").count())).toBe(0)
        yield* step(() => page.getByTestId("recent-signin").waitFor())

        yield* step(() => page.goto(`${base}/dead-letters`))
        yield* step(() => page.getByTestId("letters-signin").waitFor())
        expect(yield* step(() => page.getByTestId("letter-row").count())).toBe(0)
        expect(yield* step(() => page.getByTestId("letters-table").isVisible())).toBe(false)
        expect(yield* step(() => page.getByTestId("auth-signin").isVisible())).toBe(true)
        // The cookie the browser had is gone, and its session with it.
        expect((yield* step(() => page.context().cookies(base))).map((c) => c.name)).not.toContain(
          "order_session"
        )
        expect(errors).toEqual([])
      }).pipe(Effect.scoped)
  )

  it.effect(
    "a session ended on the server while the agent types: the search says so, and signing in again brings back what was typed",
    () =>
      Effect.gen(function* () {
        yield* seeded
        const base = yield* url
        const sql = yield* SqlClient.SqlClient
        const { page, context, errors } = yield* freshPage
        yield* step(() => page.goto(`${base}/`))
        yield* signInThrough(page, "auth-signin", "agent")
        yield* step(() => page.locator(`${tid("recent-order")}[data-uid="${model.order_uid}"]`).waitFor())

        const typed = customerEmail
        yield* step(() => page.getByTestId("uid-input").fill(typed))

        // Ended on the server (as a sign-out elsewhere, or an administrator, ends it).
        const session = (yield* step(() => context.cookies(base))).find((c) => c.name === "order_session")
        expect(session).toBeDefined()
        const deleted =
          yield* sql`DELETE FROM auth_sessions WHERE id_hash = decode(${sha256hex(session!.value)}, 'hex') RETURNING subject`
        expect(deleted).toEqual([{ subject: "agent" }])
        // Past the service's 200 ms recheck: it now says so to this cookie.
        yield* eventually(
          "the service no longer knows the session",
          step(async () => {
            const me = await fetch(`${base}/auth/me`, {
              headers: { cookie: `order_session=${session!.value}` }
            })
            return ((await me.json()) as { signed_in: boolean }).signed_in === false
          }),
          5_000
        )

        yield* step(() => page.getByTestId("uid-input").press("Enter"))
        const notice = page.getByTestId("session-ended")
        yield* step(() => notice.waitFor())
        expect(yield* step(() => notice.innerText())).toContain("Your session has ended — sign in again")
        yield* step(() => page.getByTestId("state-signed-out").waitFor())
        expect(yield* step(() => page.getByTestId("uid-input").inputValue())).toBe(typed)
        expect(yield* step(() => page.getByTestId("result-order").count())).toBe(0)
        // The app bar, asked again, no longer shows the agent.
        yield* step(() => page.getByTestId("auth-signin").waitFor())
        expect(yield* step(() => page.getByTestId("auth-name").count())).toBe(0)

        // What is typed after the refusal, not sent, is what signing in comes back to.
        const retyped = unicode.track_number
        yield* step(() => page.getByTestId("uid-input").fill(retyped))

        // The provider still has its own session: it may send the browser straight back, or ask.
        const link = page.getByTestId("session-ended-signin")
        expect(yield* step(() => link.innerText())).toBe("Sign in")
        yield* step(async () => {
          await link.click()
          const form = page.locator('input[name="login"]')
          await page.getByTestId("auth-name").or(form).waitFor()
          if (await form.isVisible()) {
            await fillProviderForm(page, "agent")
            await page.getByTestId("auth-name").waitFor()
          }
        })
        expect(yield* text(page, "auth-name")).toBe("Agent")
        expect(new URL(page.url()).pathname).toBe("/")
        expect(new URL(page.url()).searchParams.get("q")).toBe(retyped)
        expect(yield* step(() => page.getByTestId("uid-input").inputValue())).toBe(retyped)
        // Signed in again, the search runs.
        yield* step(() => page.getByTestId("state-results").waitFor())
        expect(
          yield* step(() =>
            page
              .getByTestId("result-order")
              .evaluateAll((links) => links.map((a) => a.getAttribute("data-uid")))
          )
        ).toEqual([unicode.order_uid])
        expect(yield* step(() => page.getByTestId("session-ended").count())).toBe(0)
        expect(errors).toEqual([])
      }).pipe(Effect.scoped)
  )
})
