import { expect, test } from 'vitest'
import { splitTasks } from '../src/launch.js'

test('tasks split on AND in capitals, not on a task\'s own "and", nor on an AND inside quotes', () => {
  expect(splitTasks('review auth.py AND test auth.py')).toEqual(['review auth.py', 'test auth.py'])
  expect(splitTasks('search and replace AND ANDROID build AND BRAND check')).toEqual([
    'search and replace',
    'ANDROID build',
    'BRAND check',
  ])
  expect(splitTasks('review "pros AND cons" auth.py AND test auth.py')).toEqual([
    'review "pros AND cons" auth.py',
    'test auth.py',
  ])
  expect(splitTasks('one task')).toEqual(['one task'])
  expect(() => splitTasks('a AND  AND b')).toThrow(/cannot split "a AND {2}AND b" into tasks/)
  expect(() => splitTasks('AND b')).toThrow(/cannot split/)
})
