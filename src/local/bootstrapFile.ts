import path from "node:path"

/**
 * Where the service leaves the address of the local broker it runs (in the broker's data
 * directory), present exactly while the broker runs: `npm run produce` reads it.
 */
export const bootstrapFileOf = (dataDir: string) => path.join(dataDir, "bootstrap")
