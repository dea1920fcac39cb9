/**
 * The live feed: every newly stored order, as server-sent events, on every instance.
 *
 * The transaction that stores a batch notifies `orders_stored` with the new uids (see
 * OrderRepository). PostgreSQL delivers notifications at commit, in commit order, to every
 * listener: each instance listens, reads the summaries, and so sees the same events in the same
 * order whichever instance stored them. An event's id is the order's `feed_seq`, assigned by the
 * database, so a browser may resume on any instance.
 *
 * Ingestion never waits for a client: what is stored is written to every client's connection
 * without waiting for any, and a client with more than `client_buffer` events not yet sent on
 * (it stopped reading) is sent a `dropped` event and let go.
 *
 * What the feed costs is writing to every client. What arrives within FLUSH_EVERY is written in
 * one piece, encoded once for all clients, and for clients that accept gzip (browsers do)
 * compressed once for all of them too (see SharedGzip): about a third of the bytes. The server's
 * fast path writes to each response from the feed's loop, with no fiber or queue per client.
 */
import { PgClient } from "@effect/sql-pg"
import { Chunk, Deferred, Duration, Effect, Option, Queue, Runtime, Schedule, Stream } from "effect"
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

/** How a client takes its stream: gzip, or the events as they are. */
export type Encoding = "gzip" | "identity"

/** How a client's stream is written: its first bytes, each delivery, its last bytes. */
interface Encoder {
  readonly first: (bytes: Uint8Array) => Uint8Array
  readonly delivery: (delivery: Delivery) => Uint8Array
  readonly last: (delivery: Delivery | undefined) => Uint8Array | undefined
}

const identity: Encoder = {
  first: (bytes) => bytes,
  delivery: (delivery) => delivery.bytes,
  last: (delivery) => delivery?.bytes
}

/** A gzip stream of the shared pieces; a client's backlog is compressed for it alone. */
const gzip = (): Encoder => {
  const trailer = new SharedGzip.Trailer()
  return {
    first: (bytes) => concatBytes([SharedGzip.HEADER, trailer.add(SharedGzip.compress(bytes))]),
    delivery: (delivery) => trailer.add(delivery.piece),
    last: (delivery) =>
      concatBytes(delivery === undefined ? [trailer.bytes()] : [trailer.add(delivery.piece), trailer.bytes()])
  }
}

/**
 * Where a client's bytes go: its HTTP response (the server's fast path writes to it directly), or
 * a stream the router's handler returns.
 */
export interface Subscriber {
  /** Sends bytes; `sent` is called once they have left the process's buffers, or the connection has gone. */
  readonly write: (bytes: Uint8Array, sent: () => void) => void
  /** Sends the last bytes, if any, and ends the response. */
  readonly end: (bytes?: Uint8Array) => void
  /** Closes the connection at once. */
  readonly destroy: () => void
}

interface Client {
  readonly subscriber: Subscriber
  readonly encode: Encoder
  /** Events written to this client and not yet sent on. */
  pending: number
}

/** Ends a stream of `connect`. */
const END = { bytes: new Uint8Array(0) }

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

    /** Ends a client's stream (the server is closing): browsers reconnect, to another instance. */
    const end = (client: Client) => {
      clients.delete(client)
      client.subscriber.end(client.encode.last(undefined))
    }

    const dropped = new Delivery(
      event("dropped", {
        message: `this client fell more than ${config.clientBuffer} events behind and was disconnected; reconnect and reload`
      }),
      1
    )
    /**
     * Lets go of a client that fell behind: its stream ends with a `dropped` event, and a client
     * that does not read even that within `DROPPED_GRACE` has its connection closed.
     */
    const drop = (client: Client) => {
      clients.delete(client)
      client.subscriber.end(client.encode.last(dropped))
      setTimeout(client.subscriber.destroy, Duration.toMillis(DROPPED_GRACE)).unref()
    }

    /**
     * Never waits: a client that cannot take the bytes is dropped. One that has taken everything
     * it was sent takes the next, however many events that holds (a busy tenth of a second's).
     */
    const offerToAll = (delivery: Delivery) => {
      for (const client of clients) {
        if (client.pending > 0 && client.pending + delivery.events > config.clientBuffer) drop(client)
        else {
          client.pending += delivery.events
          client.subscriber.write(client.encode.delivery(delivery), () => {
            client.pending -= delivery.events
          })
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
     * Attaches a client: it is sent the events after `lastEventId` if given (those still kept, else
     * a `gap` event first), then every new one, until the server closes or the client falls more
     * than `client_buffer` events behind (then a `dropped` event ends its stream). Call the
     * returned function when its connection closes. No fiber per client: what every client is sent
     * is written to each from the feed's own loop.
     */
    const unsafeAttach = (options: {
      readonly lastEventId: string | undefined
      readonly encoding: Encoding
      readonly subscriber: Subscriber
    }): (() => void) => {
      const { lastEventId, subscriber } = options
      const client: Client = {
        subscriber,
        encode: options.encoding === "gzip" ? gzip() : identity,
        pending: 0
      }
      const after = lastEventId === undefined ? undefined : positionOf.get(lastEventId)
      const backlog =
        lastEventId === undefined
          ? []
          : after === undefined
            ? [event("gap", { last_event_id: lastEventId, message: "events after this id are not kept" })]
            : recent.filter((e) => e.position > after).map((e) => e.bytes)
      // Registered in the same synchronous step as the backlog is read: no event falls between.
      subscriber.write(client.encode.first(concatBytes([RETRY, ...backlog])), () => {})
      if (closing) subscriber.end(client.encode.last(undefined))
      else clients.add(client)
      return () => {
        clients.delete(client)
      }
    }

    /**
     * `unsafeAttach` as a stream, for the router's handler: the same bytes, through a queue and a
     * fiber per client. `disconnect` closes the client's connection.
     */
    const connect = (options: {
      readonly lastEventId: Option.Option<string>
      readonly encoding: Encoding
      readonly disconnect?: Effect.Effect<void>
    }): Stream.Stream<Uint8Array> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const queue = yield* Queue.unbounded<{ readonly bytes: Uint8Array; readonly sent?: () => void }>()
          const runtime = yield* Effect.runtime<never>()
          const subscriber: Subscriber = {
            write: (bytes, sent) => queue.unsafeOffer({ bytes, sent }),
            end: (bytes) => {
              if (bytes !== undefined) queue.unsafeOffer({ bytes })
              queue.unsafeOffer(END)
            },
            destroy: () => Runtime.runFork(runtime)(options.disconnect ?? Effect.void)
          }
          yield* Effect.acquireRelease(
            Effect.sync(() =>
              unsafeAttach({
                lastEventId: Option.getOrUndefined(options.lastEventId),
                encoding: options.encoding,
                subscriber
              })
            ),
            (detach) => Effect.sync(detach)
          )
          return Stream.fromQueue(queue).pipe(
            Stream.takeWhile((item) => item !== END),
            // Whatever is waiting goes out in one write.
            Stream.mapChunks((chunk) => {
              for (const item of chunk) item.sent?.()
              return Chunk.of(concatBytes(Chunk.map(chunk, (item) => item.bytes)))
            })
          )
        })
      )

    return {
      unsafeAttach,
      connect,
      /** Connected clients, for tests and metrics. */
      clients: Effect.sync(() => clients.size)
    } as const
  })
}) {}
