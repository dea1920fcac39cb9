// Requests to the service's API, and what a failed one means for the page.

import { isRecord } from "./dom.js"

const REQUEST_TIMEOUT_MS = 15_000

export class RequestFailed extends Error {
  constructor(kind, message, { requiredRole = null } = {}) {
    super(message)
    this.kind = kind // "not-found" | "bad-id" | "signed-out" | "forbidden" | "server" | "network"
    /** For "forbidden": the role the server says the request needs (`required_role`), if it said. */
    this.requiredRole = requiredRole
  }
}

/** `cache`: a fetch cache mode, e.g. "no-store" for what must be asked afresh each time. */
export async function getJson(url, signal, { cache } = {}) {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout
  let response
  try {
    response = await fetch(url, { headers: { accept: "application/json" }, signal: combined, cache })
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
  if (response.ok) {
    if (body === undefined) throw new RequestFailed("server", "The server sent a response that is not JSON.")
    return body
  }
  const detail = isRecord(body) && typeof body.message === "string" ? body.message : ""
  if (response.status === 404) throw new RequestFailed("not-found", detail)
  if (response.status === 400) throw new RequestFailed("bad-id", detail)
  // No session (or it ended), or credentials the server no longer accepts.
  if (response.status === 401) throw new RequestFailed("signed-out", detail || "You are not signed in.")
  // Signed in, without the role this needs: the server's message names it.
  if (response.status === 403)
    throw new RequestFailed("forbidden", detail, {
      requiredRole: isRecord(body) && typeof body.required_role === "string" ? body.required_role : null
    })
  throw new RequestFailed(
    "server",
    `The server answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}.`
  )
}
