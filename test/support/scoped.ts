/**
 * For code that is not an Effect (vitest's global setup, hooks of the fault suite): a scoped effect
 * run now, what it made, and the function that closes its scope.
 */
import { Cause, Effect, Exit, Scope } from "effect"

export interface Acquired<A> {
  readonly value: A
  readonly release: () => Promise<void>
}

/** Rejects with the effect's own error, its scope already closed. */
export const acquire = async <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<Acquired<A>> => {
  const scope = Effect.runSync(Scope.make())
  const release = () => Effect.runPromise(Scope.close(scope, Exit.void))
  const exit = await Effect.runPromiseExit(Scope.extend(effect, scope))
  if (Exit.isSuccess(exit)) return { value: exit.value, release }
  await release()
  const error = Cause.squash(exit.cause)
  throw error instanceof Error ? error : new Error(String(error))
}
