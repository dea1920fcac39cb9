/**
 * An HTTP answer as the routes answered below the router build it (`OrderRoute`, `SearchRoute`):
 * the server writes it as it is, and the HttpApi handlers turn it into the platform's response, so
 * that both ways in give the same status, headers and bytes.
 */

/** An answer, security headers aside (the server adds those to every response). */
export interface Answer {
  readonly status: number
  /** Names and values in turn, as `writeHead` takes them. */
  readonly headers: ReadonlyArray<string>
  readonly body: string | undefined
}

/** `value` as a JSON answer. */
export const json = (status: number, value: unknown): Answer => {
  const body = JSON.stringify(value)
  return {
    status,
    headers: ["content-type", "application/json", "content-length", String(Buffer.byteLength(body))],
    body
  }
}

/** `answer` with more headers (names and values in turn). */
export const withHeaders = (answer: Answer, ...headers: ReadonlyArray<string>): Answer => ({
  ...answer,
  headers: [...answer.headers, ...headers]
})
