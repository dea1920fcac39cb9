/**
 * The Node HTTP server around the Effect app. What every request passes lives here, below the app:
 * its body judged by its headers, the one authorization step, security headers on every response,
 * one access-log line and one latency observation per request however it was answered, and a
 * graceful drain on shutdown (Effect 3's Node server only calls `close()`).
 *
 * A request is then answered one of two ways. Below the router (`http.fast_paths`), because the
 * router and its middleware cost most of their CPU: `GET /order/{order_uid}` from `OrderRoute` (a
 * cache hit without running an Effect at all, a miss from its batched read's callback), and a
 * `GET /orders/search` whose query decodes from `SearchRoute` (one Effect). Everything else by the
 * HttpApi app (`Http.ts`), whose handlers for those two answer with the same routes. The refusals
 * of the checks above and the drain's 503 are answers written here too, and recorded the same way.
 *
 * While traces are exported, each request (but probes, scrapes and the page's files) gets one
 * server span, begun and ended here whichever way it is answered.
 */
import { createServer, type IncomingMessage, maxHeaderSize, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import {
  HttpApiBuilder,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpRouter,
  HttpServerRequest
} from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import {
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberRef,
  Layer,
  LogLevel,
  Option,
  Runtime,
  type Tracer
} from "effect"
import { ORDER_PREFIX, routeOf } from "../auth/Access.ts"
import { Auth, type Verdict } from "../auth/Auth.ts"
import { HttpConfig, isLoopbackHost } from "../config/AppConfig.ts"
import { countShed, observeHttpRequest } from "../observability/Prometheus.ts"
import { startSpan, TracePropagation } from "../observability/Tracing.ts"
import { type Answer, json, withHeaders } from "./Answer.ts"
import { HttpDrain } from "./HttpDrain.ts"
import { OrderRoute, uidFromPath } from "./OrderRoute.ts"
import type { SearchParams } from "./Api.ts"
import { SEARCH_PATH, SearchRoute, searchParamsOf } from "./SearchRoute.ts"
import { SECURITY_HEADERS } from "./SecurityHeaders.ts"

/** The security headers as a flat name/value list for `writeHead`. */
const SECURITY_HEADER_LIST: ReadonlyArray<string> = Object.entries(SECURITY_HEADERS).flat()

/** Routes whose body is JSON: anything else sent to them is refused before it is read. */
const JSON_BODIES: ReadonlySet<string> = new Set(["/dead-letters/replay"])

/** The status recorded for a request whose client went before it was answered (nginx's). */
const CLIENT_CLOSED_REQUEST = 499

/** The answer to a request whose handling failed with a defect (logged). */
const INTERNAL_ERROR = json(500, { error: "internal_error", message: "the request could not be answered" })

/** Every request while the server drains, on any connection, which then closes. */
const SHUTTING_DOWN = withHeaders(
  json(503, { error: "shutting_down", message: "the service is stopping; retry shortly" }),
  "connection",
  "close"
)

/** Routes that get no span: probes, scrapes and the page's files. */
const UNTRACED: ReadonlySet<string> = new Set(["/metrics", "/healthz", "/readyz", "static"])

/** How long open connections are told (503, `Connection: close`) before idle ones are closed. */
const DRAIN_NOTICE = Duration.seconds(1)

/** A low-cardinality label for metrics and logs (and the key of the access rules). */
export { routeOf }

/** Where the server listens, once it does: building this service starts the server. */
export class HttpAddress extends Effect.Service<HttpAddress>()("HttpAddress", {
  scoped: Effect.gen(function* () {
    const config = yield* HttpConfig
    const route = yield* OrderRoute
    const search = yield* SearchRoute
    const drain = yield* HttpDrain
    const auth = yield* Auth
    if (auth.mode === "none" && !isLoopbackHost(config.host))
      yield* Effect.logWarning(
        "auth.mode is none on a network address: anyone who reaches it sees every order and dead letter"
      ).pipe(Effect.annotateLogs({ host: config.host }))
    const app = yield* HttpApiBuilder.httpApp.pipe(
      // The router's own bound on a path parameter (100 characters) would turn an order id of
      // 101–128 characters into a 404 the fast path does not give: the parameter may be as long as
      // a request's head, and the handler judges it (400 past ORDER_UID_MAX_LENGTH).
      HttpRouter.withRouterConfig({ maxParamLength: maxHeaderSize })
    )
    const propagation = yield* TracePropagation
    const tracer = yield* Effect.tracer
    const clock = yield* Effect.clock
    /** The server span of a request answered by the router, which its handler's fiber runs under. */
    const spanOfRequest = new WeakMap<IncomingMessage, Tracer.Span>()
    const tracedApp =
      propagation === undefined
        ? app
        : Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
            const span = spanOfRequest.get(NodeHttpServerRequest.toIncomingMessage(request))
            return span === undefined ? app : Effect.withParentSpan(app, span)
          })
    // The platform's span per request stays off, traces exported or not (it was a tenth of a
    // search's CPU): a request's server span is made below the router instead (`serverSpan`), so
    // that both ways a request is answered give one span of the same name and attributes, ended
    // where the request is recorded.
    const handleWithApp = yield* NodeHttpServer.makeHandler(tracedApp).pipe(
      Effect.locally(HttpMiddleware.currentTracerDisabledWhen, () => true),
      // Whatever the checks below let through, the platform reads no more than this either.
      HttpIncomingMessage.withMaxBodySize(Option.some(config.maxBodyBytes))
    )
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const runCallback = Runtime.runCallback(runtime)
    // Below the minimum log level an access-log line is dropped anyway, after costing a run of an
    // Effect: about 80 µs a request, as much as the rest of a search (docs/perf-notes/).
    const accessLogOn =
      config.accessLog &&
      LogLevel.greaterThanEqual(LogLevel.Info, yield* FiberRef.get(FiberRef.currentMinimumLogLevel))

    let draining = false
    let inFlight = 0
    const idle = yield* Deferred.make<void>()

    /** The bodies of the answers written here, for the access log: `writeHead`'s list is not read back. */
    const answeredBytes = new WeakMap<ServerResponse, number>()

    /**
     * Writes an answer built here or by `OrderRoute` with the security headers; what says nothing
     * of caching is not to be stored (it is a customer's data, or a refusal).
     */
    const writeAnswer = (res: ServerResponse, answer: Answer) => {
      res.writeHead(
        answer.status,
        answer.headers.includes("cache-control")
          ? [...SECURITY_HEADER_LIST, ...answer.headers]
          : [...SECURITY_HEADER_LIST, "cache-control", "no-store", ...answer.headers]
      )
      res.end(answer.body)
      if (accessLogOn) answeredBytes.set(res, answer.body === undefined ? 0 : Buffer.byteLength(answer.body))
    }

    /**
     * The one place a request is recorded, whichever way it was answered: its status and latency
     * in the metrics, its access-log line, and its end for a drain. A client that went before its
     * answer began is recorded as 499.
     */
    const recorded = (
      req: IncomingMessage,
      res: ServerResponse,
      pathname: string,
      route: string,
      started: number,
      span: Tracer.Span | undefined
    ) => {
      const status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST
      const ms = performance.now() - started
      observeHttpRequest(req.method ?? "", route, status, ms / 1000)
      if (accessLogOn) {
        const line = Effect.logInfo("http request").pipe(
          Effect.annotateLogs({
            method: req.method ?? "",
            path: pathname,
            principal: auth.principalOf(req)?.subject ?? "-",
            status,
            ms: Math.round(ms * 100) / 100,
            // The platform's responses say their length in a header it set; ours are noted above.
            bytes: answeredBytes.get(res) ?? Number(res.getHeader("content-length") ?? 0)
          })
        )
        // Inside the request's span, the line names its trace (`trace_id`, `span_id`).
        runSync(span === undefined ? line : Effect.withParentSpan(line, span))
      }
      if (span !== undefined) {
        // Named here, last: the router names the routes it matches its own way (`/order/:order_uid`).
        span.attribute("http.route", route)
        span.attribute("http.response.status_code", status)
        span.end(clock.unsafeCurrentTimeNanos(), status >= 500 ? Exit.fail(`HTTP ${status}`) : Exit.void)
      }
      inFlight--
      if (draining && inFlight === 0) runSync(Deferred.succeed(idle, undefined))
    }

    /**
     * `GET /order/{uid}`, below the router: the id is judged and a cache hit answered at once; a
     * miss is answered when its batched read returns (`OrderRoute.answerMissed`).
     */
    const serveOrder = (req: IncomingMessage, res: ServerResponse, pathname: string) => {
      const decoded = uidFromPath(pathname.slice(ORDER_PREFIX.length))
      if (Either.isLeft(decoded)) return writeAnswer(res, decoded.left)
      const uid = decoded.right
      const ifNoneMatch = req.headers["if-none-match"]
      const now = route.answerNow(uid, ifNoneMatch)
      if (now !== undefined) return writeAnswer(res, now)
      route.answerMissed(uid, ifNoneMatch, (exit) => {
        if (Exit.isSuccess(exit)) return writeAnswer(res, exit.value)
        runSync(Effect.logError(`GET ${routeOf(pathname)} failed`, exit.cause))
        writeAnswer(res, INTERNAL_ERROR)
      })
    }

    /**
     * The request's server span, a child of the context its `traceparent` carries: only while
     * traces are exported (otherwise `undefined`, and nothing per request is done).
     */
    const serverSpan =
      propagation === undefined
        ? undefined
        : (req: IncomingMessage, pathname: string, route: string): Tracer.Span | undefined => {
            if (UNTRACED.has(route)) return undefined
            const method = req.method ?? ""
            const span = startSpan(tracer, `${method} ${route}`, {
              parent: propagation.extract((name) => {
                const value = req.headers[name]
                return Array.isArray(value) ? value[0] : value
              }),
              start: clock.unsafeCurrentTimeNanos(),
              kind: "server",
              attributes: { "http.request.method": method, "url.path": pathname }
            })
            if (pathname.startsWith(ORDER_PREFIX)) {
              const uid = uidFromPath(pathname.slice(ORDER_PREFIX.length))
              if (Either.isRight(uid)) span.attribute("order_uid", uid.right)
            }
            spanOfRequest.set(req, span)
            return span
          }

    /**
     * `GET /orders/search` below the router, its query decoded as the API decodes it: one Effect
     * per request, the one the `searchOrders` handler answers with (`SearchRoute`). A client that
     * goes before its answer interrupts it, so its read leaves the line of reads. While traces
     * are exported, it runs under the request's server span.
     */
    const serveSearch = (req: IncomingMessage, res: ServerResponse, params: typeof SearchParams.Type) => {
      const span = spanOfRequest.get(req)
      const answer = search.answer(params)
      const cancel = runCallback(span === undefined ? answer : Effect.withParentSpan(answer, span), {
        onExit: (exit) => {
          if (Exit.isSuccess(exit)) return writeAnswer(res, exit.value)
          if (Exit.isInterrupted(exit)) return
          runSync(Effect.logError(`GET ${SEARCH_PATH} failed`, exit.cause))
          writeAnswer(res, INTERNAL_ERROR)
        }
      })
      res.once("close", () => {
        if (!res.writableEnded) cancel()
      })
    }

    /** A request the checks let through, answered one of the two ways (or 503 while draining). */
    const serve = (req: IncomingMessage, res: ServerResponse, pathname: string) => {
      if (draining) return writeAnswer(res, SHUTTING_DOWN)
      if (config.fastPaths && req.method === "GET") {
        if (pathname.startsWith(ORDER_PREFIX)) return serveOrder(req, res, pathname)
        if (pathname === SEARCH_PATH) {
          const params = searchParamsOf(req.url!.slice(pathname.length + 1))
          if (Option.isSome(params)) return serveSearch(req, res, params.value)
        }
      }
      for (const name in SECURITY_HEADERS) res.setHeader(name, SECURITY_HEADERS[name]!)
      // Whatever a handler says of caching wins (the page's files); the rest holds customer data.
      res.setHeader("cache-control", "no-store")
      handleWithApp(req, res)
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

    /** Let through, or answered with the refusal. */
    const decided = (req: IncomingMessage, res: ServerResponse, pathname: string, verdict: Verdict) =>
      verdict._tag === "Allow" ? serve(req, res, pathname) : writeAnswer(res, verdict.answer)

    /** The checks every request passes, then one of the two ways. */
    const respond = (req: IncomingMessage, res: ServerResponse, pathname: string, route: string) => {
      // A body is judged by its headers before anything else is done for the request: its size,
      // and its type where JSON is expected. What is refused is never read (the connection closes).
      const refusal = bodyRefusal(req, route)
      if (refusal !== undefined) {
        res.shouldKeepAlive = false
        return writeAnswer(res, refusal)
      }
      // The one authorization step, for both ways a request is answered. From its caches (and for
      // public routes) it decides at once; a token or session it has not seen lately takes a promise.
      const verdict = auth.check(req, route)
      if (!(verdict instanceof Promise)) return decided(req, res, pathname, verdict)
      verdict.then(
        (v) => decided(req, res, pathname, v),
        (error: unknown) => {
          runSync(Effect.logError("The authorization step failed", error))
          writeAnswer(res, INTERNAL_ERROR)
        }
      )
    }

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
        const span = serverSpan?.(req, pathname, route)
        // In flight until recorded, so that a shutdown waits for it.
        inFlight++
        respond(req, res, pathname, route)
        // Answered at once (a cache hit, a refusal) is recorded at once; the rest once the response
        // is done, or its client has gone. While draining, every answer waits for its connection to
        // close (the 503 says `Connection: close`): the drain must not reset one still flushing.
        if (res.writableEnded && !draining) recorded(req, res, pathname, route, started, span)
        else res.once("close", () => recorded(req, res, pathname, route, started, span))
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
}) {}

/** The server with the platform's router, API middleware and Node context it serves the app with. */
export const layer = HttpAddress.Default.pipe(
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer, NodeHttpServer.layerContext])
)
