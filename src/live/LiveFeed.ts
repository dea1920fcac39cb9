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
 * without waiting for any, and a client with more than `client_buffer` events or
 * `client_buffer_bytes` bytes not yet sent on (it stopped reading), or one whose connection took
 * nothing for `drain_timeout`, is sent a `dropped` event and let go.
 *
 * What a client may hold of the process is bounded: at most `max_clients` clients, and
 * `max_clients_per_address` from one address (a new one past either is answered 503); each holds
 * at most `client_buffer_bytes` not yet sent, a resumed backlog included (a resume that would need
 * more is sent a `gap` event instead, and the client reloads).
 *
 * What the feed costs is writing to every client. What arrives within FLUSH_EVERY is written in
 * one piece, encoded once for all clients, and for clients that accept gzip (browsers do)
 * compressed once for all of them too (see SharedGzip): about a third of the bytes. Each client's
 * response is written to directly from the feed's loop (its `Subscriber`), with no queue and no
 * fiber at work per client: the handler's fiber only waits for the connection to close.
 */
import { PgClient } from "@effect/sql-pg"
import { Deferred, Duration, Effect, Either, Metric, Schedule, Schema, Stream } from "effect"
import { LiveConfig } from "../config/AppConfig.ts"
import { type Answer, json, withHeaders } from "../http/Answer.ts"
import { Overloaded } from "../http/Api.ts"
import { HttpDrain } from "../http/HttpDrain.ts"
import { countShed } from "../observability/Prometheus.ts"
import { ORDERS_STORED_CHANNEL, OrderRepository, type FeedEntry } from "../orders/OrderRepository.ts"
import * as SharedGzip from "./SharedGzip.ts"

const encoder = new TextEncoder()

const encodeOverloaded = Schema.encodeSync(Overloaded)

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

/** How soon a client refused for the number of clients should try again, in seconds. */
const RETRY_AFTER_SECONDS = 5

/** Connections to the feed, from attaching to closing (a dropped one counts until it is gone). */
const liveClients = Metric.gauge("live_clients", {
  description: "Clients connected to GET /orders/live"
})

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
  /** How many bytes `delivery` would write, without writing it. */
  readonly size: (delivery: Delivery) => number
  readonly last: (delivery: Delivery | undefined) => Uint8Array | undefined
}

const identity: Encoder = {
  first: (bytes) => bytes,
  delivery: (delivery) => delivery.bytes,
  size: (delivery) => delivery.bytes.length,
  last: (delivery) => delivery?.bytes
}

/** A gzip stream of the shared pieces; a client's backlog is compressed for it alone. */
const gzip = (): Encoder => {
  const trailer = new SharedGzip.Trailer()
  return {
    first: (bytes) => concatBytes([SharedGzip.HEADER, trailer.add(SharedGzip.compress(bytes))]),
    delivery: (delivery) => trailer.add(delivery.piece),
    size: (delivery) => delivery.piece.deflated.length,
    last: (delivery) =>
      concatBytes(delivery === undefined ? [trailer.bytes()] : [trailer.add(delivery.piece), trailer.bytes()])
  }
}

/** Where a client's bytes go: its HTTP response (src/http/LiveRoute.ts). */
export interface Subscriber {
  /** Sends bytes; `sent` is called once they have left the process's buffers, or the connection has gone. */
  readonly write: (bytes: Uint8Array, sent: () => void) => void
  /** Sends the last bytes, if any, and ends the response. */
  readonly end: (bytes?: Uint8Array) => void
  /** Closes the connection at once. */
  readonly destroy: () => void
  /** Bytes written and not yet sent on: still in the process, waiting for the connection to take them. */
  readonly buffered: () => number
}

interface Client {
  readonly subscriber: Subscriber
  readonly encode: Encoder
  /** Events written to this client and not yet sent on. */
  pending: number
  /**
   * When its connection last took something (a write was sent on), or was last seen with nothing
   * waiting: the clock `drain_timeout` runs on.
   */
  progressed: number
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
    /**
     * Connections, counted from attaching until they close (a dropped client's too, during its
     * grace): what `max_clients` and `max_clients_per_address` bound.
     */
    let connected = 0
    const perAddress = new Map<string, number>()

    /** Ends a client's stream (the server is closing): browsers reconnect, to another instance. */
    const end = (client: Client) => {
      clients.delete(client)
      client.subscriber.end(client.encode.last(undefined))
    }

    const droppedEvent = (message: string) =>
      new Delivery(event("dropped", { message: `${message} and was disconnected; reconnect and reload` }), 1)
    const dropped = {
      events: droppedEvent(`this client fell more than ${config.clientBuffer} events behind`),
      bytes: droppedEvent(
        `this client fell more than ${config.clientBufferBytes} bytes behind (live.client_buffer_bytes)`
      ),
      stalled: droppedEvent(
        `this client took nothing for ${Duration.format(config.drainTimeout)} (live.drain_timeout)`
      )
    }
    /**
     * Lets go of a client that fell behind: its stream ends with a `dropped` event, and a client
     * that does not read even that within `DROPPED_GRACE` has its connection closed.
     */
    const drop = (client: Client, why: Delivery) => {
      clients.delete(client)
      client.subscriber.end(client.encode.last(why))
      setTimeout(client.subscriber.destroy, Duration.toMillis(DROPPED_GRACE)).unref()
    }

    /**
     * Never waits: a client that cannot take the bytes is dropped. One that has taken everything
     * it was sent takes the next, however many events and bytes that holds (a busy tenth of a
     * second's, shared with every client).
     *
     * Two bounds, both kept: events (`client_buffer`, the original one, a counter) and bytes
     * (`client_buffer_bytes`, what memory is: the connection's unsent bytes, read from it, so a
     * resumed backlog still waiting counts too).
     */
    const offerToAll = (delivery: Delivery) => {
      for (const client of clients) {
        if (client.pending > 0 && client.pending + delivery.events > config.clientBuffer) {
          drop(client, dropped.events)
          continue
        }
        const buffered = client.subscriber.buffered()
        if (buffered > 0 && buffered + client.encode.size(delivery) > config.clientBufferBytes) {
          drop(client, dropped.bytes)
          continue
        }
        client.pending += delivery.events
        client.subscriber.write(client.encode.delivery(delivery), () => {
          client.pending -= delivery.events
          client.progressed = Date.now()
        })
      }
    }

    // A client whose connection takes nothing for `drain_timeout` (a tab asleep, a peer that
    // vanished without a FIN) is let go even when all it is sent is heartbeats: otherwise it would
    // be held until its heartbeats filled `client_buffer`, ~17 hours at one every 15 seconds.
    const drainTimeout = Duration.toMillis(config.drainTimeout)
    const checkStalled = () => {
      const now = Date.now()
      for (const client of clients) {
        if (client.subscriber.buffered() === 0) client.progressed = now
        else if (now - client.progressed >= drainTimeout) drop(client, dropped.stalled)
      }
    }
    yield* Effect.sync(checkStalled).pipe(
      Effect.delay(Duration.millis(Math.min(1_000, Math.max(50, drainTimeout / 4)))),
      Effect.forever,
      Effect.forkScoped
    )

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

    const overloaded = (limit: string, message: string): Answer =>
      withHeaders(
        json(503, encodeOverloaded(new Overloaded({ message, limit }))),
        "retry-after",
        String(RETRY_AFTER_SECONDS)
      )
    const tooMany = overloaded(
      "live.max_clients",
      `this instance has its ${config.maxClients} live-feed clients (live.max_clients); retry shortly`
    )
    const tooManyFromAddress = overloaded(
      "live.max_clients_per_address",
      `${config.maxClientsPerAddress} live-feed clients are connected from this address ` +
        "(live.max_clients_per_address); close some or retry shortly"
    )

    /**
     * Whether a client from `address` may attach now: `undefined`, or the 503 to answer it with
     * (counted in `http_shed_requests_total`). Attached in the same synchronous step (`follow`).
     */
    const admit = (address: string | undefined): Answer | undefined => {
      if (connected >= config.maxClients) {
        countShed("live_clients")
        return tooMany
      }
      if ((perAddress.get(address ?? "") ?? 0) >= config.maxClientsPerAddress) {
        countShed("live_clients_per_address")
        return tooManyFromAddress
      }
      return undefined
    }

    /**
     * What a client resuming after `lastEventId` is sent first: the events kept after it, or a
     * `gap` event when that id is no longer kept or what followed it is more than the client may
     * hold (`client_buffer_bytes`: the backlog is built for this client alone, so it is what a
     * crowd of resuming clients that never read would cost). The raw bytes are measured, before
     * anything is built or compressed: a gzip client's backlog is smaller still.
     */
    const backlogAfter = (lastEventId: string | undefined): ReadonlyArray<Uint8Array> => {
      if (lastEventId === undefined) return []
      const after = positionOf.get(lastEventId)
      if (after === undefined)
        return [event("gap", { last_event_id: lastEventId, message: "events after this id are not kept" })]
      // Positions in `recent` follow one another: the event after `after` is at this index.
      const start = after - recent[0]!.position + 1
      let bytes = RETRY.length
      for (let i = start; i < recent.length; i++) {
        bytes += recent[i]!.bytes.length
        if (bytes > config.clientBufferBytes)
          return [
            event("gap", {
              last_event_id: lastEventId,
              message: "more events followed this id than a client may be sent at once; reload"
            })
          ]
      }
      return recent.slice(start).map((e) => e.bytes)
    }

    /**
     * Attaches a client (admitted by `admit` first): it is sent the events after `lastEventId` if
     * given (those still kept, else a `gap` event first), then every new one, until the server
     * closes or the client falls behind (then a `dropped` event ends its stream). Returns the
     * function that detaches it: until then it counts against `max_clients` and
     * `max_clients_per_address`.
     */
    const attach = (options: {
      readonly lastEventId: string | undefined
      readonly encoding: Encoding
      readonly address: string | undefined
      readonly subscriber: Subscriber
    }): (() => void) => {
      const { subscriber } = options
      // A socket already closed has no address: those count together.
      const address = options.address ?? ""
      const client: Client = {
        subscriber,
        encode: options.encoding === "gzip" ? gzip() : identity,
        pending: 0,
        progressed: Date.now()
      }
      connected++
      perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
      liveClients.unsafeModify(1, [])
      // Registered in the same synchronous step as the backlog is read: no event falls between.
      const backlog = backlogAfter(options.lastEventId)
      subscriber.write(client.encode.first(concatBytes([RETRY, ...backlog])), () => {
        client.progressed = Date.now()
      })
      if (closing) subscriber.end(client.encode.last(undefined))
      else clients.add(client)
      let attached = true
      return () => {
        if (!attached) return
        attached = false
        clients.delete(client)
        connected--
        const left = perAddress.get(address)! - 1
        if (left === 0) perAddress.delete(address)
        else perAddress.set(address, left)
        liveClients.unsafeModify(-1, [])
      }
    }

    /**
     * Follows the feed for one client until `closed` completes (its connection has closed):
     * admitted and attached in one synchronous step, and detached when this ends, however it
     * ends. Or, past `live.max_clients` or `live.max_clients_per_address`, the 503 to answer at
     * once. `address` is the connection's remote address: behind a proxy (nginx, a load balancer)
     * the proxy's for every client, and `max_clients_per_address` then acts as a second global
     * limit (`X-Forwarded-For` is not trusted: any client may send it).
     */
    const follow = (client: {
      readonly lastEventId: string | undefined
      readonly encoding: Encoding
      readonly address: string | undefined
      readonly subscriber: Subscriber
      readonly closed: Effect.Effect<void>
    }): Effect.Effect<Answer | undefined> =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          const refusal = admit(client.address)
          return refusal !== undefined ? Either.left(refusal) : Either.right(attach(client))
        }),
        (attached) =>
          Either.isLeft(attached) ? Effect.succeed(attached.left) : Effect.as(client.closed, undefined),
        (attached) => Effect.sync(() => Either.map(attached, (detach) => detach()))
      )

    return {
      follow,
      /** Connected clients, for tests and metrics. */
      clients: Effect.sync(() => clients.size)
    } as const
  })
}) {}
