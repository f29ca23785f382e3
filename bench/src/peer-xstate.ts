import {
  type AnyActorLogic,
  type AnyActorRef,
  assign,
  createActor,
  fromPromise,
  setup,
  toPromise,
} from 'xstate'
import type { Contender } from './contender.js'
import { modelLatency } from './contender.js'

interface ChildInput {
  steps: number
  latencyMs: number
}

/** What a scripted model call is given: where the agent is in its script. */
function modelInput({ context }: { context: ChildInput & { turn: number } }) {
  return { turn: context.turn, steps: context.steps, latencyMs: context.latencyMs }
}

/** One agent: call the model, again while the script says so, then stop (a final state). */
const childMachine = setup({
  types: {
    input: {} as ChildInput,
    context: {} as ChildInput & { turn: number; messages: string[] },
  },
  actors: {
    model: fromPromise<string, { turn: number; steps: number; latencyMs: number }>(async ({ input }) => {
      await modelLatency(input.latencyMs)
      return input.turn < input.steps - 1 ? 'call_tool' : 'finish'
    }),
  },
}).createMachine({
  context: ({ input }) => ({ ...input, turn: 0, messages: [] }),
  initial: 'thinking',
  states: {
    thinking: {
      invoke: {
        src: 'model',
        input: modelInput,
        onDone: [
          {
            guard: ({ event }) => event.output === 'finish',
            target: 'done',
            actions: assign({ turn: ({ context }) => context.turn + 1 }),
          },
          {
            target: 'thinking',
            reenter: true,
            actions: assign({
              turn: ({ context }) => context.turn + 1,
              messages: ({ context, event }) => [...context.messages, event.output],
            }),
          },
        ],
      },
    },
    done: { type: 'final', entry: ({ self }) => self._parent?.send({ type: 'child.done' }) },
  },
})

/** One parent that spawns every child into its context and counts them as they stop. */
const parentMachine = setup({
  types: {
    input: {} as ChildInput & { children: number },
    context: {} as ChildInput & { children: number; refs: AnyActorRef[]; done: number },
    events: {} as { type: 'child.done' },
  },
  actors: { child: childMachine },
}).createMachine({
  context: ({ input }) => ({ ...input, refs: [], done: 0 }),
  initial: 'waiting',
  entry: assign({
    refs: ({ context, spawn }) =>
      Array.from({ length: context.children }, () =>
        spawn('child', { input: { steps: context.steps, latencyMs: context.latencyMs } }),
      ),
  }),
  states: {
    waiting: {
      on: {
        'child.done': [
          { guard: ({ context }) => context.done + 1 === context.children, target: 'finished' },
          { actions: assign({ done: ({ context }) => context.done + 1 }) },
        ],
      },
    },
    finished: { type: 'final' },
  },
})

/** The tree machine, for its nodes to spawn more of themselves. */
let treeLogic: AnyActorLogic

/** A binary tree: each node calls the model, spawns two nodes and waits, then calls it again. */
const treeMachine = setup({
  types: {
    input: {} as { depth: number; maxDepth: number; latencyMs: number },
    context: {} as { depth: number; maxDepth: number; latencyMs: number; done: number },
    events: {} as { type: 'child.done' },
  },
  actors: {
    model: fromPromise<void, number>(({ input }) => modelLatency(input)),
  },
}).createMachine({
  context: ({ input }) => ({ ...input, done: 0 }),
  initial: 'thinking',
  states: {
    thinking: {
      invoke: {
        src: 'model',
        input: ({ context }) => context.latencyMs,
        onDone: [
          { guard: ({ context }) => context.depth === context.maxDepth - 1, target: 'done' },
          { target: 'waiting' },
        ],
      },
    },
    waiting: {
      entry: assign({
        done: ({ context, spawn }) => {
          for (let i = 0; i < 2; i++) {
            spawn(treeLogic, {
              input: { depth: context.depth + 1, maxDepth: context.maxDepth, latencyMs: context.latencyMs },
            })
          }
          return 0
        },
      }),
      on: {
        'child.done': [
          { guard: ({ context }) => context.done === 1, target: 'finishing' },
          { actions: assign({ done: ({ context }) => context.done + 1 }) },
        ],
      },
    },
    finishing: {
      invoke: { src: 'model', input: ({ context }) => context.latencyMs, onDone: 'done' },
    },
    done: {
      type: 'final',
      entry: ({ context, self }) => {
        if (context.depth > 0) self._parent?.send({ type: 'child.done' })
      },
    },
  },
})
treeLogic = treeMachine

/** A stand-in store: each write is the persisted snapshot as JSON, in a map. */
function jsonStore() {
  const kept = new Map<string, string>()
  const totals = { writes: 0, ms: 0 }
  return {
    totals,
    write(key: string, actor: AnyActorRef) {
      const started = performance.now()
      kept.set(key, JSON.stringify(actor.getPersistedSnapshot()))
      totals.ms += performance.now() - started
      totals.writes++
    },
  }
}

/** Raw XState v5, the way the runtime's first design used it: the children live in the parent. */
export const xstateParent: Contender = {
  async fanOut({ children, steps, latencyMs }) {
    const actor = createActor(parentMachine, { input: { children, steps, latencyMs } })
    actor.start()
    await toPromise(actor)
    return { steps: children * steps }
  },

  async recursion({ depth, latencyMs }) {
    const actor = createActor(treeMachine, { input: { depth: 0, maxDepth: depth, latencyMs } })
    actor.start()
    await toPromise(actor)
    return { steps: 2 ** depth - 1 + (2 ** (depth - 1) - 1) }
  },

  async persistence({ agents, steps }) {
    // The run's state is the parent's persisted snapshot, children included: a step rewrites it.
    // Every step is counted; at most 300 evenly spread steps are written and timed (the rest would
    // take minutes at 10,000 agents), and the cost is scaled to all of them.
    const children = agents - 1
    const total = children * steps
    const every = Math.max(1, Math.floor(total / 300))
    const store = jsonStore()
    const actor = createActor(parentMachine, { input: { children, steps, latencyMs: 0 } })
    let seen = 0
    actor.start()
    for (const ref of Object.values(actor.getSnapshot().children) as AnyActorRef[]) {
      ref.subscribe(() => {
        if (++seen % every === 0) store.write('run', actor)
      })
    }
    await toPromise(actor)
    const perWrite = store.totals.ms / Math.max(1, store.totals.writes)
    return { steps: total, writes: total, storeMs: perWrite * total }
  },

  async idle({ agents }, measure) {
    const parked = parentMachine.provide({ actors: { child: parkedChild() } })
    const actor = createActor(parked, { input: { children: agents, steps: 2, latencyMs: 0 } })
    actor.start()
    await measure()
    actor.stop()
  },
}

/** Raw XState v5 with one actor per agent and no parent: the registry is a plain array. */
export const xstateIndependent: Contender = {
  async fanOut({ children, steps, latencyMs }) {
    const actors = Array.from({ length: children }, () =>
      createActor(childMachine, { input: { steps, latencyMs } }),
    )
    for (const actor of actors) actor.start()
    await Promise.all(actors.map((actor) => toPromise(actor)))
    return { steps: children * steps }
  },

  async persistence({ agents, steps }) {
    const store = jsonStore()
    const actors = Array.from({ length: agents - 1 }, () =>
      createActor(childMachine, { input: { steps, latencyMs: 0 } }),
    )
    actors.forEach((actor, i) => {
      actor.subscribe(() => store.write(`a${i}`, actor))
    })
    for (const actor of actors) actor.start()
    await Promise.all(actors.map((actor) => toPromise(actor)))
    return { steps: (agents - 1) * steps, writes: store.totals.writes, storeMs: store.totals.ms }
  },

  async idle({ agents }, measure) {
    const actors = idleChildren(agents)
    for (const actor of actors) actor.start()
    await measure()
    for (const actor of actors) actor.stop()
  },
}

/** An agent whose model call never returns until it is stopped: a parked actor. */
function parkedChild() {
  return childMachine.provide({
    actors: {
      model: fromPromise<string, { turn: number; steps: number; latencyMs: number }>(
        () => new Promise<string>(() => {}),
      ),
    },
  })
}

function idleChildren(agents: number) {
  const logic = parkedChild()
  return Array.from({ length: agents }, () => createActor(logic, { input: { steps: 2, latencyMs: 0 } }))
}

interface AgentInput {
  steps: number
  latencyMs: number
  id: string
}

/**
 * Cohort's step done with XState alone: a model call (an invoked promise), then the tool its
 * reply names (another invoked promise), the reply and the tool's result appended to the
 * agent's history, and every change's persisted snapshot written as JSON to a map, as Cohort's
 * memory store keeps it. What XState costs for the work a Cohort step does (not its checks).
 */
const agentMachine = setup({
  types: {
    input: {} as AgentInput,
    context: {} as AgentInput & { turn: number; messages: { role: string; content: string }[] },
  },
  actors: {
    model: fromPromise<string, { turn: number; steps: number; latencyMs: number }>(async ({ input }) => {
      await modelLatency(input.latencyMs)
      return input.turn < input.steps - 1
        ? JSON.stringify({ action: 'call_tool', tool: 'noop', args: {} })
        : JSON.stringify({ action: 'finish', result: 'done' })
    }),
    tool: fromPromise<string, { args: unknown }>(async () => 'ok'),
  },
  actions: {
    /** The model's reply joins the history, as the assistant's message. */
    takeReply: assign({
      turn: ({ context }) => context.turn + 1,
      messages: ({ context }, reply: string) => [...context.messages, { role: 'assistant', content: reply }],
    }),
  },
}).createMachine({
  context: ({ input }) => ({
    ...input,
    turn: 0,
    messages: [
      { role: 'system', content: 'Work in steps.' },
      { role: 'user', content: input.id },
    ],
  }),
  initial: 'thinking',
  states: {
    thinking: {
      invoke: {
        src: 'model',
        input: modelInput,
        onDone: [
          {
            guard: ({ event }) => (JSON.parse(event.output) as { action: string }).action === 'finish',
            target: 'done',
            actions: { type: 'takeReply', params: ({ event }) => event.output },
          },
          {
            target: 'acting',
            actions: { type: 'takeReply', params: ({ event }) => event.output },
          },
        ],
      },
    },
    acting: {
      invoke: {
        src: 'tool',
        input: ({ context }) => ({ args: JSON.parse(context.messages.at(-1)!.content).args }),
        onDone: {
          target: 'thinking',
          actions: assign({
            messages: ({ context, event }) => [
              ...context.messages,
              { role: 'user', content: `[call_tool noop] ${event.output}` },
            ],
          }),
        },
      },
    },
    done: { type: 'final' },
  },
})

/** XState's independent actors doing Cohort's step (a model call, a tool call, each change written). */
export const xstateAgent: Contender = {
  async fanOut({ children, steps, latencyMs }) {
    const store = new Map<string, string>()
    let writes = 0
    const actors = Array.from({ length: children }, (_, i) =>
      createActor(agentMachine, { input: { steps, latencyMs, id: `w${i}` } }),
    )
    actors.forEach((actor, i) => {
      const id = `w${i}`
      actor.subscribe(() => {
        store.set(id, JSON.stringify(actor.getPersistedSnapshot()))
        writes++
      })
    })
    for (const actor of actors) actor.start()
    await Promise.all(actors.map((actor) => toPromise(actor)))
    return { steps: children * steps, writes }
  },
}
