/**
 * An HTTP answer built before there is a response to write it to: by the order fast path
 * (`OrderRoute`), the authorization step and the server's own refusals. The server writes it as it
 * is (`HttpServer`), and the router's handlers turn it into the platform's response (`responseOf`),
 * so that both ways in give the same status, headers and bytes.
 */
import { HttpServerResponse } from "@effect/platform"

/** An answer, security headers aside (the server adds those to every response). */
export interface Answer {
  readonly status: number
  /** Names and values in turn, as `writeHead` takes them. */
  readonly headers: ReadonlyArray<string>
  readonly body: string | undefined
}

/** `value` as a JSON answer: the one JSON writer of answers built here. */
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

/** An answer as the platform's response; the platform sets type and length itself. */
export const responseOf = (answer: Answer): HttpServerResponse.HttpServerResponse => {
  const headers: Record<string, string> = {}
  for (let i = 0; i < answer.headers.length; i += 2) {
    const name = answer.headers[i]!
    if (name !== "content-type" && name !== "content-length") headers[name] = answer.headers[i + 1]!
  }
  return answer.body === undefined
    ? HttpServerResponse.empty({ status: answer.status, headers })
    : HttpServerResponse.text(answer.body, {
        status: answer.status,
        contentType: "application/json",
        headers
      })
}
