/**
 * The Node HTTP server around the Effect app. Three things live here because they sit below the
 * app: security headers on every response, one access-log line and one latency observation per
 * request, and a graceful drain on shutdown (Effect 3's Node server only calls `close()`).
 *
 * It also answers `GET /order/{uid}` straight from the cache when the order is there: a hit is
 * the service's hottest path, and going through the router and middleware for it would cost most
 * of its throughput. The answer is the same as the API handler's (same body, headers, ETag, and
 * the same 400 for an id that cannot be one); misses go through the app.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpApiBuilder } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Deferred, Duration, Effect, Layer, Option, Runtime } from "effect"
import { OrderCache } from "../cache/OrderCache.ts"
import { HttpConfig } from "../config/AppConfig.ts"
import { observeHttpRequest } from "../observability/Prometheus.ts"
import { ORDER_CACHE_CONTROL, orderUidProblem } from "./Http.ts"
import { SECURITY_HEADERS } from "./SecurityHeaders.ts"

/** The security headers as a flat name/value list for `writeHead`. */
const SECURITY_HEADER_LIST: ReadonlyArray<string> = Object.entries(SECURITY_HEADERS).flat()

const ORDER_PREFIX = "/order/"

/** How long open connections are told (503, `Connection: close`) before idle ones are closed. */
const DRAIN_NOTICE = Duration.seconds(1)

/** A low-cardinality label for metrics and logs. */
export const routeOf = (pathname: string): string => {
  if (pathname.startsWith(ORDER_PREFIX)) return "/order/{order_uid}"
  if (pathname.startsWith("/dead-letters/"))
    return pathname === "/dead-letters/replay" ? pathname : "/dead-letters/{partition}/{offset}"
  switch (pathname) {
    case "/orders":
    case "/dead-letters":
    case "/healthz":
    case "/readyz":
    case "/metrics":
    case "/openapi.json":
    case "/docs":
    case "/":
      return pathname
    default:
      return /^\/[\w.-]+\.(js|css|html|svg|ico|png)$/.test(pathname) ? "static" : "other"
  }
}

/** Where the server listens, once it does. */
export class HttpAddress extends Context.Tag("HttpAddress")<
  HttpAddress,
  { readonly port: number; readonly url: string }
>() {}

const writeJson = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {}
): number => {
  const text = JSON.stringify(body)
  const bytes = Buffer.byteLength(text)
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "content-type": "application/json",
    "content-length": bytes,
    ...headers
  })
  res.end(text)
  return bytes
}

export const HttpServerLive = Layer.scoped(
  HttpAddress,
  Effect.gen(function* () {
    const config = yield* HttpConfig
    const cache = yield* OrderCache
    const app = yield* HttpApiBuilder.httpApp
    const handleWithApp = yield* NodeHttpServer.makeHandler(app)
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())

    let draining = false
    let inFlight = 0
    const idle = yield* Deferred.make<void>()

    /** `bytes`: the body's size; headers given to `writeHead` as a list are not read back. */
    const accessLog = (
      req: IncomingMessage,
      res: ServerResponse,
      pathname: string,
      ms: number,
      bytes: number = Number(res.getHeader("content-length") ?? 0)
    ) =>
      runSync(
        Effect.logInfo("http request").pipe(
          Effect.annotateLogs({
            method: req.method ?? "",
            path: pathname,
            status: res.statusCode,
            ms: Math.round(ms * 100) / 100,
            bytes
          })
        )
      )

    /**
     * `GET /order/{uid}`: answer a bad id (400) or a cache hit here, returning the body's size;
     * undefined means the app must answer. Bad ids are judged here too because the router does
     * not match very long ids.
     */
    const orderFastPath = (
      req: IncomingMessage,
      res: ServerResponse,
      pathname: string
    ): number | undefined => {
      if (req.method !== "GET" || !pathname.startsWith(ORDER_PREFIX)) return undefined
      let uid: string
      try {
        uid = decodeURIComponent(pathname.slice(ORDER_PREFIX.length))
      } catch {
        return writeJson(res, 400, {
          error: "invalid_order_uid",
          message: "order_uid is not valid percent-encoded UTF-8"
        })
      }
      // Only valid ids are ever cached, so a hit needs no further check. A miss goes on to the API,
      // whose lookup counts it: counted here too, every miss would count twice.
      const hit = cache.unsafeGet(uid, { countMiss: false })
      if (Option.isNone(hit)) {
        const problem = orderUidProblem(uid)
        if (Option.isNone(problem)) return undefined
        return writeJson(res, 400, { error: "invalid_order_uid", message: problem.value })
      }
      // The headers as one flat list: Node writes it as it is, without a per-header pass.
      const etag = hit.value.etag
      if (req.headers["if-none-match"] === etag) {
        res.writeHead(304, [...SECURITY_HEADER_LIST, "etag", etag, "cache-control", ORDER_CACHE_CONTROL])
        res.end()
        return 0
      }
      res.writeHead(200, [
        ...SECURITY_HEADER_LIST,
        "content-type",
        "application/json",
        "content-length",
        String(hit.value.bytes),
        "etag",
        etag,
        "cache-control",
        ORDER_CACHE_CONTROL
      ])
      res.end(hit.value.json)
      return hit.value.bytes
    }

    const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
      const started = performance.now()
      const url = req.url ?? "/"
      const q = url.indexOf("?")
      const pathname = q === -1 ? url : url.slice(0, q)
      const fastBytes = draining ? undefined : orderFastPath(req, res, pathname)
      if (fastBytes !== undefined) {
        // Answered at once and in full: nothing for a shutdown to wait for.
        const ms = performance.now() - started
        observeHttpRequest("GET", "/order/{order_uid}", res.statusCode, ms / 1000)
        if (config.accessLog) accessLog(req, res, pathname, ms, fastBytes)
        return
      }
      inFlight++
      res.once("close", () => {
        inFlight--
        const ms = performance.now() - started
        observeHttpRequest(req.method ?? "", routeOf(pathname), res.statusCode, ms / 1000)
        if (config.accessLog) accessLog(req, res, pathname, ms)
        if (draining && inFlight === 0) runSync(Deferred.succeed(idle, undefined))
      })
      for (const name in SECURITY_HEADERS) res.setHeader(name, SECURITY_HEADERS[name]!)
      if (draining) {
        writeJson(
          res,
          503,
          { error: "shutting_down", message: "the service is stopping; retry shortly" },
          { connection: "close" }
        )
        return
      }
      handleWithApp(req, res)
    })

    yield* Effect.async<void, Error>((resume) => {
      const onError = (error: Error) => resume(Effect.fail(error))
      server.once("error", onError)
      server.listen(config.port, config.host, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })
    const port = (server.address() as AddressInfo).port
    const url = `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${port}`
    yield* Effect.logInfo("HTTP server listening").pipe(Effect.annotateLogs({ url }))

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        draining = true
        // For a moment every request, on any connection, is answered 503 with `Connection: close`:
        // a request already on the wire of a keep-alive connection gets an answer instead of a
        // reset. Then stop accepting; idle connections close now, busy ones after their response.
        const connections = yield* Effect.async<number>((resume) => {
          server.getConnections((_, count) => resume(Effect.succeed(count ?? 0)))
        })
        if (connections > 0) yield* Effect.sleep(Duration.min(DRAIN_NOTICE, config.shutdownTimeout))
        server.close()
        server.closeIdleConnections()
        if (inFlight > 0) {
          yield* Effect.logInfo("Draining HTTP requests").pipe(Effect.annotateLogs({ in_flight: inFlight }))
          // A finalizer runs uninterruptibly: the wait must be made interruptible for the timeout to end it.
          const drained = yield* Deferred.await(idle).pipe(
            Effect.interruptible,
            Effect.timeout(config.shutdownTimeout),
            Effect.option
          )
          if (Option.isNone(drained)) {
            yield* Effect.logWarning(
              "HTTP requests still running at the shutdown deadline; closing them"
            ).pipe(
              Effect.annotateLogs({ in_flight: inFlight, deadline: Duration.format(config.shutdownTimeout) })
            )
          }
        }
        server.closeAllConnections()
      })
    )
    return { port, url }
  })
).pipe(
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer, NodeHttpServer.layerContext])
)
