import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault suite runs on its own (`npm run test:faults`): minutes of crashes and outages.
    exclude: [...configDefaults.exclude, "test/faults/**"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Integration tests start real servers (PostgreSQL, Kafka); two cores cannot run many at once.
    maxWorkers: 2,
    minWorkers: 1
  }
})
