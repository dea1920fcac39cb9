// Requests to the service's API, and what a failed one means for the page.

import { isRecord } from "./dom.js"

const REQUEST_TIMEOUT_MS = 15_000

export class RequestFailed extends Error {
  constructor(kind, message) {
    super(message)
    this.kind = kind // "not-found" | "bad-id" | "server" | "network"
  }
}

export async function getJson(url, signal) {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout
  let response
  try {
    response = await fetch(url, { headers: { accept: "application/json" }, signal: combined })
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
  throw new RequestFailed(
    "server",
    `The server answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}.`
  )
}
