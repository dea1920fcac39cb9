// Order ids: which text can be one, and the URLs an id maps to.

// The server's rule (`OrderUid` in src/orders/Order.ts: 1–128 characters, no control characters),
// applied here too so the agent learns about a bad paste at once. This is the page's one copy, and
// test/http/pageOrderIdRule.test.ts checks that it accepts exactly the ids `OrderUid` accepts.
// A copy rather than the rule read from /openapi.json at run time: the document does not state
// "no control characters" (the model declares that as a filter), and the page would need one more
// request on every load, with a moment after it when an id arriving by a link could not be judged.
const MAX_UID_LENGTH = 128
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/

/** What the agent typed or pasted, trimmed, and whether it can be an order id (if not, why). */
export function checkUid(raw) {
  const uid = String(raw ?? "").trim()
  if (uid === "") return { ok: false, uid, message: "Type or paste an order id first." }
  if (uid.length > MAX_UID_LENGTH)
    return {
      ok: false,
      uid,
      message: `Order ids are at most ${MAX_UID_LENGTH} characters; this one has ${uid.length}. Was more than the id pasted?`
    }
  if (CONTROL_CHARACTER.test(uid))
    return {
      ok: false,
      uid,
      message:
        "It contains a control character (a tab, line break or similar). Copy just the id and try again."
    }
  return { ok: true, uid }
}

export const orderUrl = (uid) => `/order/${encodeURIComponent(uid)}`
export const pageUrl = (uid) => `/?uid=${encodeURIComponent(uid)}`
export const uidInLocation = () => new URLSearchParams(window.location.search).get("uid") || null
