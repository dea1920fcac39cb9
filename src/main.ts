/**
 * Start the order service: configuration, then the layers. SIGINT/SIGTERM close them in reverse
 * order: ingestion stops fetching and commits its batch in flight, HTTP drains, then the Kafka
 * clients, the pool, and whatever local servers were started. If ingestion stops by itself (kafkajs
 * gives up), the layers close the same way and the process exits with status 1.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Duration, Effect, Exit, Layer } from "effect"
import * as App from "./App.ts"
import * as AppConfig from "./config/AppConfig.ts"
import * as Logging from "./observability/Logging.ts"

const main = Effect.gen(function* () {
  const env = { ...process.env }
  if (process.argv.includes("--local") && env["CONFIG_FILE"] === undefined)
    env["CONFIG_FILE"] = "config/config.local.yaml"
  // `--auth`: sign-in on this machine, through an OpenID provider started here for the service's life.
  if (process.argv.includes("--auth")) Object.assign(env, yield* localSignIn)
  const configLayer = yield* Effect.try({
    try: () => AppConfig.layerFromFileAndEnv(env),
    catch: (e) =>
      e instanceof AppConfig.ConfigFileError ? e : new AppConfig.ConfigFileError({ message: String(e) })
  })
  const config = yield* AppConfig.validate.pipe(Effect.provide(configLayer))
  const logging = Logging.layer(config.log)
  yield* Effect.logInfo("Starting the order service").pipe(
    Effect.annotateLogs({ config: AppConfig.describeForLog(config) }),
    Effect.provide(logging)
  )
  // The demo's fake-data generator is loaded only when asked for: it costs memory and start-up time.
  const app = process.argv.includes("--demo")
    ? App.layer((yield* Effect.promise(() => import("./tools/DemoOrders.ts"))).DemoOrders(200))
    : App.layer()
  shutdownLimit = Duration.sum(config.http.shutdownTimeout, SHUTDOWN_GRACE)
  return yield* App.launch(
    app,
    Effect.sync(() => armShutdownDeadline())
  ).pipe(
    Effect.onInterrupt(() => Effect.logInfo("Order service stopped")),
    Effect.provide(Layer.merge(configLayer, logging))
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
      `order-service: closing down took longer than ${Duration.format(limit)}; exiting without waiting further\n`
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
  process.stderr.write(`order-service: ${signal} again while closing down; exiting now\n`)
  process.exit(1)
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)

NodeRuntime.runMain(
  Effect.scoped(main).pipe(
    // Expected start-up failures get one clear line, not a stack trace.
    Effect.catchAll((error) =>
      Effect.sync(() => {
        process.stderr.write(`order-service: ${error.message}\n`)
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
