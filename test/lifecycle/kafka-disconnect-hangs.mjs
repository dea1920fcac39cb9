/**
 * Loaded into the service's process (`NODE_OPTIONS=--import …`) by tests of closing down: every
 * kafkajs admin client's `disconnect` never returns, as when a request to a broker that stopped
 * answering is never settled. Closing down then waits on it for good.
 */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const { Kafka } = require("kafkajs")
const admin = Kafka.prototype.admin
Kafka.prototype.admin = function (...args) {
  const client = admin.apply(this, args)
  client.disconnect = () => new Promise(() => {})
  return client
}
