import { Annotation, END, MemorySaver, Send, START, StateGraph } from '@langchain/langgraph'
import type { Contender } from './contender.js'
import { modelLatency } from './contender.js'

/** The graph's state: the job, and one entry per finished worker, gathered by a reducer. */
const FanOutState = Annotation.Root({
  children: Annotation<number>,
  steps: Annotation<number>,
  latencyMs: Annotation<number>,
  results: Annotation<number[]>({ reducer: (left, right) => left.concat(right), default: () => [] }),
})

interface WorkerInput {
  id: number
  steps: number
  latencyMs: number
}

/** One child: `steps` model calls of fixed latency, keeping its messages, then its turn count. */
async function worker(input: WorkerInput): Promise<{ results: number[] }> {
  const messages: string[] = []
  let turn = 0
  for (;;) {
    await modelLatency(input.latencyMs)
    const action = turn < input.steps - 1 ? 'call_tool' : 'finish'
    messages.push(action)
    turn++
    if (action === 'finish') return { results: [turn] }
  }
}

/** START → plan, which fans out with one `Send` per child to `worker`; every worker → END. */
function fanOutGraph(withSaver: boolean) {
  const graph = new StateGraph(FanOutState)
    .addNode('plan', () => ({}))
    .addNode('worker', worker)
    .addEdge(START, 'plan')
    .addConditionalEdges(
      'plan',
      (state) =>
        Array.from(
          { length: state.children },
          (_, id) => new Send('worker', { id, steps: state.steps, latencyMs: state.latencyMs }),
        ),
      ['worker'],
    )
    .addEdge('worker', END)
  return graph.compile(withSaver ? { checkpointer: new MemorySaver() } : {})
}

let threads = 0

/** LangGraph.js: a StateGraph with the Send API, with or without a MemorySaver checkpointer. */
export function langGraph(withSaver: boolean): Contender {
  return {
    async fanOut({ children, steps, latencyMs }) {
      const app = fanOutGraph(withSaver)
      const config = {
        recursionLimit: children + 100,
        ...(withSaver ? { configurable: { thread_id: `bench-${++threads}` } } : {}),
      }
      const final = await app.invoke({ children, steps, latencyMs }, config)
      if (final.results.length !== children) {
        throw new Error(`langgraph: ${final.results.length} of ${children} workers reported`)
      }
      return { steps: final.results.reduce((a, b) => a + b, 0) }
    },
  }
}
