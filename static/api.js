// Requests to the service's API, and what a failed one means for the page.

import { isRecord } from "./dom.js"

const REQUEST_TIMEOUT_MS = 15_000

export class RequestFailed extends Error {
  constructor(kind, message, { requiredRole = null } = {}) {
    super(message)
    this.kind = kind // "not-found" | "bad-id" | "signed-out" | "forbidden" | "unavailable" | "server" | "network"
    /** For "forbidden": the role the server says the request needs (`required_role`), if it said. */
    this.requiredRole = requiredRole
  }
}

/** `cache`: a fetch cache mode, e.g. "no-store" for what must be asked afresh each time. */
export async function getJson(url, signal, { cache } = {}) {
  const { response, body } = await request(url, { headers: { accept: "application/json" }, cache }, signal)
  if (response.ok) return json(body)
  throw refusal(response, body) ?? unexpected(response)
}

/**
 * POSTs `payload` as JSON to the service (same origin: the browser sends the page's `Origin`, which
 * the service asks of a request that changes something). A 503 carries the server's message
 * (kind "unavailable"): it says what is not ready.
 */
export async function postJson(url, payload, signal) {
  const { response, body } = await request(
    url,
    {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(payload),
      credentials: "same-origin"
    },
    signal
  )
  if (response.ok) return json(body)
  const refused = refusal(response, body)
  if (refused !== null) throw refused
  const detail = messageOf(body)
  if (response.status === 503 && detail !== "") throw new RequestFailed("unavailable", detail)
  throw unexpected(response)
}

async function request(url, init, signal) {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout
  let response
  try {
    response = await fetch(url, { ...init, signal: combined })
  } catch (cause) {
    if (signal?.aborted) throw cause
    if (timeout.aborted)
      throw new RequestFailed(
        "network",
        `The server did not answer within ${REQUEST_TIMEOUT_MS / 1000} seconds.`
      )
    throw new RequestFailed("network", "The page could not connect to the server. Check the connection.")
  }
  const body = await response.json().catch(() => undefined)
  return { response, body }
}

function json(body) {
  if (body === undefined) throw new RequestFailed("server", "The server sent a response that is not JSON.")
  return body
}

const messageOf = (body) => (isRecord(body) && typeof body.message === "string" ? body.message : "")

/** What a refusal the page knows means (400, 401, 403, 404), or null for another status. */
function refusal(response, body) {
  const detail = messageOf(body)
  if (response.status === 404) return new RequestFailed("not-found", detail)
  if (response.status === 400) return new RequestFailed("bad-id", detail)
  // No session (or it ended), or credentials the server no longer accepts.
  if (response.status === 401) return new RequestFailed("signed-out", detail || "You are not signed in.")
  // Signed in, without the role this needs (the server's message names it), or a change asked
  // for from somewhere other than the service's own page.
  if (response.status === 403)
    return new RequestFailed("forbidden", detail, {
      requiredRole: isRecord(body) && typeof body.required_role === "string" ? body.required_role : null
    })
  return null
}

const unexpected = (response) =>
  new RequestFailed(
    "server",
    `The server answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}.`
  )
