// DOM building for the page. Text is only ever appended as text nodes, never parsed as HTML.
// Announcements go to the page's live region (#announcer) for screen readers.

/** Builds an element; attributes are set with setAttribute, children appended as nodes or text. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue
    if (name === "class") element.className = value
    else element.setAttribute(name, value === true ? "" : String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue
    element.append(child instanceof Node ? child : String(child))
  }
  return element
}

export const isRecord = (value) => typeof value === "object" && value !== null && !Array.isArray(value)

// Re-setting identical text would not be re-announced, so clear first and write on the next frame.
export function announce(message) {
  const announcer = document.getElementById("announcer")
  announcer.textContent = ""
  requestAnimationFrame(() => {
    announcer.textContent = message
  })
}
