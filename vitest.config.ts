import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Integration tests start real servers (PostgreSQL, Kafka); two cores cannot run many at once.
    maxWorkers: 2,
    minWorkers: 1
  }
})
