/**
 * The Node HTTP server around the Effect app. Three things live here because they sit below the
 * app: security headers on every response, one access-log line and one latency observation per
 * request, and a graceful drain on shutdown (Effect 3's Node server only calls `close()`).
 *
 * It also answers three routes itself, below the router (`http.fast_paths`): `GET /order/{uid}`,
 * the service's hottest path, `GET /orders/search`, its costliest repeatable one, and
 * `GET /orders/live`, whose every client is written to as orders are stored. The router and
 * middleware would cost most of the first's throughput and half of the second's CPU, and the third
 * a fiber and a queue per client. The answers come from `OrderRoute`, `SearchRoute` and
 * `LiveFeed`, which the API handlers use too.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpApiBuilder, HttpIncomingMessage, HttpMiddleware } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberRef,
  Layer,
  LogLevel,
  Option,
  Runtime
} from "effect"
import { ORDER_PREFIX, routeOf } from "../auth/Access.ts"
import { Auth, type Verdict } from "../auth/Auth.ts"
import { HttpConfig, isLoopbackHost } from "../config/AppConfig.ts"
import { countShed, observeHttpRequest } from "../observability/Prometheus.ts"
import { type Answer, json } from "./Answer.ts"
import { LiveFeed } from "../live/LiveFeed.ts"
import { encodingOf, liveHeaders } from "./LiveRoute.ts"
import { OrderRoute, uidFromPath } from "./OrderRoute.ts"
import { HttpDrain } from "./HttpDrain.ts"
import { SearchRoute, searchParamsOf } from "./SearchRoute.ts"
import { SECURITY_HEADERS } from "./SecurityHeaders.ts"

/** The security headers as a flat name/value list for `writeHead`. */
const SECURITY_HEADER_LIST: ReadonlyArray<string> = Object.entries(SECURITY_HEADERS).flat()

const ORDER_ROUTE = "/order/{order_uid}"
const SEARCH_ROUTE = "/orders/search"
const LIVE_ROUTE = "/orders/live"

/** Routes whose body is JSON: anything else sent to them is refused before it is read. */
const JSON_BODIES: ReadonlySet<string> = new Set(["/dead-letters/replay"])

/** The status logged for a request whose client went before it was answered (nginx's). */
const CLIENT_CLOSED_REQUEST = 499

/** The answer to a request whose handling failed with a defect (logged). */
const INTERNAL_ERROR = json(500, { error: "internal_error", message: "the request could not be answered" })

/** How long open connections are told (503, `Connection: close`) before idle ones are closed. */
const DRAIN_NOTICE = Duration.seconds(1)

/** A low-cardinality label for metrics and logs (and the key of the access rules). */
export { routeOf }

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

export const layer = Layer.scoped(
  HttpAddress,
  Effect.gen(function* () {
    const config = yield* HttpConfig
    const route = yield* OrderRoute
    const search = yield* SearchRoute
    const live = yield* LiveFeed
    const drain = yield* HttpDrain
    const auth = yield* Auth
    if (auth.mode === "none" && !isLoopbackHost(config.host))
      yield* Effect.logWarning(
        "auth.mode is none on a network address: anyone who reaches it sees every order and dead letter"
      ).pipe(Effect.annotateLogs({ host: config.host }))
    const app = yield* HttpApiBuilder.httpApp
    // No tracer exports spans from this service, so the platform's span per request is off: it was
    // a tenth of a search's CPU. Whoever adds a tracer (an OpenTelemetry layer) removes this.
    const handleWithApp = yield* NodeHttpServer.makeHandler(app).pipe(
      Effect.locally(HttpMiddleware.currentTracerDisabledWhen, () => true),
      // Whatever the checks below let through, the platform reads no more than this either.
      HttpIncomingMessage.withMaxBodySize(Option.some(config.maxBodyBytes))
    )
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    // Below the minimum log level an access-log line is dropped anyway, after costing a run of an
    // Effect: about 80 µs a request, as much as the rest of a search (docs/perf-notes/).
    const accessLogOn =
      config.accessLog &&
      LogLevel.greaterThanEqual(LogLevel.Info, yield* FiberRef.get(FiberRef.currentMinimumLogLevel))

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
            principal: auth.principalOf(req)?.subject ?? "-",
            status: res.statusCode,
            ms: Math.round(ms * 100) / 100,
            bytes
          })
        )
      )

    /**
     * Writes an answer of `OrderRoute`, `SearchRoute` or the authorization step with the security
     * headers; what says nothing of caching is not to be stored (it is a customer's data, or a refusal).
     */
    const writeAnswer = (res: ServerResponse, answer: Answer) => {
      res.writeHead(
        answer.status,
        answer.headers.includes("cache-control")
          ? [...SECURITY_HEADER_LIST, ...answer.headers]
          : [...SECURITY_HEADER_LIST, "cache-control", "no-store", ...answer.headers]
      )
      res.end(answer.body)
    }

    /** One request fewer in flight; the last one of a drain lets the shutdown go on. */
    const settled = () => {
      inFlight--
      if (draining && inFlight === 0) runSync(Deferred.succeed(idle, undefined))
    }

    /** Counts a request that will be answered later, so that a shutdown waits for it. */
    const track = (req: IncomingMessage, res: ServerResponse, pathname: string, started: number) => {
      inFlight++
      res.once("close", () => {
        const ms = performance.now() - started
        observeHttpRequest(req.method ?? "", routeOf(pathname), res.statusCode, ms / 1000)
        if (accessLogOn) accessLog(req, res, pathname, ms)
        settled()
      })
    }

    /** Writes `answer` and records the request: its latency, its access-log line. */
    const finish = (
      req: IncomingMessage,
      res: ServerResponse,
      pathname: string,
      route: string,
      started: number,
      answer: Answer
    ) => {
      writeAnswer(res, answer)
      const ms = performance.now() - started
      observeHttpRequest(req.method ?? "GET", route, res.statusCode, ms / 1000)
      if (accessLogOn)
        accessLog(req, res, pathname, ms, answer.body === undefined ? 0 : Buffer.byteLength(answer.body))
    }

    /**
     * An answer that comes later: `start` calls back once, with an exit that fails only with a
     * defect. The request is counted in flight until then, so that a shutdown waits for it; the
     * answer is written even if the client has gone meanwhile (a no-op). If `start` returns a
     * `leave` function, it is called when the client goes before its answer: a request still
     * waiting its turn is then dropped without running (logged with status 499).
     */
    const finishLater = (
      req: IncomingMessage,
      res: ServerResponse,
      pathname: string,
      route: string,
      started: number,
      start: (done: (exit: Exit.Exit<Answer>) => void) => (() => boolean) | void
    ) => {
      inFlight++
      let answered = false
      const leave = start((exit) => {
        answered = true
        try {
          if (Exit.isSuccess(exit)) finish(req, res, pathname, route, started, exit.value)
          else {
            runSync(Effect.logError(`GET ${route} failed`, exit.cause))
            finish(req, res, pathname, route, started, INTERNAL_ERROR)
          }
        } finally {
          settled()
        }
      })
      if (leave !== undefined && !answered)
        res.once("close", () => {
          if (answered || !leave()) return
          answered = true
          res.statusCode = CLIENT_CLOSED_REQUEST
          const ms = performance.now() - started
          observeHttpRequest("GET", route, CLIENT_CLOSED_REQUEST, ms / 1000)
          if (accessLogOn) accessLog(req, res, pathname, ms, 0)
          settled()
        })
    }

    /**
     * `GET /order/{uid}`, below the router: the id is judged and a cache hit answered at once,
     * without an Effect; a miss is answered by `OrderRoute.answerMissed` (as the API handler's are)
     * when its batched read returns, without an Effect of its own either. The router is not used
     * for these at all: it is most of a request's cost, and it does not match ids longer than 100
     * characters.
     */
    const serveOrder = (req: IncomingMessage, res: ServerResponse, pathname: string, started: number) => {
      const decoded = uidFromPath(pathname.slice(ORDER_PREFIX.length))
      if (Either.isLeft(decoded)) return finish(req, res, pathname, ORDER_ROUTE, started, decoded.left)
      const uid = decoded.right
      const ifNoneMatch = req.headers["if-none-match"]
      // A hit or a bad id is answered at once and in full: nothing for a shutdown to wait for.
      const now = route.answerNow(uid, ifNoneMatch)
      if (now !== undefined) return finish(req, res, pathname, ORDER_ROUTE, started, now)
      finishLater(req, res, pathname, ORDER_ROUTE, started, (done) =>
        route.answerMissed(uid, ifNoneMatch, done)
      )
    }

    /**
     * `GET /orders/live`, below the router: the response is one of the feed's subscribers, written
     * to from the feed's loop. It counts as in flight until it ends; the feed ends every stream
     * when a shutdown begins.
     */
    const serveLive = (req: IncomingMessage, res: ServerResponse, pathname: string, started: number) => {
      // Past `live.max_clients` (or per address), 503 with Retry-After; admitted and attached in
      // one synchronous step. The address is the connection's: behind a proxy, the proxy's for
      // every client, so the per-address limit is then a second global one (X-Forwarded-For, which
      // any client may send, is not trusted).
      const address = req.socket.remoteAddress
      const refusal = live.unsafeAdmit(address)
      if (refusal !== undefined) return finish(req, res, pathname, LIVE_ROUTE, started, refusal)
      track(req, res, pathname, started)
      const encoding = encodingOf(req.headers)
      res.writeHead(200, [...SECURITY_HEADER_LIST, ...Object.entries(liveHeaders(encoding)).flat()])
      const lastEventId = req.headers["last-event-id"]
      const detach = live.unsafeAttach({
        lastEventId: typeof lastEventId === "string" ? lastEventId : undefined,
        encoding,
        address,
        subscriber: {
          write: (bytes, sent) => {
            res.write(bytes, sent)
          },
          end: (bytes) => {
            res.end(bytes)
          },
          destroy: () => {
            res.destroy()
          },
          // What the response and its socket hold, not yet handed to the kernel.
          buffered: () => res.writableLength
        }
      })
      res.once("close", detach)
      // A write that fails (the connection is gone) is the end of this client, not of the process.
      res.on("error", detach)
    }

    /**
     * 413 for a body over `http.max_body_bytes` (by `Content-Length`), 411 for a body of unknown
     * length (chunked: it could only be measured by reading it), 415 for anything but JSON where
     * JSON is expected; otherwise nothing. The platform's own limit (`MaxBodySize`) guards the rest.
     */
    const bodyRefusal = (req: IncomingMessage, route: string): Answer | undefined => {
      const length = req.headers["content-length"]
      if (length === undefined) {
        if (req.headers["transfer-encoding"] === undefined) return undefined
        countShed("body_length_unknown")
        return json(411, { error: "length_required", message: "send the body with a Content-Length" })
      }
      const bytes = Number(length)
      if (!(bytes <= config.maxBodyBytes)) {
        countShed("body_too_large")
        return json(413, {
          error: "body_too_large",
          message: `a request body may be at most ${config.maxBodyBytes} bytes (http.max_body_bytes)`
        })
      }
      if (bytes > 0 && JSON_BODIES.has(route)) {
        const type = req.headers["content-type"] ?? ""
        if (!/^application\/json\s*(;|$)/i.test(type))
          return json(415, { error: "unsupported_media_type", message: "the body must be application/json" })
      }
      return undefined
    }

    /** A request the authorization step let through, answered one of the two ways. */
    const serve = (
      req: IncomingMessage,
      res: ServerResponse,
      url: string,
      pathname: string,
      started: number
    ) => {
      const q = url.indexOf("?")
      if (!draining && config.fastPaths && req.method === "GET") {
        if (pathname.startsWith(ORDER_PREFIX)) return serveOrder(req, res, pathname, started)
        if (pathname === LIVE_ROUTE) return serveLive(req, res, pathname, started)
        if (pathname === SEARCH_ROUTE) {
          // A parameter given twice is left to the router, whose decoding refuses it.
          const params = searchParamsOf(q === -1 ? "" : url.slice(q + 1))
          if (params !== undefined)
            return finishLater(req, res, pathname, SEARCH_ROUTE, started, (done) =>
              search.unsafeAnswer(params, done)
            )
        }
      }
      track(req, res, pathname, started)
      for (const name in SECURITY_HEADERS) res.setHeader(name, SECURITY_HEADERS[name]!)
      // Whatever a handler says of caching wins (the page's files); the rest holds customer data.
      res.setHeader("cache-control", "no-store")
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
    }

    /** Let through, or answered with the refusal. */
    const decided = (
      req: IncomingMessage,
      res: ServerResponse,
      url: string,
      pathname: string,
      route: string,
      started: number,
      verdict: Verdict
    ) =>
      verdict._tag === "Allow"
        ? serve(req, res, url, pathname, started)
        : finish(req, res, pathname, route, started, verdict.answer)

    const server = createServer(
      {
        keepAliveTimeout: Duration.toMillis(config.keepAliveTimeout),
        headersTimeout: Duration.toMillis(config.headersTimeout),
        requestTimeout: Duration.toMillis(config.requestTimeout),
        // Node checks both timeouts this often (its default is 30 s, longer than either of ours).
        connectionsCheckingInterval: Math.min(1_000, Duration.toMillis(config.headersTimeout))
      },
      (req, res) => {
        const started = performance.now()
        const url = req.url ?? "/"
        const q = url.indexOf("?")
        const pathname = q === -1 ? url : url.slice(0, q)
        const route = routeOf(pathname)
        // A body is judged by its headers before anything else is done for the request: its size,
        // and its type where JSON is expected. What is refused is never read (the connection closes).
        const refusal = bodyRefusal(req, route)
        if (refusal !== undefined) {
          res.shouldKeepAlive = false
          return finish(req, res, pathname, route, started, refusal)
        }
        // The one authorization step, for both ways a request is answered. From its caches (and for
        // public routes) it decides at once; a token or session it has not seen lately takes a promise.
        const verdict = auth.check(req, route)
        if (!(verdict instanceof Promise)) return decided(req, res, url, pathname, route, started, verdict)
        inFlight++
        verdict.then(
          (v) => {
            try {
              decided(req, res, url, pathname, route, started, v)
            } finally {
              settled()
            }
          },
          (error: unknown) => {
            try {
              runSync(Effect.logError("The authorization step failed", error))
              finish(req, res, pathname, route, started, INTERNAL_ERROR)
            } finally {
              settled()
            }
          }
        )
      }
    )
    server.maxConnections = config.maxConnections
    server.on("drop", () => countShed("connections"))

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
        // Streams that would never finish by themselves (the live feed) end now.
        yield* drain.begin
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
