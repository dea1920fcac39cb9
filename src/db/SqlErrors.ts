/**
 * What a failed statement means for whoever retries it, from PostgreSQL's SQLSTATE
 * (https://www.postgresql.org/docs/current/errcodes-appendix.html). Defined here once: ingestion
 * asks whether the order was refused, the pool whether the server may yet be reached.
 */
import { SqlError } from "@effect/sql/SqlError"

/** The SQLSTATE PostgreSQL answered with; none when the failure came before an answer. */
export const sqlState = (error: SqlError): string | undefined => {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  // Five characters, of a class that starts with a digit or is F0, HV, P0 or XX: never one of
  // Node's own codes (ECONNREFUSED, EPIPE…).
  return typeof code === "string" && /^[0-9FHPX][0-9A-Z]{4}$/.test(code) ? code : undefined
}

/**
 * PostgreSQL said no to the data itself, so retrying will not help: classes 22 (data exception),
 * 23 (integrity constraint) and 54 (a program limit, e.g. an index row too big).
 */
export const isDataError = (error: SqlError): boolean => {
  const code = sqlState(error)
  return code !== undefined && ["22", "23", "54"].includes(code.slice(0, 2))
}

/**
 * The server could not be reached or is not taking work yet, which may pass: no answer at all
 * (refused, reset, timed out), class 08 (connection exception), 53 (insufficient resources, e.g.
 * too many connections) or 57P01–57P03 (shutting down, crashed, starting up). Anything else — a
 * wrong password, a missing database, a migration PostgreSQL refuses — will not pass by waiting.
 */
export const isConnectionError = (error: unknown): error is SqlError => {
  if (!(error instanceof SqlError)) return false
  const code = sqlState(error)
  return code === undefined || code.startsWith("08") || code.startsWith("53") || /^57P0[123]$/.test(code)
}

/**
 * PostgreSQL cancelled the statement (57014): past the statement timeout of reads for clients
 * (`database.client_statement_timeout`), or cancelled on purpose.
 */
export const isStatementCancelled = (error: SqlError): boolean => sqlState(error) === "57014"

/** PostgreSQL's (or the network's) own words for a failure, rather than the client's generic message. */
export const databaseReason = (error: unknown): string => {
  const cause = error instanceof SqlError ? error.cause : error
  const message = (cause as { message?: unknown } | undefined)?.message
  const detail = (cause as { detail?: unknown } | undefined)?.detail
  const text =
    typeof message === "string" && message !== ""
      ? message
      : error instanceof Error
        ? error.message
        : String(error)
  return typeof detail === "string" ? `${text} (${detail})` : text
}
