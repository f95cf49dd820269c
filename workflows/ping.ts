/**
 * workerPing: answers at once. A client starts it when Temporal's list of pollers cannot say whether a worker really
 * serves the task queue now (a worker that stopped a minute ago looks like one waiting in a long poll): a worker that
 * completes it is there. The worker's identity is in the history's first WorkflowTaskStarted event.
 */
export async function workerPing(): Promise<'pong'> {
  return 'pong';
}
