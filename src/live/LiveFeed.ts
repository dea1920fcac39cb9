/**
 * The live feed: every newly stored order, as server-sent events, on every instance.
 *
 * The transaction that stores a batch notifies `orders_stored` with the new uids (see
 * OrderRepository). PostgreSQL delivers notifications at commit, in commit order, to every
 * listener: each instance listens, reads the summaries, and so sees the same events in the same
 * order whichever instance stored them. An event's id is the order's `feed_seq`, assigned by the
 * database, so a browser may resume on any instance.
 *
 * Ingestion never waits for a client: each client has a bounded queue that events are offered to
 * without blocking; a client whose queue is full is sent a `dropped` event and let go.
 *
 * What the feed costs is the bytes written to every client. Events are encoded once for all
 * clients, and for clients that accept gzip (browsers do) compressed once for all of them too (see
 * SharedGzip): about a third of the bytes.
 */
import { PgClient } from "@effect/sql-pg"
import { Chunk, Deferred, Duration, Effect, Option, Queue, Schedule, Stream } from "effect"
import { LiveConfig } from "../config/AppConfig.ts"
import { HttpDrain } from "../http/HttpDrain.ts"
import { ORDERS_STORED_CHANNEL, OrderRepository, type FeedEntry } from "../orders/OrderRepository.ts"
import * as SharedGzip from "./SharedGzip.ts"

const encoder = new TextEncoder()

/** How long a dropped client has to read its `dropped` event before its connection is closed. */
const DROPPED_GRACE = Duration.seconds(5)

/**
 * How long orders may wait to be sent on with those that follow: short beside what a person
 * watching notices, long beside the batches of a busy ingest.
 */
const FLUSH_EVERY = Duration.millis(100)

/** How often the feed checks its own listening connection, and after how much silence it renews it. */
const WATCHDOG_PING = Duration.seconds(5)
const WATCHDOG_SILENCE = Duration.seconds(20)

/** An event ready to write: encoded once, shared by every client. */
interface Event {
  readonly seq: string
  /** Place in this instance's stream, which is commit order: the same on every instance. */
  readonly position: number
  readonly bytes: Uint8Array
}

/** Bytes for every client at once — a notification's events, a heartbeat — and how many events. */
class Delivery {
  private compressed: SharedGzip.Piece | undefined
  constructor(
    readonly bytes: Uint8Array,
    readonly events: number
  ) {}
  /** Compressed when a client first needs it, once for every client. */
  get piece(): SharedGzip.Piece {
    return (this.compressed ??= SharedGzip.compress(this.bytes))
  }
}

/** How a client's stream is written: its first bytes, what it is delivered, its last bytes. */
export type Encoding = "gzip" | "identity"

interface Encoder {
  readonly first: (bytes: Uint8Array) => Uint8Array
  readonly deliveries: (list: Chunk.Chunk<Delivery>) => Uint8Array
  readonly last: (bytes: Uint8Array | undefined) => Uint8Array | undefined
}

const identity: Encoder = {
  first: (bytes) => bytes,
  deliveries: (list) => concatBytes(Chunk.map(list, (d) => d.bytes)),
  last: (bytes) => bytes
}

/** A gzip stream of the shared pieces; what only this client is sent is compressed for it alone. */
const gzip = (): Encoder => {
  const trailer = new SharedGzip.Trailer()
  return {
    first: (bytes) => concatBytes([SharedGzip.HEADER, trailer.add(SharedGzip.compress(bytes))]),
    deliveries: (list) => concatBytes(Chunk.map(list, (d) => trailer.add(d.piece))),
    last: (bytes) =>
      concatBytes(
        bytes === undefined ? [trailer.bytes()] : [trailer.add(SharedGzip.compress(bytes)), trailer.bytes()]
      )
  }
}

interface Client {
  readonly queue: Queue.Queue<Delivery>
  readonly dropped: Deferred.Deferred<void>
  /** Events offered to this client and not yet taken by its stream. */
  pending: number
}

/** How soon a browser should reconnect after the stream ends. */
const RETRY = encoder.encode("retry: 2000\n\n")
/** One for the process: compressed once, the first time a gzip client is sent it. */
const HEARTBEAT = new Delivery(encoder.encode(": heartbeat\n\n"), 1)

const event = (name: string, data: unknown, id?: string): Uint8Array =>
  encoder.encode(`${id === undefined ? "" : `id: ${id}\n`}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`)

const concatBytes = (parts: Iterable<Uint8Array>): Uint8Array => {
  const list = [...parts]
  if (list.length === 1) return list[0]!
  const out = new Uint8Array(list.reduce((n, part) => n + part.length, 0))
  let offset = 0
  for (const part of list) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** The uids of one notification; anything else on the channel is ignored. */
const uidsOf = (payload: string): ReadonlyArray<string> => {
  try {
    const value: unknown = JSON.parse(payload)
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : []
  } catch {
    return []
  }
}

export class LiveFeed extends Effect.Service<LiveFeed>()("LiveFeed", {
  scoped: Effect.gen(function* () {
    const config = yield* LiveConfig
    const drain = yield* HttpDrain
    const pg = yield* PgClient.PgClient
    const repository = yield* OrderRepository

    /** The last `resumeWindow` events, oldest first, for clients that reconnect. */
    const recent: Array<Event> = []
    const positionOf = new Map<string, number>()
    let position = 0
    const clients = new Set<Client>()

    /** Ends a client's stream: what it has not taken yet is discarded. */
    const end = (client: Client) => {
      clients.delete(client)
      Effect.runSync(Queue.shutdown(client.queue))
    }

    /**
     * Never waits: a client that cannot take the bytes is dropped. One that has taken everything
     * it was offered takes the next, however many events that holds (a busy second's worth).
     */
    const offerToAll = (delivery: Delivery) => {
      for (const client of clients) {
        if (client.pending > 0 && client.pending + delivery.events > config.clientBuffer) {
          Deferred.unsafeDone(client.dropped, Effect.void)
          end(client)
        } else {
          client.pending += delivery.events
          client.queue.unsafeOffer(delivery)
        }
      }
    }

    // One heartbeat for every client, rather than a timer merged into each client's stream. It
    // counts as an event, so that a client that stopped reading while nothing happened is let go
    // too, in time, instead of collecting heartbeats.
    yield* Effect.sync(() => offerToAll(HEARTBEAT)).pipe(
      Effect.delay(config.heartbeat),
      Effect.forever,
      Effect.forkScoped
    )
    // When the HTTP server begins to close, every stream ends (browsers reconnect elsewhere), and
    // those that connect meanwhile end at once.
    let closing = false
    yield* drain.begun.pipe(
      Effect.zipRight(
        Effect.sync(() => {
          closing = true
          for (const client of clients) end(client)
        })
      ),
      Effect.forkScoped
    )

    /** Orders read since the last flush, oldest first. */
    let unsent: Array<FeedEntry> = []
    const publish = (entries: ReadonlyArray<FeedEntry>) => {
      for (const entry of entries) unsent.push(entry)
    }

    /**
     * The orders read since the last flush: each kept for resuming, and all of them sent to every
     * client as one piece of bytes (one allocation and one compression, however many clients).
     */
    const flush = () => {
      if (unsent.length === 0) return
      const entries = unsent
      unsent = []
      const events = entries.map((entry): Event => ({
        seq: entry.seq,
        position: ++position,
        bytes: event("order", entry.summary, entry.seq)
      }))
      for (const e of events) {
        recent.push(e)
        positionOf.set(e.seq, e.position)
      }
      while (recent.length > config.resumeWindow) positionOf.delete(recent.shift()!.seq)
      offerToAll(new Delivery(concatBytes(events.map((e) => e.bytes)), events.length))
    }

    // Notifications are sent on together, every FLUSH_EVERY: with orders arriving in many small
    // batches, a write per client per batch is what would cost the process its time.
    yield* Effect.sync(flush).pipe(Effect.delay(FLUSH_EVERY), Effect.forever, Effect.forkScoped)

    /** Tells every client that orders may have been missed (the listening connection was lost). */
    const publishGap = () => {
      flush()
      offerToAll(
        new Delivery(event("gap", { message: "the feed was interrupted; orders may have been missed" }), 1)
      )
    }

    const listening = yield* Deferred.make<void>()
    let lastHeard = Date.now()
    /** Set when listening was lost: the gap is announced once listening again, not before. */
    let lost = false
    const session = pg.listen(ORDERS_STORED_CHANNEL).pipe(
      Stream.tap(() =>
        Effect.zipRight(
          Effect.sync(() => {
            lastHeard = Date.now()
            if (lost) {
              lost = false
              publishGap()
            }
          }),
          Deferred.succeed(listening, undefined)
        )
      ),
      Stream.map(uidsOf),
      Stream.filter((uids) => uids.length > 0),
      // One notification at a time, so events keep the commit order.
      Stream.mapEffect((uids) =>
        repository.feedEntries(uids).pipe(
          Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.upTo("5 seconds"))),
          Effect.catchAll((error) =>
            Effect.logWarning("Live feed: could not read the stored orders; clients miss them", error).pipe(
              Effect.as([])
            )
          )
        )
      ),
      Stream.runForEach((entries) => Effect.sync(() => publish(entries)))
    )
    // A listening connection that died says nothing (the client library swallows its errors): we
    // notify ourselves now and then, and listen again on a fresh connection when nothing comes back.
    // (`pg.notify` sends NOTIFY with a bind parameter, which PostgreSQL refuses: pg_notify takes one.)
    const ping = pg`SELECT pg_notify(${ORDERS_STORED_CHANNEL}, '[]')`.pipe(Effect.ignore)
    const watchdog = Effect.gen(function* () {
      lastHeard = Date.now()
      for (;;) {
        yield* ping
        yield* Effect.sleep(WATCHDOG_PING)
        if (Date.now() - lastHeard > Duration.toMillis(WATCHDOG_SILENCE)) {
          return yield* Effect.dieMessage("no notification came back")
        }
      }
    })
    yield* Effect.raceFirst(session, watchdog).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("Live feed: listening was interrupted; listening again", cause).pipe(
          Effect.zipRight(Effect.sync(() => (lost = true))),
          Effect.zipRight(Effect.sleep("1 second"))
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )
    // Ready once the first notification comes back, so that no order stored after start-up is
    // missed. An empty list of uids is ignored by every instance.
    yield* Deferred.await(listening).pipe(
      Effect.race(ping.pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.forever)),
      Effect.timeout("10 seconds"),
      Effect.catchAll(() => Effect.logWarning("Live feed: not listening yet; going on without waiting"))
    )

    /**
     * One client's stream of events, gzip or not, after `lastEventId` if given: the events since then
     * when they are still kept, else a `gap` event first. Ends after a `dropped` event if the client
     * falls more than `client_buffer` events behind; a client that has not read even that
     * `DROPPED_GRACE` later (its connection is full) is cut off with `disconnect`.
     */
    const connect = (options: {
      readonly lastEventId: Option.Option<string>
      readonly encoding: Encoding
      readonly disconnect?: Effect.Effect<void>
    }): Stream.Stream<Uint8Array> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const { lastEventId, disconnect = Effect.void } = options
          const encode = options.encoding === "gzip" ? gzip() : identity
          const client: Client = {
            // Bounded by `pending` against client_buffer, checked as events are offered.
            queue: yield* Queue.unbounded<Delivery>(),
            dropped: yield* Deferred.make<void>(),
            pending: 0
          }
          // Registering and reading the backlog in one synchronous step: no event falls between.
          const backlog = yield* Effect.acquireRelease(
            Effect.sync(() => {
              clients.add(client)
              return Option.match(lastEventId, {
                onNone: () => [],
                onSome: (id) => {
                  const after = positionOf.get(id)
                  return after === undefined
                    ? [event("gap", { last_event_id: id, message: "events after this id are not kept" })]
                    : recent.filter((e) => e.position > after).map((e) => e.bytes)
                }
              })
            }),
            () => Effect.sync(() => end(client))
          )
          yield* Deferred.await(client.dropped).pipe(
            Effect.zipRight(Effect.sleep(DROPPED_GRACE)),
            Effect.zipRight(disconnect),
            Effect.forkScoped
          )
          const farewell = Stream.unwrap(
            Effect.map(Deferred.isDone(client.dropped), (dropped) => {
              const last = encode.last(
                dropped
                  ? event("dropped", {
                      message: `this client fell more than ${config.clientBuffer} events behind and was disconnected; reconnect and reload`
                    })
                  : undefined
              )
              return last === undefined ? Stream.empty : Stream.make(last)
            })
          )
          if (closing) end(client)
          // The queue is shut down when the client is dropped or the server closes: its stream ends.
          const deliveries = Stream.fromQueue(client.queue).pipe(
            // Whatever is waiting goes out in one write: a write per event per client is what
            // would cost the process (and so ingestion) its time with many clients.
            Stream.mapChunks((chunk) => {
              let events = 0
              for (const delivery of chunk) events += delivery.events
              client.pending -= events
              return Chunk.of(encode.deliveries(chunk))
            })
          )
          return Stream.make(encode.first(concatBytes([RETRY, ...backlog]))).pipe(
            Stream.concat(deliveries),
            Stream.concat(farewell)
          )
        })
      )

    return {
      connect,
      /** Connected clients, for tests and metrics. */
      clients: Effect.sync(() => clients.size)
    } as const
  })
}) {}
