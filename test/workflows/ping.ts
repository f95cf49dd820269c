/** A trivial workflow for checking the Temporal server itself. */
export async function ping(name: string): Promise<string> {
  return `pong ${name}`;
}
