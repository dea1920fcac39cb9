/**
 * Start the order service: configuration, then the layers. SIGINT/SIGTERM close them in reverse
 * order: ingestion stops fetching and commits its batch in flight, HTTP drains, then the Kafka
 * clients, the pool, and whatever local servers were started. If ingestion stops by itself (kafkajs
 * gives up), the layers close the same way and the process exits with status 1.
 *
 * With `http.workers` above 1 this process is the primary of that many workers, each of which runs
 * this file as the whole service (src/cluster/).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Duration, Effect, Exit, Layer } from "effect"
import * as Primary from "./cluster/Primary.ts"
import * as Worker from "./cluster/Worker.ts"
import * as AppConfig from "./config/AppConfig.ts"
import * as Logging from "./observability/Logging.ts"
import * as Tracing from "./observability/Tracing.ts"

/** This process's number when it is one of several workers (src/cluster/); `undefined` otherwise. */
const worker = Worker.workerNumber
/** How this process names itself in the lines it writes outside the log. */
const self = worker === undefined ? "order-service" : `order-service (worker ${worker})`

const main = Effect.gen(function* () {
  const env = { ...process.env }
  if (process.argv.includes("--local") && env["CONFIG_FILE"] === undefined)
    env["CONFIG_FILE"] = "config/config.local.yaml"
  // `--auth`: sign-in on this machine, through an OpenID provider started here for the service's life
  // (a worker is given its primary's).
  if (process.argv.includes("--auth") && worker === undefined) Object.assign(env, yield* localSignIn)
  const configLayer = yield* Effect.try({
    try: () => AppConfig.layerFromFileAndEnv(env),
    catch: (e) =>
      e instanceof AppConfig.ConfigFileError ? e : new AppConfig.ConfigFileError({ message: String(e) })
  })
  const config = yield* AppConfig.validate.pipe(Effect.provide(configLayer))
  const logging = Logging.layer({ ...config.log, worker })
  // Traces, configured the standard way (OTEL_* variables); off without an endpoint.
  const tracing = Tracing.optionsFromEnv("order-service", env)
  yield* Effect.logInfo("Starting the order service").pipe(
    Effect.annotateLogs({
      config: AppConfig.describeForLog(config),
      tracing: Tracing.describeForLog(tracing)
    }),
    Effect.provide(logging)
  )
  if (worker === undefined && config.http.workers > 1) {
    // The primary outlasts its workers' own deadlines, so that each can exit by its own.
    shutdownLimit = Duration.sum(
      config.http.shutdownTimeout,
      Duration.sum(SHUTDOWN_GRACE, Duration.seconds(10))
    )
    return yield* Primary.run({ workers: config.http.workers, env }).pipe(
      Effect.onInterrupt(() => Effect.logInfo("Order service stopped")),
      Effect.provide(Layer.merge(configLayer, logging))
    )
  }
  // Loaded here, not by the primary of several workers, which serves nothing (its RSS, measured:
  // 108 MB with the service's modules, 75–100 MB without).
  const App = yield* Effect.promise(() => import("./App.ts"))
  // The demo's fake-data generator is loaded only when asked for: it costs memory and start-up time.
  // Of several workers, the first sends the demo's orders.
  const app =
    process.argv.includes("--demo") && (worker === undefined || worker === 1)
      ? App.layer((yield* Effect.promise(() => import("./tools/DemoOrders.ts"))).DemoOrders(200))
      : App.layer()
  shutdownLimit = Duration.sum(config.http.shutdownTimeout, SHUTDOWN_GRACE)
  return yield* App.launch(
    // A worker also tells its primary when it is ready, and serves every worker's /metrics.
    worker === undefined ? app : Worker.layer.pipe(Layer.provideMerge(app)),
    Effect.sync(() => armShutdownDeadline())
  ).pipe(
    Effect.onInterrupt(() => Effect.logInfo("Order service stopped")),
    // Outermost, so that it closes last: the spans of closing down are sent too.
    Effect.provide(
      Layer.mergeAll(configLayer, logging, tracing === undefined ? Layer.empty : Tracing.layer(tracing))
    )
  )
})

/**
 * Starts the local OpenID provider (src/local/LocalOidc.ts) and says how to use it; the settings
 * that point the service at it. It stops when the service has.
 */
const localSignIn = Effect.gen(function* () {
  const LocalOidc = yield* Effect.promise(() => import("./local/LocalOidc.ts"))
  const provider = yield* LocalOidc.make()
  process.stderr.write(
    [
      `order-service: sign-in through a local OpenID provider at ${provider.issuer} (a demo: in-memory, fixed passwords)`,
      `  people: ${provider.users.map((u) => `${u.username} / ${u.password} (${u.roles.join(", ")})`).join("; ")}`,
      `  npm run dlq: ORDER_SERVICE_OIDC_ISSUER=${provider.issuer} ORDER_SERVICE_CLIENT_ID=${provider.cliClient.id} ORDER_SERVICE_CLIENT_SECRET=${provider.cliClient.secret}`,
      ""
    ].join("\n")
  )
  return {
    AUTH_MODE: "required",
    AUTH_OIDC_ISSUER: provider.issuer,
    AUTH_OIDC_CLIENT_ID: provider.webClient.id,
    AUTH_OIDC_CLIENT_SECRET: provider.webClient.secret,
    AUTH_OIDC_AUDIENCE: provider.audience,
    AUTH_OIDC_ROLES_CLAIM: "roles"
  }
})

/**
 * Past `http.shutdown_timeout`, closing gets this much longer (ingestion's batch in flight, Kafka
 * and PostgreSQL clients, local servers: each has its own, shorter, limit) before the process exits
 * regardless.
 */
const SHUTDOWN_GRACE = Duration.seconds(30)

/** How long closing down may take: `http.shutdown_timeout` (its default until it is read) + grace. */
let shutdownLimit = Duration.sum(Duration.seconds(10), SHUTDOWN_GRACE)
let deadlineArmed = false

/**
 * Whatever closing waits on — a broker that stopped answering, a finalizer that hangs — the process
 * ends by `shutdownLimit` after closing began, exiting 1 with one line saying so. Armed by the
 * first signal itself, and when ingestion stops by itself: a signal may come while the layers are
 * still being built, before the service's own closing has anything to arm it from. The timer does
 * not itself keep the process alive.
 */
const armShutdownDeadline = () => {
  if (deadlineArmed) return
  deadlineArmed = true
  const limit = shutdownLimit
  setTimeout(() => {
    process.stderr.write(
      `${self}: closing down took longer than ${Duration.format(limit)}; exiting without waiting further\n`
    )
    process.exit(1)
  }, Duration.toMillis(limit)).unref()
}

/**
 * A repeated signal ends the process at once — but not one that arrives within a second of the
 * first: a single Ctrl-C can reach the service twice (from the terminal and from npm forwarding
 * it), and must still close down gracefully. Effect's runtime handles the first signal and then
 * stops listening; this listener outlives it so that Node never kills the process unasked.
 */
const REPEAT_SIGNAL_GRACE_MS = 1_000
let firstSignalAt: number | undefined
const onSignal = (signal: NodeJS.Signals) => {
  const now = Date.now()
  if (firstSignalAt === undefined) {
    firstSignalAt = now
    armShutdownDeadline()
    return
  }
  if (now - firstSignalAt < REPEAT_SIGNAL_GRACE_MS) return
  process.stderr.write(`${self}: ${signal} again while closing down; exiting now\n`)
  process.exit(1)
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)
// A worker closes down when its primary says so, as on a first signal; one that a Ctrl-C on the
// terminal reached already is closing down, and this is not a second one.
if (worker !== undefined)
  Worker.onStopRequest(() => {
    if (firstSignalAt === undefined) process.kill(process.pid, "SIGTERM")
  })

NodeRuntime.runMain(
  Effect.scoped(main).pipe(
    // Expected start-up failures get one clear line, not a stack trace.
    Effect.catchAll((error) =>
      Effect.sync(() => {
        process.stderr.write(`${self}: ${error.message}\n`)
        process.exitCode = 1
      })
    )
  ),
  {
    // Our own logger (JSON lines or pretty, by config) replaces the default one.
    disablePrettyLogger: true,
    // Exit once the service has closed down, with its status, rather than when nothing is left on
    // the event loop: a client library's stray timer or socket must not keep a stopped process alive.
    teardown: (exit, onExit) => {
      const code =
        Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : Number(process.exitCode ?? 0)
      onExit(code)
      process.exit(code)
    }
  }
)
