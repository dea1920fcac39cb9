/**
 * The web page judges an order id before asking the server, with its own copy of the rule (see
 * static/order-id.js for why a copy): it must accept exactly the ids the server's `OrderUid` does.
 */
import { pathToFileURL } from "node:url"
import path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import * as fc from "fast-check"
import { staticDirectory } from "../../src/http/StaticFiles.ts"
import { ORDER_UID_MAX_LENGTH, OrderUid } from "../../src/orders/Order.ts"

interface UidCheck {
  readonly ok: boolean
  readonly uid: string
  readonly message?: string
}

// The page's module as the browser gets it: plain JavaScript, imported by its URL.
const { checkUid } = (await import(pathToFileURL(path.join(staticDirectory, "order-id.js")).href)) as {
  checkUid: (raw: string) => UidCheck
}

const serverAccepts = Schema.is(OrderUid)

/** The page trims what was pasted around an id; what it then accepts, the server must accept. */
const expectSameVerdict = (typed: string) => {
  const check = checkUid(typed)
  expect(check.uid).toBe(typed.trim())
  expect(check.ok, JSON.stringify(typed)).toBe(serverAccepts(check.uid))
  if (!check.ok) expect(check.message).toBeTruthy()
}

describe("the web page's order-id rule", () => {
  it("agrees with the server on every single character, with text around it or alone", () => {
    for (let code = 0; code <= 0xffff; code++) {
      const c = String.fromCharCode(code)
      expectSameVerdict(c)
      expectSameVerdict(`a${c}b`)
    }
  })

  it("agrees with the server on the length limit, counted in UTF-16 units as the server counts", () => {
    for (const unit of ["x", "é", "🎧"]) {
      for (let length = 0; length <= ORDER_UID_MAX_LENGTH + 2; length++) {
        expectSameVerdict(unit.repeat(length).slice(0, length))
      }
    }
    expect(checkUid("x".repeat(ORDER_UID_MAX_LENGTH + 1)).message).toContain(
      `at most ${ORDER_UID_MAX_LENGTH}`
    )
  })

  it("agrees with the server on generated text of any length and any characters", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: "binary", maxLength: 140 }),
          fc.string({ unit: "grapheme", minLength: 100, maxLength: 140 }),
          fc.string({ unit: fc.constantFrom("a", " ", "\t", "\u0085", "\u00a0", "\u2028"), maxLength: 140 })
        ),
        expectSameVerdict
      ),
      { numRuns: 2000 }
    )
  })
})
