// @ts-check
// Templates are tagged strings that htm turns into Preact elements: text is always set as text,
// so nothing a run holds (a task, a model reply) is ever read as HTML.
import htm from 'htm'
import { h } from 'preact'

export const html = htm.bind(h)

/**
 * A keydown handler that does what a click does, for rows reached with Tab.
 * @param {() => void} action
 * @returns {(event: KeyboardEvent) => void}
 */
export function onEnterOrSpace(action) {
  return (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault()
      action()
    }
  }
}
