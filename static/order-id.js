// Order ids: which text can be one, and the URLs an id maps to.

// The same rules the server applies before answering 400, so the agent learns about a bad paste at once.
const MAX_UID_LENGTH = 128
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/

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
