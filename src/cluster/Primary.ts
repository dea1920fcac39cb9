/**
 * Every core of one machine: with `http.workers` above 1, this process is the primary. It serves
 * nothing; it starts what the configuration leaves out (the embedded PostgreSQL, a local Kafka
 * broker: once, for all workers), forks the workers with `node:cluster` — each the whole service,
 * on the one port, with its own consumers in the group, cache and pool — and supervises them.
 *
 * - Start-up: worker 1 first, alone, until it is ready: it runs the migrations and creates the
 *   topics, which two processes starting at once on a new database or broker would race for. The
 *   others then start together. A worker that cannot start stops the service (status 1), as a
 *   single process that cannot start does: starting it again would fail again.
 * - A worker that ends unexpectedly once ready (a crash, ingestion stopping by itself) is logged
 *   and started again after 1 s, doubling up to 30 s while it keeps ending; more than 5 times
 *   within a minute and the service stops (status 1), for whatever supervises it to see.
 * - Closing down (SIGINT/SIGTERM): every worker is told at once and drains as a single process
 *   does; the primary exits when all have, with the worst status, then stops the local servers.
 *   No worker outlives the primary: when it exits, whatever ends it, the workers left are killed
 *   (and a worker whose primary has gone exits by itself: Node's cluster does that).
 * - `/metrics`: the worker asked collects every worker's metrics through the primary, which gives
 *   each `COLLECT_TIMEOUT` to answer (Worker.ts combines them).
 *
 * Connections are spread by Node's round-robin: the primary accepts each one and hands it to a
 * worker. `reusePort` (Node 24: a listening socket per worker, the kernel choosing) was measured
 * against it with 2 workers (`npm run bench -- workers`, README "Running more than one"): for
 * keep-alive clients, no gain (round-robin 14,096 req/s, reusePort 10,920; within this machine's
 * noise); for a new connection per request, reusePort 2.2× (3,749 against 1,716), the primary's
 * accepting being the bottleneck. Round-robin stays: clients behind a proxy or load balancer keep
 * their connections; a worker that stops or restarts loses nothing waiting (with reusePort, what
 * waits on its socket is reset); `http.port: 0` gives every worker the same port; and it is the
 * same on Node 20, which has no reusePort.
 */
import cluster, { type Worker } from "node:cluster"
import { Config, Data, Deferred, Duration, Effect, Exit, Option } from "effect"
import { DatabaseConfig, KafkaConfig } from "../config/AppConfig.ts"
import { type FromPrimary, isFromWorker, type MetricsJson, WORKER_ENV } from "./Protocol.ts"

/** The workers could not be kept running: one could not start, or one kept ending. */
export class WorkersFailed extends Data.TaggedError("WorkersFailed")<{ readonly message: string }> {}

/** How long the primary waits for each worker's metrics for a scrape; the late are left out (`workers_missing`). */
export const COLLECT_TIMEOUT = Duration.seconds(2)

/** Restarts of one worker within a minute beyond which the service stops instead. */
const RESTARTS_PER_MINUTE = 5
const FIRST_BACKOFF = Duration.seconds(1)
const MAX_BACKOFF = Duration.seconds(30)

interface Running {
  readonly number: number
  readonly worker: Worker
  /** Its layers are built (it said so). */
  readonly ready: Deferred.Deferred<void>
  /** Its exit status (1 for a signal). */
  readonly exited: Deferred.Deferred<number>
  isReady: boolean
}

/** For what the configuration leaves out, servers on this machine, for all workers: their settings. */
const localServers = Effect.gen(function* () {
  const [database, kafka] = yield* Config.all([DatabaseConfig, KafkaConfig])
  if (Option.isSome(database.url) && Option.isSome(kafka.brokers)) return {}
  // Loaded only to start a server, as the service's own modules are loaded only by workers.
  const Local = yield* Effect.promise(() => import("../local/Local.ts"))
  const [postgres, broker] = yield* Effect.all(
    [
      Option.isSome(database.url) ? Effect.succeed(undefined) : Local.databaseServer,
      Option.isSome(kafka.brokers) ? Effect.succeed(undefined) : Local.kafkaServer
    ],
    { concurrency: "unbounded" }
  )
  return {
    ...(postgres === undefined ? {} : { DATABASE_URL: postgres.url() }),
    ...(broker === undefined ? {} : { KAFKA_BROKERS: broker.bootstrapServers })
  }
})

/**
 * Runs `workers` workers until interrupted (SIGINT/SIGTERM: each drains; the worst status becomes
 * the process's exit code) or until they cannot be kept running (fails with `WorkersFailed`).
 * `env` is what each starts with: the configuration as the primary read it (`CONFIG_FILE`, the
 * sign-in of `--auth`), to which the local servers' addresses are added.
 */
export const run = (options: { readonly workers: number; readonly env: NodeJS.ProcessEnv }) =>
  Effect.scoped(
    Effect.gen(function* () {
      const env = { ...options.env, ...(yield* localServers) }
      // Structured clone rather than JSON: metrics hold NaN and Infinity.
      cluster.setupPrimary({ serialization: "advanced" })

      const live = new Map<number, Running>()
      let restarts = 0

      const send = (r: Running, message: FromPrimary) => {
        // A worker that has just gone: the message is dropped (a scrape counts it missing).
        if (r.worker.isConnected()) r.worker.send(message, undefined, () => undefined)
      }

      // No worker outlives the primary, whatever ends it (its shutdown deadline included).
      const killLeft = () => {
        for (const r of live.values()) r.worker.process.kill("SIGKILL")
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => process.on("exit", killLeft)),
        () => Effect.sync(() => process.off("exit", killLeft))
      )

      // A scrape: every ready worker is asked for its metrics; what came within COLLECT_TIMEOUT goes back.
      let lastCollection = 0
      const collections = new Map<number, (metrics: MetricsJson) => void>()
      const collectFor = (asking: Running, id: number) => {
        const asked = [...live.values()].filter((r) => r.isReady)
        const collection = ++lastCollection
        const metrics: Array<MetricsJson> = []
        const answer = () => {
          if (!collections.delete(collection)) return
          clearTimeout(timer)
          send(asking, { type: "order-service:scraped", id, metrics, workers: options.workers, restarts })
        }
        const timer = setTimeout(answer, Duration.toMillis(COLLECT_TIMEOUT))
        collections.set(collection, (m) => {
          metrics.push(m)
          if (metrics.length === asked.length) answer()
        })
        for (const r of asked) send(r, { type: "order-service:collect", id: collection })
      }

      /** Worker `number`, forked; closing the scope stops it (and waits until it has exited). */
      const fork = (number: number) =>
        Effect.acquireRelease(
          Effect.gen(function* () {
            const r: Running = {
              number,
              worker: cluster.fork({ ...env, [WORKER_ENV]: String(number) }),
              ready: yield* Deferred.make<void>(),
              exited: yield* Deferred.make<number>(),
              isReady: false
            }
            live.set(number, r)
            r.worker.on("message", (message: unknown) => {
              if (!isFromWorker(message)) return
              if (message.type === "order-service:ready") {
                r.isReady = true
                Deferred.unsafeDone(r.ready, Exit.void)
              } else if (message.type === "order-service:scrape") collectFor(r, message.id)
              else collections.get(message.id)?.(message.metrics)
            })
            r.worker.on("exit", (code: number | null) => {
              r.isReady = false
              if (live.get(number) === r) live.delete(number)
              Deferred.unsafeDone(r.exited, Exit.succeed(code ?? 1))
            })
            yield* Effect.logInfo(`Worker ${number} started`).pipe(
              Effect.annotateLogs({ pid: r.worker.process.pid })
            )
            return r
          }),
          (r) =>
            Effect.gen(function* () {
              if (yield* Deferred.isDone(r.exited)) return // it ended by itself
              // A ready worker is told over IPC: one that a Ctrl-C on the terminal has reached
              // already is closing down, and takes no second signal for a repeated Ctrl-C. One still
              // starting may not listen yet: it gets SIGTERM.
              if (r.isReady) send(r, { type: "order-service:stop" })
              else r.worker.process.kill("SIGTERM")
              const status = yield* Deferred.await(r.exited)
              if (status > Number(process.exitCode ?? 0)) process.exitCode = status
              yield* Effect.logInfo(`Worker ${number} stopped`).pipe(Effect.annotateLogs({ status }))
            })
        )

      /** Worker `number`, kept running: started again when it ends, within the bounds above. */
      const keep = (number: number, started: Deferred.Deferred<void>) =>
        Effect.gen(function* () {
          const endings: Array<number> = []
          for (;;) {
            const { pid, status } = yield* Effect.scoped(
              Effect.gen(function* () {
                const r = yield* fork(number)
                const ready = yield* Effect.raceFirst(
                  Effect.as(Deferred.await(r.ready), true),
                  Effect.as(Deferred.await(r.exited), false)
                )
                if (ready) {
                  yield* Effect.logInfo(`Worker ${number} ready`)
                  yield* Deferred.succeed(started, undefined)
                }
                return { pid: r.worker.process.pid, status: yield* Deferred.await(r.exited) }
              })
            )
            if (!(yield* Deferred.isDone(started)))
              return yield* new WorkersFailed({
                message: `worker ${number} could not start (status ${status}); its log above says why`
              })
            const now = Date.now()
            endings.push(now)
            while (endings[0]! < now - 60_000) endings.shift()
            if (endings.length > RESTARTS_PER_MINUTE)
              return yield* new WorkersFailed({
                message: `worker ${number} ended ${endings.length} times within a minute (last status ${status}); stopping`
              })
            const backoff = Duration.min(
              MAX_BACKOFF,
              Duration.times(FIRST_BACKOFF, 2 ** (endings.length - 1))
            )
            yield* Effect.logError(`Worker ${number} ended unexpectedly; starting it again`).pipe(
              Effect.annotateLogs({ pid, status, restart_in: Duration.format(backoff) })
            )
            yield* Effect.sleep(backoff)
            restarts++
          }
        })

      const numbers = Array.from({ length: options.workers }, (_, i) => i + 1)
      const started = yield* Effect.forEach(numbers, () => Deferred.make<void>())
      const first = started[0]!
      yield* Effect.all(
        [
          // Worker 1 alone first (migrations, topics), then the rest together.
          Effect.forEach(
            numbers,
            (n) =>
              n === 1 ? keep(1, first) : Effect.zipRight(Deferred.await(first), keep(n, started[n - 1]!)),
            { concurrency: "unbounded", discard: true }
          ),
          Effect.zipRight(
            Effect.forEach(started, Deferred.await, { discard: true }),
            Effect.logInfo("Order service ready: every worker serves").pipe(
              Effect.annotateLogs({ workers: options.workers })
            )
          )
        ],
        { concurrency: "unbounded", discard: true }
      )
    })
  )
