/**
 * Handlers of `/dead-letters`: the listing (or, for a browser asking for HTML, the page that shows
 * it), one letter, and replay.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Either, Option, Schema } from "effect"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Auth } from "../auth/Auth.ts"
import { ClientReads } from "../db/ClientReads.ts"
import {
  DeadLetterIndex,
  encodeBytes,
  isOffset,
  type InvalidLetterCursor,
  type LetterFilter,
  type Selection
} from "../deadletters/DeadLetterIndex.ts"
import {
  DeadLetterReplay,
  type ReplayResult,
  type ReplayUnavailable
} from "../deadletters/DeadLetterReplay.ts"
import { MAX_IDEMPOTENCY_KEY_LENGTH } from "../deadletters/ReplayRequests.ts"
import { RejectionKinds } from "../orders/Rejection.ts"
import {
  DeadLetterNotFound,
  DeadLetterPage,
  IdempotencyKeyInUse,
  IdempotencyKeyReused,
  InvalidQuery,
  OrderServiceApi,
  Unavailable,
  type ReplayRequest,
  type ReplayResponse
} from "./Api.ts"
import { answerReadFailures, databaseUnreachable } from "./ReadFailures.ts"
import { serveStaticFile, StaticFiles } from "./StaticFiles.ts"

const invalid = (message: string) => new InvalidQuery({ error: "invalid_query", message })

const time = (name: string, given: string | undefined): Either.Either<Date | undefined, InvalidQuery> => {
  if (given === undefined || given === "") return Either.right(undefined)
  // A `+` left unencoded in a query string arrives as a space.
  const raw = given.replace(/ (\d{2}:?\d{2})$/, "+$1")
  const date = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw)
    ? new Date(raw)
    : new Date(Number.NaN)
  return Number.isNaN(date.getTime())
    ? Either.left(invalid(`${name} must be an ISO 8601 time, such as 2026-11-30T08:00:00Z`))
    : Either.right(date)
}

const kind = (raw: string | undefined): Either.Either<string | undefined, InvalidQuery> =>
  raw === undefined || raw === "" || (RejectionKinds as ReadonlyArray<string>).includes(raw)
    ? Either.right(raw === "" ? undefined : raw)
    : Either.left(invalid(`kind must be one of ${RejectionKinds.join(", ")}`))

const filterOf = (params: {
  kind?: string | undefined
  since?: string | undefined
  until?: string | undefined
}) =>
  Effect.gen(function* () {
    const filter: LetterFilter = {
      kind: yield* kind(params.kind),
      since: yield* time("since", params.since),
      until: yield* time("until", params.until)
    }
    return filter
  })

const PARTITION = /^\d{1,9}$/

const selectionOf = (request: typeof ReplayRequest.Type): Effect.Effect<Selection, InvalidQuery> => {
  const { partition, offset } = request
  if (partition === undefined && offset === undefined)
    return Effect.map(filterOf(request), (filter) => ({ _tag: "Filter", ...filter }))
  if (partition === undefined || offset === undefined)
    return Effect.fail(invalid("partition and offset go together: they name one letter"))
  if (request.kind !== undefined || request.since !== undefined || request.until !== undefined)
    return Effect.fail(invalid("a letter named by partition and offset takes no kind, since or until"))
  if (!isOffset(offset)) return Effect.fail(invalid("offset is beyond any a Kafka log can have"))
  return Effect.succeed({ _tag: "One", partition, offset })
}

/** A browser navigating asks for HTML; the page's own requests and API clients ask for JSON. */
const wantsHtml = (accept: string | undefined) => accept !== undefined && accept.includes("text/html")

/** The page and the listing share a URL: caches must keep them apart. */
const VARY = { vary: "accept" }

const encodePage = Schema.encodeSync(DeadLetterPage)

export const layer = HttpApiBuilder.group(OrderServiceApi, "deadLetters", (handlers) =>
  Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const reads = yield* ClientReads
    const replay = yield* DeadLetterReplay
    const auth = yield* Auth
    const page = Option.fromNullable((yield* StaticFiles).routes.get("/dead-letters.html"))
    const servePage = Option.map(page, (file) =>
      serveStaticFile({ ...file, headers: { ...file.headers, ...VARY } })
    )

    return handlers
      .handle("listDeadLetters", ({ urlParams }) =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          if (Option.isSome(servePage) && wantsHtml(request.headers["accept"])) return yield* servePage.value
          const filter = yield* filterOf(urlParams)
          const limit = urlParams.limit === undefined ? 50 : Number(urlParams.limit)
          if (!Number.isInteger(limit) || limit < 1 || limit > 200)
            return yield* invalid("limit must be a whole number from 1 to 200")
          const [letters, counted] = yield* Effect.all(
            [
              reads.run(index.list(filter, limit, Option.fromNullable(urlParams.cursor))),
              reads.run(index.counts({ since: filter.since, until: filter.until }))
            ],
            { concurrency: 2 }
          ).pipe(Effect.catchTag("InvalidLetterCursor", (e) => Effect.fail(invalid(e.message))))
          return HttpServerResponse.unsafeJson(
            encodePage({
              items: letters.items,
              counts: counted.counts,
              counts_capped: counted.capped,
              next_cursor: Option.getOrNull(letters.nextCursor)
            }),
            { headers: VARY }
          )
          // Refused, too slow or the database out of reach: a 503, as every read for a client.
        }).pipe(answerReadFailures)
      )
      .handle("getDeadLetter", ({ path }) =>
        Effect.gen(function* () {
          if (!PARTITION.test(path.partition) || !isOffset(path.offset))
            return yield* invalid("partition and offset are whole numbers ≥ 0")
          const found = yield* reads.run(index.get(Number(path.partition), path.offset))
          if (Option.isNone(found))
            return yield* new DeadLetterNotFound({ partition: Number(path.partition), offset: path.offset })
          return found.value
        }).pipe(answerReadFailures)
      )
      .handle("replayDeadLetters", ({ headers, payload }) =>
        Effect.gen(function* () {
          const selection = yield* selectionOf(payload)
          const key = headers["idempotency-key"]
          if (key !== undefined && (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH))
            return yield* invalid(`Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`)
          const request = yield* HttpServerRequest.HttpServerRequest
          const subject =
            auth.principalOf(NodeHttpServerRequest.toIncomingMessage(request))?.subject ?? "unknown"
          const run = replay
            .replay(selection, {
              dryRun: payload.dry_run ?? false,
              limit: payload.limit ?? 500,
              cursor: Option.fromNullable(payload.cursor),
              includeReplayed: payload.include_replayed ?? false,
              requestedBy: subject
            })
            .pipe(Effect.map(replayResponse))
          if (key === undefined) return yield* run.pipe(Effect.catchTags(replayErrors))
          const once = yield* replay.once({ subject, key, body: payload }, run).pipe(
            Effect.catchTags({
              ...replayErrors,
              IdempotencyKeyReused: (e) => Effect.fail(new IdempotencyKeyReused({ message: e.message })),
              IdempotencyKeyInUse: (e) => Effect.fail(new IdempotencyKeyInUse({ message: e.message }))
            })
          )
          if (!once.repeated) return once.answer
          // What the first request was answered, as it was stored.
          return HttpServerResponse.unsafeJson(once.answer, { headers: { "idempotent-replayed": "true" } })
        })
      )
  })
)

const replayErrors = {
  InvalidLetterCursor: (e: InvalidLetterCursor) => Effect.fail(invalid(e.message)),
  ReplayUnavailable: (e: ReplayUnavailable) => Effect.fail(new Unavailable({ message: e.message })),
  SqlError: () => Effect.fail(databaseUnreachable())
}

const replayResponse = (result: ReplayResult): typeof ReplayResponse.Type => {
  const count = (outcome: string) => result.letters.filter((l) => l.outcome === outcome).length
  return {
    dry_run: result.dryRun,
    selected: Option.getOrNull(result.selected),
    already_replayed: Option.getOrNull(result.alreadyReplayed),
    until: Option.getOrNull(Option.map(result.until, (d) => d.toISOString())),
    sent: count("sent"),
    failed: count("failed"),
    letters: result.letters.map(({ letter, outcome }) => ({
      partition: letter.partition,
      offset: letter.offset,
      kind: letter.kind,
      key: letter.key === null ? null : encodeBytes(letter.key),
      outcome
    })),
    next_cursor: Option.getOrNull(result.nextCursor)
  }
}
