/** `npm run dlq -- …` against the service under test, as an operator runs it. */
import { spawn } from "node:child_process"
import { Effect } from "effect"
import { baseUrl } from "./app.ts"

/**
 * Runs the CLI with `args` against the service under test, with `env` and none of the machine's
 * own credentials; its exit code and what it printed.
 */
export const runDlq = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.flatMap(baseUrl, (url) =>
    Effect.promise(
      () =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(
            process.execPath,
            ["--import", "tsx", "src/tools/dlq.ts", ...args, "--url", url],
            {
              env: {
                ...process.env,
                ORDER_SERVICE_TOKEN: "",
                DEAD_LETTERS_REPLAY_TOKEN: "",
                ORDER_SERVICE_OIDC_ISSUER: "",
                ...env
              }
            }
          )
          let stdout = ""
          let stderr = ""
          child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
          child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
          child.on("close", (code) => resolve({ code, stdout, stderr }))
        })
    )
  )
