import { describe, expect, test } from 'vitest'
import { z } from 'zod'
import { type AnyTool, defineTool } from '../tools/define-tool.js'
import { sleep } from '../tools/sleep.js'
import type { ParseContext } from './parse-actions.js'
import { parseActions } from './parse-actions.js'

const lookup = defineTool({
  name: 'lookup',
  description: 'look a word up',
  parameters: z.object({ word: z.string().min(1), limit: z.number().int().optional() }),
  execute: ({ word }) => word,
})

const context: ParseContext = {
  tools: new Map<string, AnyTool>([
    ['sleep', sleep],
    ['lookup', lookup],
  ]),
  subagents: ['researcher'],
  childIds: new Set(['old']),
}

const parse = (text: string) => parseActions({ text }, context)

describe('parseActions: forgiving of form', () => {
  test.each([
    ['bare JSON', '{"action":"finish","result":1}'],
    ['a fenced block with prose around it', 'Sure!\n```json\n{"action": "finish", "result": 1}\n```\nDone.'],
    ['an unlabelled fence', '```\n{"action":"finish","result":1}\n```'],
    ['JSON inside prose', 'I will now finish: {"action":"finish","result":1} — thanks'],
    ['trailing commas', '{"action":"finish","result":1,}'],
    ['prose with braces before the JSON', 'Plan {a, b}: {"action":"finish","result":1}'],
    ['an unclosed brace in prose before the JSON', 'Using the { notation. {"action":"finish","result":1}'],
    ['an unclosed bracket in prose before the JSON', 'Result [partial:\n{"action":"finish","result":1}'],
  ])('%s', (_name, text) => {
    expect(parse(text)).toEqual({ ok: true, actions: [{ action: 'finish', result: 1 }] })
  })

  test('a second JSON object in a reply is not dropped: every action object is taken, in order', () => {
    const add = defineTool({
      name: 'add',
      description: 'a + b',
      parameters: z.object({ a: z.number(), b: z.number() }),
      execute: ({ a, b }) => a + b,
    })
    const withAdd: ParseContext = { ...context, tools: new Map([...context.tools, ['add', add as AnyTool]]) }
    const both = {
      ok: true,
      actions: [
        { action: 'call_tool', tool: 'add', args: { a: 1, b: 2 } },
        { action: 'finish', result: 3 },
      ],
    }
    const call = '{"action":"call_tool","tool":"add","args":{"a":1,"b":2}}'
    const finish = '{"action":"finish","result":3}'
    for (const text of [
      `${call}\n${finish}`,
      `${call}${finish}`,
      `Sure:\n\`\`\`json\n${call}\n${finish}\n\`\`\``,
      `First:\n\`\`\`json\n${call}\n\`\`\`\nThen:\n\`\`\`json\n${finish}\n\`\`\``,
      `I add first, ${call}, and then I finish: ${finish}.`,
      `[${call}]\n${finish}`,
    ]) {
      expect(parseActions({ text }, withAdd), text).toEqual(both)
    }
    // A second object that is not an action is reported, never skipped.
    expect(parseActions({ text: `${call}\n{"result":3}` }, withAdd)).toEqual({
      ok: false,
      error: expect.stringMatching(/^action 2: missing "action" field/),
    })
  })

  test('reasoning left in the content (<think>…</think>) is not read: a draft action in it does not run', () => {
    const draft = '{"action":"call_tool","tool":"lookup","args":{"word":"x"}}'
    const finish = '{"action":"finish","result":"final"}'
    for (const text of [
      `<think>Maybe ${draft}? No, just finish.</think>\n${finish}`,
      `Maybe ${draft}? No.</think>\n${finish}`,
    ]) {
      expect(parse(text), text).toEqual({ ok: true, actions: [{ action: 'finish', result: 'final' }] })
    }
    // Tags in a result are its text.
    expect(parse('{"action":"finish","result":"write <think> first"}')).toMatchObject({ ok: true })
    expect(parse(`<think>I could ${draft}</think>`)).toEqual({
      ok: false,
      error: expect.stringMatching(/^the reply holds no JSON action outside its <think> block/),
    })
  })

  test('an array runs in order, and a wait may name ids launched earlier in the same reply', () => {
    const result = parse(
      JSON.stringify([
        { action: 'launch_subagents', agents: [{ agent: 'researcher', task: 'a', id: 'new' }] },
        { action: 'call_tool', tool: 'lookup', args: { word: 'x' } },
        { action: 'wait_for_subagents', ids: ['new', 'old'] },
      ]),
    )
    expect(result).toEqual({
      ok: true,
      actions: [
        { action: 'launch_subagents', agents: [{ agent: 'researcher', task: 'a', id: 'new' }] },
        { action: 'call_tool', tool: 'lookup', args: { word: 'x' } },
        { action: 'wait_for_subagents', ids: ['new', 'old'] },
      ],
    })
  })

  test("a second launch in the reply may not reuse the first one's id, and the agent's own ids stay as they were", () => {
    const launch = (id: string) => ({
      action: 'launch_subagents',
      agents: [{ agent: 'researcher', task: 't', id }],
    })
    const result = parse(JSON.stringify([launch('a'), launch('b'), launch('a')]))
    expect(result).toEqual({ ok: false, error: expect.stringMatching(/action 3: .*id "a" is already used/) })
    expect([...context.childIds]).toEqual(['old'])
  })

  test('native tool calls map to actions, keeping their call ids', () => {
    const result = parseActions(
      {
        toolCalls: [
          { id: 'a', name: 'lookup', arguments: '{"word":"w"}' },
          { id: 'b', name: 'wait_for_subagents', arguments: '' },
          { id: 'c', name: 'finish', arguments: { result: 'r' } },
        ],
      },
      context,
    )
    expect(result).toEqual({
      ok: true,
      actions: [
        { action: 'call_tool', tool: 'lookup', args: { word: 'w' }, callId: 'a' },
        { action: 'wait_for_subagents', callId: 'b' },
        { action: 'finish', result: 'r', callId: 'c' },
      ],
    })
  })
})

describe('parseActions: strict about meaning, with an exact error', () => {
  test.each([
    ['no JSON', 'I am done.', /no JSON action; expected JSON such as/],
    ['not an object', '[1, 2]', /action 1: expected a JSON object with an "action" field, got number 1/],
    ['unknown action', '{"action":"dance"}', /unknown action "dance"; expected one of launch_subagents/],
    ['missing action', '{"result":1}', /missing "action" field/],
    // Models often name the tool itself as the action; they were told only the protocol's names.
    [
      "a tool's name as the action",
      '{"action":"lookup","args":{"word":"a"}}',
      /^unknown action "lookup": lookup is a tool; call it as \{"action": "call_tool", "tool": "lookup", "args": \{…\}\}$/,
    ],
    [
      "an action's name in another case",
      '{"action":"Finish","result":1}',
      /^unknown action "Finish": did you mean "finish"\? Expected one of launch_subagents/,
    ],

    ['finish without result', '{"action":"finish"}', /finish needs a "result" field/],
    [
      'unknown agent',
      '{"action":"launch_subagents","agents":[{"agent":"hacker","task":"t"}]}',
      /unknown agent "hacker"; this agent can launch: researcher/,
    ],
    [
      'a depends_on position past the launch',
      '{"action":"launch_subagents","agents":[{"agent":"researcher","task":"t","depends_on":[2]}]}',
      /agents\[0\]: depends_on 2 is no position in this launch of 1; expected the position of another agent of it, from 0/,
    ],
    // Zod's own "Too small: expected number to be >=0" named neither the field nor what a position is.
    [
      'a negative depends_on position',
      '{"action":"launch_subagents","agents":[{"agent":"researcher","task":"t"},{"agent":"researcher","task":"t","depends_on":[-1]}]}',
      /agents\[1\]: "depends_on" -1 is no position: a position is the index of an agent in this launch, a whole number from 0 \(the first agent\)/,
    ],
    [
      'a depends_on entry that is neither id nor position',
      '{"action":"launch_subagents","agents":[{"agent":"researcher","task":"t","depends_on":[true]}]}',
      /agents\[0\]: "depends_on" entries must be sibling ids, or positions in this launch \(0 for the first agent\)/,
    ],
    [
      'empty task',
      '{"action":"launch_subagents","agents":[{"agent":"researcher","task":" "}]}',
      /"task" must be a non-empty string/,
    ],
    [
      'bad child id',
      '{"action":"launch_subagents","agents":[{"agent":"researcher","task":"t","id":"../x"}]}',
      /"id" must be 1-48 letters/,
    ],
    [
      'duplicate child id',
      '{"action":"launch_subagents","agents":[{"agent":"researcher","task":"t","id":"old"}]}',
      /id "old" is already used/,
    ],
    [
      'unknown wait id',
      '{"action":"wait_for_subagents","ids":["nope"]}',
      /unknown id "nope"; launched ids: old/,
    ],
    [
      'unknown tool',
      '{"action":"call_tool","tool":"rm_rf","args":{}}',
      /unknown tool "rm_rf"; available tools: sleep, lookup/,
    ],
    // Was 'unknown tool "undefined"': the model was not told that the field was missing.
    [
      'a call_tool without its tool',
      '{"action":"call_tool","args":{"word":"a"}}',
      /^call_tool needs "tool": the name of one of this agent's tools \(sleep, lookup\)$/,
    ],
    [
      'a call_tool whose tool is no string',
      '{"action":"call_tool","tool":{"name":"lookup"},"args":{"word":"a"}}',
      /^call_tool needs "tool": the name of one of this agent's tools \(sleep, lookup\), got an object$/,
    ],
    [
      'bad tool arguments',
      '{"action":"call_tool","tool":"lookup","args":{"word":""}}',
      /invalid arguments for tool "lookup": args.word:/,
    ],
    [
      'wrong argument type',
      '{"action":"call_tool","tool":"sleep","args":{"seconds":"3"}}',
      /args.seconds: .*expected number/,
    ],
  ])('%s', (_name, text, error) => {
    const result = parse(text)
    expect(result.ok).toBe(false)
    expect((result as { error: string }).error).toMatch(error)
  })

  // These were told "the reply holds no JSON action", though the model had written one: it was
  // not told what to correct.
  test.each([
    ['single quotes', "{'action': 'finish', 'result': 1}", "{'action': 'finish', 'result': 1} is not JSON ("],
    [
      'a comment',
      '```json\n{"action": "finish", // done\n "result": 1}\n```',
      '{"action": "finish", // done',
    ],
    [
      "Python's True",
      'Done: {"action": "finish", "result": True}',
      '{"action": "finish", "result": True} is not JSON (',
    ],
    [
      'a reply cut off',
      '{"action": "finish", "result": {"a": 1',
      '{"action": "finish", "result": {"a": 1 is never closed (was the reply cut off?)',
    ],
  ])(
    'JSON that does not parse (%s) is shown to the model with what is wrong with it',
    (_name, text, shown) => {
      const result = parse(text)
      expect(result.ok).toBe(false)
      const { error } = result as { error: string }
      expect(error.startsWith('the reply holds no JSON action that parses: ')).toBe(true)
      expect(error).toContain(shown)
      expect(error).toContain(
        'write strict JSON (double-quoted keys and strings, no comments), such as {"action": "finish"',
      )
    },
  )

  // They were dropped without a word: a native call made beside the finish never ran, unanswered.
  test('actions after a finish are refused: they would never run', () => {
    expect(
      parse('[{"action":"finish","result":1},{"action":"call_tool","tool":"lookup","args":{"word":"a"}}]'),
    ).toEqual({
      ok: false,
      error:
        'action 1: finish must be the last action of a reply: the action after it would never run; put them before it, or leave them out',
    })
    const native = parseActions(
      {
        text: '',
        toolCalls: [
          { id: 'c1', name: 'lookup', arguments: '{"word":"a"}' },
          { id: 'c2', name: 'finish', arguments: '{"result":1}' },
          { id: 'c3', name: 'sleep', arguments: '{"seconds":1}' },
          { id: 'c4', name: 'finish', arguments: '{"result":2}' },
        ],
      },
      context,
    )
    expect(native).toEqual({
      ok: false,
      error:
        'action 2: finish must be the last action of a reply: the 2 actions after it would never run; put them before it, or leave them out',
    })
    expect(
      parse('[{"action":"call_tool","tool":"lookup","args":{"word":"a"}},{"action":"finish","result":1}]').ok,
    ).toBe(true)
  })

  test('hostile replies: huge, deeply nested, too many actions', () => {
    expect(parse('x'.repeat(300_000))).toMatchObject({
      ok: false,
      error: expect.stringMatching(/at most 200000/),
    })
    // Unclosed brackets are passed in one scan, not one scan per bracket.
    const started = performance.now()
    expect(parse(`${'{ '.repeat(90_000)}{"action":"finish","result":1}`)).toMatchObject({ ok: true })
    expect(performance.now() - started).toBeLessThan(2000)
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`
    expect(parse(deep)).toMatchObject({ ok: false, error: expect.stringMatching(/nested deeper than 64/) })
    const nested = (levels: number) => `${'{"a":'.repeat(levels)}{}${'}'.repeat(levels)}`
    const finishWith = (levels: number) => parse(`{"action":"finish","result":${nested(levels)}}`)
    // The reply object is one level, its result's objects the rest: 64 levels pass, 65 do not.
    expect(finishWith(62)).toMatchObject({ ok: true })
    expect(finishWith(63)).toMatchObject({ ok: false, error: expect.stringMatching(/nested deeper than 64/) })
    const wide = `[{"action":"finish","result":[[1],{"b":[[[2]]]}, "x", null]}]`
    expect(parse(wide)).toMatchObject({ ok: true })
    const many = JSON.stringify(Array.from({ length: 101 }, () => ({ action: 'finish', result: 1 })))
    expect(parse(many)).toMatchObject({ ok: false, error: expect.stringMatching(/101 actions; at most 100/) })
  })

  test('an agent without sub-agents cannot launch', () => {
    const result = parseActions(
      { text: '{"action":"launch_subagents","agents":[{"agent":"researcher","task":"t"}]}' },
      { ...context, subagents: [] },
    )
    expect(result).toEqual({ ok: false, error: 'this agent cannot launch sub-agents' })
  })

  test("a native call's arguments are forgiven their form (a trailing comma, a fence), never their content", () => {
    const calls = [
      { id: 'a', name: 'finish', arguments: '{"result": 1,}' },
      { id: 'b', name: 'lookup', arguments: '```json\n{"word": "x",}\n```' },
    ]
    expect(parseActions({ toolCalls: calls.slice(0, 1) }, context)).toMatchObject({
      ok: true,
      actions: [{ action: 'finish', result: 1, callId: 'a' }],
    })
    expect(parseActions({ toolCalls: calls.slice(1) }, context)).toMatchObject({
      ok: true,
      actions: [{ action: 'call_tool', tool: 'lookup', args: { word: 'x' }, callId: 'b' }],
    })
    // Nothing is picked out of arguments that are not one value: the model is asked again.
    for (const text of [
      `{'word':'a','opts':{"exact":true}}`,
      '{"word": "one"} {"word": "two"}',
      'I look up {"word": "x"}',
    ]) {
      expect(
        parseActions({ toolCalls: [{ id: 'c', name: 'lookup', arguments: text }] }, context),
      ).toMatchObject({
        ok: false,
        error: expect.stringMatching(/arguments of tool call lookup are not valid JSON/),
      })
    }
  })

  test('a native call with arguments that are JSON but no object says what they are', () => {
    const cases = [
      ['null', /are null, not a JSON object/],
      ['"{\\"word\\":\\"x\\"}"', /are a JSON string holding an object \(encoded twice\), not a JSON object/],
      ['["x"]', /are a JSON array, not a JSON object/],
      ['3', /are number 3, not a JSON object/],
    ] as const
    for (const [text, error] of cases) {
      expect(
        parseActions({ toolCalls: [{ id: 'a', name: 'lookup', arguments: text }] }, context),
        text,
      ).toEqual({ ok: false, error: expect.stringMatching(error) })
    }
  })

  test('a native call with arguments that are not JSON', () => {
    const result = parseActions({ toolCalls: [{ id: 'a', name: 'lookup', arguments: '{"word":' }] }, context)
    expect(result).toMatchObject({
      ok: false,
      error: expect.stringMatching(/arguments of tool call lookup are not valid JSON/),
    })
  })
})

describe('parseActions: a finish checked against the agent output schema', () => {
  const output = z.object({ city: z.string(), population: z.number().int().min(0) })
  const withOutput: ParseContext = { ...context, output }

  test('a result that fits is the parsed value; one that does not names each wrong field', () => {
    expect(
      parseActions({ text: '{"action":"finish","result":{"city":"Oslo","population":709000}}' }, withOutput),
    ).toEqual({ ok: true, actions: [{ action: 'finish', result: { city: 'Oslo', population: 709000 } }] })
    const wrong = parseActions(
      { text: '{"action":"finish","result":{"city":7,"population":-1}}' },
      withOutput,
    )
    expect(wrong.ok).toBe(false)
    expect(!wrong.ok && wrong.error).toMatch(/^the finish result does not match this agent's output schema: /)
    expect(!wrong.ok && wrong.error).toMatch(/result\.city: .*string/)
    expect(!wrong.ok && wrong.error).toMatch(/result\.population: /)
  })

  test('JSON written inside a string is taken when it fits; other strings are refused', () => {
    const call = {
      id: 'c1',
      name: 'finish',
      arguments: JSON.stringify({ result: '{"city":"Oslo","population":1}' }),
    }
    expect(parseActions({ toolCalls: [call] }, withOutput)).toEqual({
      ok: true,
      actions: [{ action: 'finish', result: { city: 'Oslo', population: 1 }, callId: 'c1' }],
    })
    expect(parseActions({ text: '{"action":"finish","result":"Oslo"}' }, withOutput)).toMatchObject({
      ok: false,
      error: expect.stringMatching(/result: .*expected object/),
    })
  })

  test('without an output schema any result goes, a string of JSON stays a string', () => {
    expect(parse('{"action":"finish","result":"{\\"a\\":1}"}')).toEqual({
      ok: true,
      actions: [{ action: 'finish', result: '{"a":1}' }],
    })
  })

  test('zod defaults apply: the result is what the schema gives back', () => {
    const withDefault: ParseContext = { ...context, output: z.object({ ok: z.boolean().default(true) }) }
    expect(parseActions({ text: '{"action":"finish","result":{}}' }, withDefault)).toEqual({
      ok: true,
      actions: [{ action: 'finish', result: { ok: true } }],
    })
  })
})
