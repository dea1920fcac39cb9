/**
 * Faults while orders stream in, against a three-broker Kafka cluster (replication factor 3,
 * min.insync.replicas 2) and a real PostgreSQL. Each ingest case ends with the same accounting:
 * every valid order stored exactly once with its items, every invalid message on the dead-letter
 * topic exactly once (read committed) with its kind, and the consumer group's lag back to zero.
 *
 * One file, so the cluster starts once and the leader-kill case can reach its brokers.
 * FAULT_SEED repeats a run's random choices (printed at the start).
 */
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as EmbeddedPostgres from "../../src/local/EmbeddedPostgres.ts"
import * as LocalKafka from "../../src/local/LocalKafka.ts"
import { createDatabaseOn } from "../support/database.ts"
import { acquire } from "../support/scoped.ts"
import {
  groupMemberPids,
  isRunning,
  kill,
  killAll,
  leaderOfPartition0,
  logLinesSince,
  metric,
  plan,
  produce,
  random,
  scenario,
  settle,
  sleep,
  startInstance,
  stop,
  storedCount,
  waitFor,
  type Outcome,
  type Scenario
} from "./harness.ts"
import { startTcpRelay, throughRelay } from "../support/tcpRelay.ts"
import { hostileRequests } from "./hostile.ts"

const seed = Number(process.env["FAULT_SEED"] ?? Math.floor(Math.random() * 1_000_000))
const rand = random(seed)

let cluster: LocalKafka.LocalKafka
let postgres: EmbeddedPostgres.EmbeddedPostgres
let stopServers = async () => {}
const cases: Array<Scenario> = []

beforeAll(async () => {
  console.info(`fault suite seed: ${seed} (FAULT_SEED=${seed} repeats it)`)
  const servers = await acquire(
    Effect.all([LocalKafka.make({ brokers: 3 }), EmbeddedPostgres.make()], { concurrency: "unbounded" })
  )
  ;[cluster, postgres] = servers.value
  stopServers = servers.release
}, 300_000)

afterAll(async () => {
  for (const s of cases) await killAll(s)
  await stopServers()
}, 120_000)

const onSharedServer = (name: string) => createDatabaseOn(postgres.url(), name)

const fmt = (n: number) => n.toLocaleString("en-US")

/** Resolves when called: production holds its last share back until the faults are over. */
const gate = () => {
  let open!: () => void
  const opened = new Promise<void>((r) => (open = r))
  return { open, opened }
}

/**
 * The instance gave a batch up because the group had dropped it: either settling it failed with
 * the coordinator's answer (to the commit, or to the membership check inside the dead-letter
 * transaction), or the batch was already known to be stale and was given back before trying.
 */
const isDroppedSettle = (line: Record<string, unknown>) =>
  (line["level"] === "warn" &&
    /^Ingest (commit|dead-letter and commit) failed; retrying$/.test(String(line["message"])) &&
    /given this consumer's partition to another member|not aware of this member|generation id is not valid|not the correct coordinator/.test(
      String(line["error"])
    )) ||
  (line["level"] === "info" &&
    String(line["message"]) === "Batch given back uncommitted: its partition is no longer ours")

/** The instance has committed at least one batch of its own. */
const hasCommitted = async (url: string) => (await metric(url, "ingest_messages_consumed_total")) > 0

/**
 * Every message accounted for. `brokerDown`: the case takes a broker down, so sends may fail (and
 * are repeated until they succeed); otherwise none may.
 */
const expectAccounted = (s: Scenario, o: Outcome, options: { readonly brokerDown?: boolean } = {}) => {
  console.info(
    `${s.name}: ${fmt(s.plan.messages.length)} messages; stored ${fmt(o.stored)} of ${fmt(o.expectedStored)}; ` +
      `parked ${fmt(o.parked)} of ${fmt(o.expectedParked)} ${JSON.stringify(o.parkedByKind)}`
  )
  // The topic holds every message of the plan, once (else the loss or the copy is Kafka's, not the
  // service's): none the producer had acknowledged is missing, and the idempotent producer's
  // repeated sends wrote nothing twice.
  const failures = `producer failures: ${JSON.stringify(o.producerFailures)}`
  expect(o.notInTopic, failures).toEqual([])
  expect(o.topicCounts, failures).toEqual(o.plannedCounts)
  if (options.brokerDown !== true) expect(o.producerFailures).toEqual([])
  expect(o.expectedStored).toBe(s.plan.orders.size)
  expect({
    stored: o.stored,
    distinct: o.distinctStored,
    missing: o.missing,
    unexpected: o.unexpected,
    mismatched: o.mismatched
  }).toEqual({
    stored: o.expectedStored,
    distinct: o.expectedStored,
    missing: [],
    unexpected: [],
    mismatched: []
  })
  expect({
    parked: o.parked,
    twice: o.parkedTwice,
    wrongly: o.parkedWrongly,
    notParked: o.notParked,
    wrongKind: o.wrongKind
  }).toEqual({ parked: o.expectedParked, twice: [], wrongly: [], notParked: [], wrongKind: [] })
  for (const p of o.lag) expect(p.committed, `partition ${p.partition}`).toBe(p.end)
}

const KILLS_N = 50_000
const LEADER_N = 50_000
const POSTGRES_N = 50_000
const TWO_N = 50_000
const STORM_N = 50_000
const HOSTILE_N = 10_000
const PAUSE_N = 50_000

describe("faults while orders stream in (3 brokers, RF 3, min.insync.replicas 2)", () => {
  it(`the service SIGKILLed 3 times at random moments and started again: ${fmt(KILLS_N)} orders`, async () => {
    const s = await scenario(
      cluster,
      onSharedServer,
      plan(KILLS_N, { parkedShare: 0.02, redeliveryShare: 0.01, seed })
    )
    cases.push(s)
    const faults = gate()
    const production = produce(s, 1_000, { share: 0.1, until: faults.opened })
    for (let k = 1; k <= 3; k++) {
      const instance = await startInstance(s)
      // Once it has the partitions and settled a batch, at a random moment within the next 4 s.
      await waitFor(s, `instance ${k} commits a batch`, () => hasCommitted(instance.url))
      const delay = Math.floor(rand() * 4_000)
      await sleep(delay)
      console.info(
        `${s.name}: SIGKILL ${k} at ${fmt(production.produced())} produced, ${fmt(await storedCount(s))} stored (${delay} ms after its first commit)`
      )
      await kill(instance.process)
    }
    faults.open()
    const last = await startInstance(s)
    expectAccounted(s, await settle(s, production))
    expect(await stop(last.process)).toBe(0)
  }, 900_000)

  /**
   * One instance ingesting while production goes on; once a tenth is stored, `down` for 10 s and
   * `up` again. The instance must ride it out (still running) and account for everything.
   */
  const outageMidIngest = async (
    s: Scenario,
    count: number,
    fault: {
      readonly name: () => Promise<string>
      readonly down: () => Promise<void>
      readonly up: () => Promise<void>
      /** A Kafka broker goes down (rather than PostgreSQL). */
      readonly brokerDown: boolean
    }
  ) => {
    cases.push(s)
    const faults = gate()
    const production = produce(s, 1_000, { share: 0.1, until: faults.opened })
    const instance = await startInstance(s)
    await waitFor(s, "it stores a tenth of the orders", async () => (await storedCount(s)) >= count / 10)
    console.info(
      `${s.name}: stopping ${await fault.name()} for 10 s at ${fmt(production.produced())} produced`
    )
    await fault.down()
    await sleep(10_000)
    await fault.up()
    faults.open()
    expectAccounted(s, await settle(s, production), { brokerDown: fault.brokerDown })
    expect(isRunning(instance.process)).toBe(true)
    expect(await stop(instance.process)).toBe(0)
  }

  it(`the leader of partition 0 killed mid-ingest and restarted: ${fmt(LEADER_N)} orders`, async () => {
    const s = await scenario(
      cluster,
      onSharedServer,
      plan(LEADER_N, { parkedShare: 0.02, redeliveryShare: 0.01, seed: seed + 1 })
    )
    let leader = -1
    await outageMidIngest(s, LEADER_N, {
      name: async () => {
        leader = await leaderOfPartition0(s)
        return `broker ${leader} (leader of partition 0)`
      },
      down: () => Effect.runPromise(cluster.killBroker(leader)),
      up: () => Effect.runPromise(cluster.restartBroker(leader)),
      brokerDown: true
    })
  }, 900_000)

  it(`PostgreSQL stopped for 10 s mid-ingest and started again: ${fmt(POSTGRES_N)} orders`, async () => {
    const { value: own, release } = await acquire(EmbeddedPostgres.make())
    try {
      const onOwnServer = (name: string) => createDatabaseOn(own.url(), name)
      const s = await scenario(
        cluster,
        onOwnServer,
        plan(POSTGRES_N, { parkedShare: 0.02, redeliveryShare: 0.01, seed: seed + 2 })
      )
      await outageMidIngest(s, POSTGRES_N, {
        name: async () => "PostgreSQL",
        down: () => Effect.runPromise(own.pause),
        up: () => Effect.runPromise(own.resume),
        brokerDown: false
      })
    } finally {
      await release()
    }
  }, 900_000)

  it(`two instances in one group, one SIGKILLed, the other takes over its partitions: ${fmt(TWO_N)} orders`, async () => {
    const s = await scenario(
      cluster,
      onSharedServer,
      plan(TWO_N, { parkedShare: 0.02, redeliveryShare: 0.01, seed: seed + 3 })
    )
    cases.push(s)
    const faults = gate()
    const production = produce(s, 1_000, { share: 0.1, until: faults.opened })
    const a = await startInstance(s)
    const b = await startInstance(s)
    expect(a.port).not.toBe(b.port)
    await waitFor(
      s,
      "both instances commit batches",
      async () => (await hasCommitted(a.url)) && (await hasCommitted(b.url))
    )
    const bBefore = await metric(b.url, "ingest_messages_consumed_total")
    console.info(`${s.name}: SIGKILL one instance at ${fmt(production.produced())} produced`)
    await kill(a.process)
    faults.open()
    expectAccounted(s, await settle(s, production))
    // The survivor did the rest, the messages on the dead one's partitions included.
    expect(await metric(b.url, "ingest_messages_consumed_total")).toBeGreaterThan(bBefore)
    expect(await stop(b.process)).toBe(0)
  }, 900_000)

  it(`an instance paused past its session timeout while another takes over, then resumed: ${fmt(PAUSE_N)} orders`, async () => {
    const s = await scenario(
      cluster,
      onSharedServer,
      plan(PAUSE_N, { parkedShare: 0.05, redeliveryShare: 0.01, seed: seed + 6 })
    )
    cases.push(s)
    const faults = gate()
    const production = produce(s, 1_000, { share: 0.1, until: faults.opened })
    // The first instance reaches PostgreSQL through a relay the case controls. At info, so that a
    // batch given back without trying to settle it shows in its log.
    const database = new URL(s.databaseUrl)
    const relay = await startTcpRelay({ host: database.hostname, port: Number(database.port) })
    const a = await startInstance(s, {
      LOG_LEVEL: "info",
      DATABASE_URL: throughRelay(s.databaseUrl, relay.port)
    })
    await waitFor(s, "the first instance commits a batch", () => hasCommitted(a.url))
    // Settled in the group: no rebalance has taken its batches back when it is paused.
    await waitFor(s, "the first instance is in a stable group", async () =>
      (await groupMemberPids(s)).has(a.process.child.pid!)
    )
    // Its database traffic held back, the batches it fetches from now on stay in its hands, and
    // nothing of them reaches PostgreSQL. Paused then, it holds a batch; the group drops it after
    // the session timeout (30 s) and gives its partitions to the second instance. Its connections
    // are cut as it pauses, so PostgreSQL holds nothing of it that the second would wait for.
    await Promise.race([
      relay.hold(),
      sleep(60_000).then(() => Promise.reject(new Error("the first instance sent nothing to PostgreSQL")))
    ])
    // Other traffic (the dead-letter index, the live feed) may have been what was held: wait for
    // a batch of orders to be stuck — in flight, with nothing finished for a second.
    await waitFor(s, "a batch of orders is stuck in the first instance's hands", async () => {
      const consumed = await metric(a.url, "ingest_messages_consumed_total")
      await sleep(1_000)
      return (
        (await metric(a.url, "ingest_batches_in_flight")) >= 1 &&
        (await metric(a.url, "ingest_messages_consumed_total")) === consumed
      )
    })
    await sleep(500 + Math.floor(rand() * 1_000))
    console.info(`${s.name}: SIGSTOP the first instance at ${fmt(production.produced())} produced`)
    const pausedAt = a.process.output().length
    a.process.child.kill("SIGSTOP")
    relay.cut()
    const b = await startInstance(s)
    await waitFor(s, "the second instance takes over and commits", () => hasCommitted(b.url))
    await sleep(5_000)
    // Back from the pause, its batch in hand belongs to the other instance now: it must neither
    // commit it nor park its rejects a second time, and it must find its way back into the group.
    console.info(`${s.name}: SIGCONT the first instance at ${fmt(production.produced())} produced`)
    a.process.child.kill("SIGCONT")
    // It held a batch, and found out on settling it (or on the heartbeat that said so first) that
    // the group had dropped it. Such a batch is stale from then on, so it
    // is given back uncommitted: the accounting below finds nothing lost and nothing parked twice,
    // and the instance joining the group again shows kafkajs got the batch back.
    await waitFor(
      s,
      "the resumed instance fails to settle a batch because the group has dropped it",
      async () => logLinesSince(a.process, pausedAt).some(isDroppedSettle),
      120_000
    )
    const [dropped] = logLinesSince(a.process, pausedAt).filter(isDroppedSettle)
    console.info(
      `${s.name}: the resumed instance, on partition ${dropped!["partition"]}: ${dropped!["error"] ?? dropped!["message"]}`
    )
    faults.open()
    expectAccounted(s, await settle(s, production))
    await waitFor(s, "both instances are in the group again", async () => {
      const pids = await groupMemberPids(s)
      return pids.has(a.process.child.pid!) && pids.has(b.process.child.pid!)
    })
    expect(await stop(a.process)).toBe(0)
    expect(await stop(b.process)).toBe(0)
    await relay.close()
  }, 900_000)

  it(`a poison-message storm, 10% invalid of every kind interleaved: ${fmt(STORM_N)} messages`, async () => {
    const s = await scenario(
      cluster,
      onSharedServer,
      plan(STORM_N, { parkedShare: 0.1, redeliveryShare: 0.02, seed: seed + 4 })
    )
    cases.push(s)
    const production = produce(s, 2_000)
    const instance = await startInstance(s)
    const outcome = await settle(s, production)
    expectAccounted(s, outcome)
    for (const kind of ["invalid_json", "schema", "business_rule", "too_large", "conflict"]) {
      expect(outcome.parkedByKind[kind] ?? 0, kind).toBeGreaterThan(0)
    }
    expect(await stop(instance.process)).toBe(0)
  }, 900_000)

  it(`${fmt(HOSTILE_N)} random and malicious order ids get only 400 or 404, and the service stays healthy`, async () => {
    const s = await scenario(cluster, onSharedServer, plan(100, { parkedShare: 0, seed: seed + 5 }))
    cases.push(s)
    const production = produce(s, 2_000)
    const instance = await startInstance(s)
    expectAccounted(s, await settle(s, production))

    const requests = hostileRequests(HOSTILE_N, seed)
    const statuses = new Map<string, Array<string>>()
    const record = (status: number | string, what: string) => {
      const key = String(status)
      const list = statuses.get(key) ?? []
      list.push(what)
      statuses.set(key, list)
    }
    for (let i = 0; i < requests.length; i += 50) {
      const chunk = requests.slice(i, i + 50)
      const answers = await Promise.all(chunk.map((r) => r.send(instance.port)))
      answers.forEach((status, j) => record(status, chunk[j]!.label))
    }
    const counts = Object.fromEntries([...statuses].map(([k, v]) => [k, v.length]))
    console.info(`${requests.length} hostile requests: ${JSON.stringify(counts)}`)
    const others = [...statuses]
      .filter(([k]) => k !== "400" && k !== "404")
      .map(([k, v]) => `${k}: ${v.slice(0, 5).join(" | ")}`)
    expect(others).toEqual([])
    expect(requests.length).toBe(HOSTILE_N)

    expect((await fetch(`${instance.url}/healthz`)).status).toBe(200)
    const known = [...s.plan.orders.keys()][0]!
    expect((await fetch(`${instance.url}/order/${known}`)).status).toBe(200)
    expect(await stop(instance.process)).toBe(0)
  }, 600_000)
})
