/**
 * `npm run dlq -- replay [options]`: sends parked messages back through ingestion, by asking the
 * running service (`POST /dead-letters/replay`, a page at a time). The service holds the index to
 * select from and the Kafka connection to send with; this tool holds the token and shows progress.
 */
import { NodeRuntime } from "@effect/platform-node"
import { SingleBar } from "cli-progress"
import { Cause, Console, Data, Duration, Effect, Exit, Option, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { pathToFileURL } from "node:url"
import { RejectionKinds } from "../orders/Rejection.ts"
import { parseCommandLine, UsageError } from "./CommandLine.ts"

export const USAGE = `Usage: npm run dlq -- replay [options]

Sends parked messages back to the orders topic, through the running service
(POST /dead-letters/replay): each selected letter's original key, bytes and headers, with
replay.of (the letter's topic/partition/offset) and replay.at. The letters stay on the
dead-letter topic. Each letter is replayed once: a second run leaves out letters already
sent back (--include-replayed takes them), and two runs at once never send the same one.
Safe to repeat: an order is stored once; one still invalid is parked again, naming its
previous letter. Each page is asked for with an Idempotency-Key, and asked again with the
same key if the service could not be reached or was busy: a page is never sent twice.

Replay needs the operator role. Unless the service runs open (auth.mode: none, as under
npm start), give this command credentials in the environment, either
  ORDER_SERVICE_TOKEN      an API key of the service (auth.api_keys) or an access token of its
                           OpenID provider, sent as Authorization: Bearer, or
  ORDER_SERVICE_OIDC_ISSUER, ORDER_SERVICE_CLIENT_ID, ORDER_SERVICE_CLIENT_SECRET
                           a client of the provider allowed the client-credentials grant: the
                           command asks the provider for an access token itself.

Options:
  --url URL               the service (default: $ORDER_SERVICE_URL, else http://localhost:8081)
  --kind K                only letters of this kind: ${RejectionKinds.join(", ")}
  --since T               letters parked at or after T: ISO 8601 (2026-11-30T08:00:00Z) or a
                          time ago (90s, 30m, 2h, 7d)
  --until T               letters parked before T (default: now, so that letters parked while
                          this runs — replayed ones parked again among them — are left out)
  --partition P --offset O
                          the one letter at this place on the dead-letter topic
  --include-replayed      take letters replayed before as well (by default a letter the
                          service has sent back once is left out; --partition/--offset
                          always takes its letter)
  --dry-run               list what would be sent; send nothing
  --batch-size N          letters per request, 1..1000 (default: 500)
  -h, --help              show this text

Examples:
  npm run dlq -- replay --kind conflict --since 2h --dry-run
  ORDER_SERVICE_TOKEN=… npm run dlq -- replay --kind schema --since 2026-11-30T08:00:00Z
  ORDER_SERVICE_TOKEN=… npm run dlq -- replay --partition 1 --offset 42

Exit status: 0 when every selected letter was sent (or listed, with --dry-run); 1 on an error
or when the broker refused some; 2 on a usage error.`

class ServiceError extends Data.TaggedError("ServiceError")<{ readonly message: string }> {}

export interface ReplayOptions {
  readonly url: string
  readonly selection: Record<string, string | number>
  readonly dryRun: boolean
  readonly includeReplayed: boolean
  readonly batchSize: number
  readonly help: boolean
}

const AGO = /^(\d+)(s|m|h|d)$/
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/** An ISO 8601 time or a time ago (`30m`), as an ISO 8601 instant; undefined if it is neither. */
export const parseTime = (raw: string, now: Date): string | undefined => {
  const ago = AGO.exec(raw.trim())
  if (ago !== null)
    return new Date(now.getTime() - Number(ago[1]) * UNIT_MS[ago[2] as keyof typeof UNIT_MS]).toISOString()
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw)) return undefined
  const date = new Date(raw)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

export const parseOptions = (
  argv: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv = process.env,
  now: Date = new Date()
): Effect.Effect<ReplayOptions, UsageError> =>
  Effect.gen(function* () {
    const parsed = yield* parseCommandLine(argv, {
      url: { type: "string" },
      kind: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      partition: { type: "string" },
      offset: { type: "string" },
      "dry-run": { type: "boolean" },
      "include-replayed": { type: "boolean" },
      "batch-size": { type: "string" },
      help: { type: "boolean", short: "h" }
    })
    const v = parsed.values
    const usage = (message: string) => Effect.fail(new UsageError({ message }))
    const help = v.help ?? false
    if (!help && parsed.positionals[0] !== "replay")
      return yield* usage(
        parsed.positionals.length === 0
          ? "say what to do: replay"
          : `unknown command ${parsed.positionals[0]}`
      )
    if (parsed.positionals.length > 1)
      return yield* usage(`unexpected ${parsed.positionals.slice(1).join(" ")}`)
    const selection: Record<string, string | number> = {}
    if (v.kind !== undefined) {
      if (!(RejectionKinds as ReadonlyArray<string>).includes(v.kind))
        return yield* usage(`--kind must be one of ${RejectionKinds.join(", ")}`)
      selection["kind"] = v.kind
    }
    for (const name of ["since", "until"] as const) {
      const raw = v[name]
      if (raw === undefined) continue
      const time = parseTime(raw, now)
      if (time === undefined)
        return yield* usage(
          `--${name} must be an ISO 8601 time or a time ago such as 30m, got ${JSON.stringify(raw)}`
        )
      selection[name] = time
    }
    if ((v.partition === undefined) !== (v.offset === undefined))
      return yield* usage("--partition and --offset go together: they name one letter")
    if (v.partition !== undefined && v.offset !== undefined) {
      if (Object.keys(selection).length > 0)
        return yield* usage("a letter named by --partition and --offset takes no --kind, --since or --until")
      if (!/^\d{1,9}$/.test(v.partition) || !/^\d{1,19}$/.test(v.offset))
        return yield* usage("--partition and --offset are whole numbers ≥ 0")
      selection["partition"] = Number(v.partition)
      selection["offset"] = v.offset
    } else if (selection["until"] === undefined) {
      selection["until"] = now.toISOString()
    }
    const batchSize = v["batch-size"] === undefined ? 500 : Number(v["batch-size"])
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1000)
      return yield* usage("--batch-size must be a whole number from 1 to 1000")
    const url = (v.url ?? env["ORDER_SERVICE_URL"] ?? "http://localhost:8081").replace(/\/+$/, "")
    if (!/^https?:\/\/[^/]+/.test(url))
      return yield* usage(`--url must be an http(s) URL, got ${JSON.stringify(url)}`)
    return {
      url,
      selection,
      dryRun: v["dry-run"] ?? false,
      includeReplayed: v["include-replayed"] ?? false,
      batchSize,
      help
    }
  })

interface ReplayedLetter {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly key: { readonly encoding: string; readonly data: string } | null
  readonly outcome: "sent" | "failed" | "dry_run"
}

interface ReplayPage {
  /** On the first page only. */
  readonly selected: number | null
  /** On the first page only: letters of the selection sent back before. */
  readonly already_replayed?: number | null
  readonly letters: ReadonlyArray<ReplayedLetter>
  readonly next_cursor: string | null
}

const REQUEST_TIMEOUT = Duration.minutes(2)

/** A page asked for again after an answer that says nothing was done, or none: at most this often. */
const ATTEMPTS = 5

/** Nothing was done, or it is not known: the same request (with its Idempotency-Key) may be sent again. */
class Retryable extends Data.TaggedError("Retryable")<{ readonly message: string }> {}

const requestPage = (
  options: ReplayOptions,
  token: string | undefined,
  cursor: string | null,
  idempotencyKey: string
) =>
  Effect.gen(function* () {
    const response = yield* Effect.tryPromise({
      try: (signal) =>
        fetch(`${options.url}/dead-letters/replay`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json",
            "idempotency-key": idempotencyKey,
            ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
          },
          body: JSON.stringify({
            ...options.selection,
            dry_run: options.dryRun,
            ...(options.includeReplayed ? { include_replayed: true } : {}),
            limit: options.batchSize,
            ...(cursor === null ? {} : { cursor })
          }),
          signal
        }),
      catch: (e) =>
        new Retryable({
          message: `cannot reach the service at ${options.url}: ${(e as Error).message} — is it running? (--url)`
        })
    }).pipe(
      Effect.timeoutFail({
        duration: REQUEST_TIMEOUT,
        onTimeout: () => new Retryable({ message: `the service at ${options.url} did not answer in time` })
      })
    )
    const body = (yield* Effect.promise(() => response.json().catch(() => undefined))) as
      (Partial<ReplayPage> & { message?: string }) | undefined
    if (response.ok && body !== undefined) return body as ReplayPage
    const said = typeof body?.message === "string" ? `: ${body.message}` : ""
    // Busy, not connected to Kafka yet, or the same page still running: ask again, same key.
    if (response.status === 503 || response.status === 409)
      return yield* new Retryable({ message: `the service answered HTTP ${response.status}${said}` })
    return yield* new ServiceError({
      message:
        response.status === 422
          ? `the service refused the page's Idempotency-Key${said}`
          : response.status === 401
            ? `the service wants credentials${said}. Set ORDER_SERVICE_TOKEN (an API key or access token), or the client credentials (see --help).`
            : response.status === 403
              ? `the service refused${said}. Replay needs the operator role.`
              : `the service answered HTTP ${response.status}${said}`
    })
  }).pipe(
    Effect.retry({
      while: (e) => e._tag === "Retryable",
      times: ATTEMPTS - 1,
      schedule: Schedule.exponential("1 second")
    }),
    Effect.catchTag("Retryable", (e) => Effect.fail(new ServiceError({ message: e.message })))
  )

const progressBar = (total: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      if (!process.stdout.isTTY || total === 0) return undefined
      const bar = new SingleBar({
        format: "{bar} {percentage}% | {value}/{total} letters | ETA {eta_formatted}",
        stream: process.stdout,
        hideCursor: true,
        clearOnComplete: true
      })
      bar.start(total, 0)
      return bar
    }),
    (bar) => Effect.sync(() => bar?.stop())
  )

const keyText = (key: ReplayedLetter["key"]) =>
  key === null ? "(no key)" : key.encoding === "utf8" ? JSON.stringify(key.data) : `base64:${key.data}`

/** Lines printed for the letters: every one up to this many, then a count of the rest. */
const MAX_LISTED = 200

/** Runs the replay page by page; the letters it sent (or would send), and how many were selected. */
export const replay = (options: ReplayOptions, token: string | undefined) =>
  Effect.scoped(
    Effect.gen(function* () {
      // One key per page: the run's, random, and the page's number.
      const run = randomUUID()
      let pages = 0
      const ask = (cursor: string | null) => requestPage(options, token, cursor, `dlq-${run}-${++pages}`)
      const first = yield* ask(null)
      const letters: Array<ReplayedLetter> = [...first.letters]
      const selected = first.selected ?? first.letters.length
      const alreadyReplayed = first.already_replayed ?? 0
      const bar = yield* progressBar(selected)
      let cursor = first.next_cursor
      bar?.update(letters.length)
      while (cursor !== null) {
        const page = yield* ask(cursor)
        letters.push(...page.letters)
        cursor = page.next_cursor
        bar?.update(letters.length)
      }
      return { selected, alreadyReplayed, letters }
    })
  )

export const formatReport = (
  result: { selected: number; alreadyReplayed?: number; letters: ReadonlyArray<ReplayedLetter> },
  dryRun: boolean,
  includeReplayed = false
) => {
  const lines = result.letters
    .slice(0, MAX_LISTED)
    .map(
      (l) =>
        `${l.outcome === "failed" ? "refused" : dryRun ? "would send" : "sent"}  ${l.partition}/${l.offset}  ${l.kind}  ${keyText(l.key)}`
    )
  if (result.letters.length > MAX_LISTED) lines.push(`… and ${result.letters.length - MAX_LISTED} more`)
  const byKind = new Map<string, number>()
  for (const l of result.letters)
    if (l.outcome !== "failed") byKind.set(l.kind, (byKind.get(l.kind) ?? 0) + 1)
  const kinds = [...byKind].map(([k, n]) => `${k} ${n}`).join(", ")
  const refused = result.letters.filter((l) => l.outcome === "failed").length
  const done = result.letters.length - refused
  lines.push(
    dryRun
      ? `would send ${done} of ${result.selected} selected letters${kinds ? ` (${kinds})` : ""}; nothing sent (--dry-run)`
      : `sent ${done} of ${result.selected} selected letters to the orders topic${kinds ? ` (${kinds})` : ""}`
  )
  if (refused > 0) lines.push(`refused ${refused} by the broker (see the service's log)`)
  if (!includeReplayed && (result.alreadyReplayed ?? 0) > 0)
    lines.push(`left out ${result.alreadyReplayed} replayed before (--include-replayed takes them)`)
  return { text: lines.join("\n"), refused }
}

const nonEmpty = (env: NodeJS.ProcessEnv, name: string) =>
  Option.filter(Option.fromNullable(env[name]), (v) => v.trim() !== "")

/**
 * What to send as `Authorization: Bearer`: `ORDER_SERVICE_TOKEN` (or, from earlier versions,
 * `DEAD_LETTERS_REPLAY_TOKEN`), else an access token the provider grants the client named in the
 * environment, else nothing (a service running open).
 */
export const bearerToken = (env: NodeJS.ProcessEnv) =>
  Effect.gen(function* () {
    const given = Option.orElse(nonEmpty(env, "ORDER_SERVICE_TOKEN"), () =>
      nonEmpty(env, "DEAD_LETTERS_REPLAY_TOKEN")
    )
    if (Option.isSome(given)) return given.value
    const issuer = nonEmpty(env, "ORDER_SERVICE_OIDC_ISSUER")
    if (Option.isNone(issuer)) return undefined
    const id = nonEmpty(env, "ORDER_SERVICE_CLIENT_ID")
    const secret = nonEmpty(env, "ORDER_SERVICE_CLIENT_SECRET")
    if (Option.isNone(id) || Option.isNone(secret))
      return yield* new ServiceError({
        message:
          "ORDER_SERVICE_OIDC_ISSUER is set: ORDER_SERVICE_CLIENT_ID and ORDER_SERVICE_CLIENT_SECRET are needed too"
      })
    const url = new URL(issuer.value)
    return yield* Effect.tryPromise({
      try: async () => {
        const [{ discover }, { clientCredentialsGrant }] = await Promise.all([
          import("../auth/Discovery.ts"),
          import("openid-client")
        ])
        return (await clientCredentialsGrant(await discover(url, id.value, secret.value))).access_token
      },
      catch: (e) =>
        new ServiceError({
          message: `the OpenID provider at ${url.href} gave no access token: ${e instanceof Error ? e.message : String(e)}`
        })
    })
  })

let failureStatus = 0

const main = Effect.gen(function* () {
  const options = yield* parseOptions(process.argv.slice(2))
  if (options.help) return yield* Console.log(USAGE)
  const token = yield* bearerToken(process.env)
  const result = yield* replay(options, token)
  const report = formatReport(result, options.dryRun, options.includeReplayed)
  yield* Console.log(report.text)
  if (report.refused > 0) failureStatus = 1
})

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(
    main.pipe(
      Effect.catchAll((e) =>
        Effect.zipRight(
          Console.error(e._tag === "UsageError" ? `dlq: ${e.message}\nSee --help.` : `dlq: ${e.message}`),
          Effect.sync(() => {
            failureStatus = e._tag === "UsageError" ? 2 : 1
          })
        )
      )
    ),
    {
      teardown: (exit: Exit.Exit<unknown, unknown>, onExit) =>
        onExit(Exit.isSuccess(exit) ? failureStatus : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
    }
  )
}
