/** Strong entity tags for what the service serves (orders, the page's files). */
import { createHash } from "node:crypto"

/**
 * A strong ETag, quotes included: the content's SHA-1 in base64url (27 characters). A content
 * hash, not a security boundary: it only has to change when the content does.
 */
export const strongEtag = (content: string | Uint8Array): string =>
  `"${createHash("sha1").update(content).digest("base64url")}"`

/**
 * An order's ETag: the SHA-256 of its canonical JSON in base64url, as stored with it
 * (`orders.content_hash`), so that a read from the database need not hash again.
 */
export const orderEtagOfDigest = (digest: string): string => `"${digest}"`

export const orderEtag = (json: string): string =>
  orderEtagOfDigest(createHash("sha256").update(json).digest("base64url"))
