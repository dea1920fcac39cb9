/**
 * A partition assigner that knows which process each group member lives in.
 *
 * Every process runs several kafkajs consumers in the group (`ingest.consumers`). kafkajs' own
 * round-robin assigner sorts members by their broker-given ids, so with two processes of three
 * consumers each on a three-partition topic all three partitions can land in one process (one
 * time in ten) while the other sits idle — scaling out by adding a process would then do nothing,
 * and a process's death would move all of the work at once. This assigner spreads partitions over
 * processes first and then over each process's consumers, so processes differ by at most one
 * partition, and so do the consumers within a process.
 *
 * Each member says which process it belongs to in its metadata's user data. A member without it
 * (another client in the group) counts as a process of its own. Round-robin stays listed after
 * this one, so a group mixing in members that do not know this protocol still agrees on one.
 */
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import { AssignerProtocol, PartitionAssigners, type PartitionAssigner } from "kafkajs"

export const PROTOCOL_NAME = "OrderServiceInstanceSpread"
const VERSION = 0

export interface Member {
  readonly memberId: string
  /** The process the member runs in. */
  readonly instance: string
}

export interface TopicPartition {
  readonly topic: string
  readonly partition: number
}

/** member id → topic → partitions; every member is present, with nothing if there is nothing for it. */
export type Assignment = Map<string, Record<string, Array<number>>>

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/**
 * Partitions in (topic, partition) order dealt to processes in turn (sorted by id); a process's
 * partitions dealt to its members in turn (sorted by member id). Deterministic for a given group.
 */
export const spread = (
  members: ReadonlyArray<Member>,
  partitions: ReadonlyArray<TopicPartition>
): Assignment => {
  const assignment: Assignment = new Map()
  const membersOf = new Map<string, Array<string>>()
  for (const { memberId, instance } of members) {
    assignment.set(memberId, {})
    const list = membersOf.get(instance)
    if (list) list.push(memberId)
    else membersOf.set(instance, [memberId])
  }
  const instances = [...membersOf.keys()].sort(byString)
  if (instances.length === 0) return assignment
  for (const list of membersOf.values()) list.sort(byString)
  const dealt = new Map<string, number>()

  const ordered = [...partitions].sort((a, b) => byString(a.topic, b.topic) || a.partition - b.partition)
  ordered.forEach(({ topic, partition }, i) => {
    const instance = instances[i % instances.length]!
    const local = membersOf.get(instance)!
    const n = dealt.get(instance) ?? 0
    dealt.set(instance, n + 1)
    const topics = assignment.get(local[n % local.length]!)!
    ;(topics[topic] ??= []).push(partition)
  })
  return assignment
}

/** The process a member's metadata names, or the member itself when it names none. */
export const instanceOf = (memberId: string, memberMetadata: Buffer): string => {
  try {
    const { userData } = AssignerProtocol.MemberMetadata.decode(memberMetadata) ?? {}
    const instance = userData && userData.length > 0 ? userData.toString("utf8") : ""
    return instance === "" ? `member:${memberId}` : `instance:${instance}`
  } catch {
    return `member:${memberId}`
  }
}

/** A process-unique id: readable in a group's description, unique even for two processes on one host. */
export const newInstanceId = () => `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`

/** The assigner for the consumers of one process, all created with the same `instanceId`. */
export const instanceSpreadAssigner =
  (instanceId: string): PartitionAssigner =>
  ({ cluster }) => ({
    name: PROTOCOL_NAME,
    version: VERSION,
    async assign({ members, topics }) {
      const partitions = topics.flatMap((topic) =>
        cluster.findTopicPartitionMetadata(topic).map((m) => ({ topic, partition: m.partitionId }))
      )
      const assignment = spread(
        members.map(({ memberId, memberMetadata }) => ({
          memberId,
          instance: instanceOf(memberId, memberMetadata)
        })),
        partitions
      )
      return [...assignment].map(([memberId, topicPartitions]) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: VERSION,
          assignment: topicPartitions,
          userData: Buffer.alloc(0)
        })
      }))
    },
    protocol({ topics }) {
      return {
        name: PROTOCOL_NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: VERSION,
          topics,
          userData: Buffer.from(instanceId, "utf8")
        })
      }
    }
  })

/** What a process's consumers offer the group: this assigner first, kafkajs' round-robin as the fallback. */
export const partitionAssigners = (instanceId: string): Array<PartitionAssigner> => [
  instanceSpreadAssigner(instanceId),
  PartitionAssigners.roundRobin
]
