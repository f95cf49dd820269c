/**
 * A worker process that can die at a chosen request to the Kubernetes API. Every request a step makes (calls,
 * watches, log streams, attach upgrades) goes through the KubeConfig's agent: each one is a crash point, named by
 * its verb and resource. Dying "before" a point: the request is never sent. Dying "after" it: the apiserver has
 * done it, but its answer never reaches the step. From then on the incarnation does nothing the cluster can see:
 * its open streams are cut, its later requests are never sent and its heartbeats are not recorded, as for a worker
 * killed with SIGKILL.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Agent } from 'node:http';
import type { Socket } from 'node:net';
import { createKube, type Kube } from '../../activities/kube';
import { loadKubeConfig } from '../../worker/connect';

export type CrashMode = 'before' | 'after';

/** Where a try dies: at its `point`-th request (1-based). */
export interface CrashAt {
  point: number;
  mode: CrashMode;
}

type Emitter = { emit: (event: string | symbol, ...args: unknown[]) => boolean };

/** `GET pods/{}/log follow`: a request as a point's name (namespaces and object names left out). */
export function pointName(method: string | undefined, path: string): string {
  const [p, query = ''] = path.split('?');
  const parts = p
    .replace(/^\/(api\/v1|apis\/[^/]+\/[^/]+)\//, '')
    .replace(/^namespaces\/[^/]+\//, '')
    .split('/');
  const named = parts.map((s, i) => (i === 1 ? '{}' : s)).join('/');
  const flags = new URLSearchParams(query);
  const extra = ['watch', 'follow'].filter((f) => flags.get(f) === 'true');
  return [method ?? 'GET', named, ...extra].join(' ');
}

export class Incarnation {
  /** Every request this incarnation made, in order, by name. */
  readonly points: string[] = [];
  /** The point it died at, once it has. */
  diedAt?: { point: number; name: string; mode: CrashMode };
  readonly kube: Kube;
  private readonly open = new Set<{ destroy(): void }>();
  private readonly instrumented = new WeakSet<Agent>();
  private deathListeners: Array<() => void> = [];

  constructor(
    kubeconfig: string | undefined,
    private readonly crash?: CrashAt,
  ) {
    const config = loadKubeConfig(kubeconfig);
    this.kube = createKube(config, { shared: true });
    // createKube has given the config its keep-alive agents; every one of them is watched here.
    const target = config as unknown as { createAgent: (...a: unknown[]) => Agent };
    const make = target.createAgent.bind(config);
    target.createAgent = (...a: unknown[]) => this.watchAgent(make(...a));
  }

  get dead(): boolean {
    return this.diedAt !== undefined;
  }

  /** Resolves when the incarnation dies (never, when its crash point is not reached). */
  readonly death = new Promise<void>((resolve) => this.deathListeners.push(resolve));

  /** Ends what is left of it (its pod cache, its connections): for a try that finished, or after its death. */
  close(): void {
    this.kube.close();
  }

  /**
   * Counts a crash point that is not a request (a heartbeat): 'go' when the incarnation lives on, 'before' when it
   * died before the point took effect, 'after' when it takes effect and then the incarnation dies (call `dieAfter`).
   */
  reach(name: string): 'go' | 'before' | 'after' | 'dead' {
    if (this.dead) return 'dead';
    const n = this.points.push(name);
    if (this.crash?.point !== n) return 'go';
    if (this.crash.mode === 'before') {
      this.die(n, 'before');
      return 'before';
    }
    return 'after';
  }

  /** Dies right after the point `reach` answered 'after' for. */
  dieAfter(): void {
    this.die(this.points.length, 'after');
  }

  private die(point: number, mode: CrashMode): void {
    if (this.dead) return;
    this.diedAt = { point, name: this.points[point - 1], mode };
    for (const o of this.open) o.destroy();
    this.open.clear();
    this.kube.pods?.stop();
    for (const l of this.deathListeners) l();
  }

  /** What the incarnation has open (requests, responses, upgraded sockets): cut when it dies. */
  private track<T extends { destroy(): void }>(o: T): T {
    this.open.add(o);
    return o;
  }

  private watchAgent(agent: Agent): Agent {
    if (this.instrumented.has(agent)) return agent;
    this.instrumented.add(agent);
    const internal = agent as unknown as { addRequest: (req: ClientRequest, ...rest: unknown[]) => void };
    const add = internal.addRequest.bind(agent);
    internal.addRequest = (req: ClientRequest, ...rest: unknown[]) => {
      // A dead process sends nothing. Its code still unwinds here (every request fails before it is sent), so it
      // leaves no timer behind; nothing of it reaches the cluster.
      const reached = this.reach(pointName(req.method, req.path));
      if (reached === 'dead' || reached === 'before') {
        process.nextTick(() => req.destroy(new Error('the worker is dead')));
        return;
      }
      const n = this.points.length;
      this.track(req);
      const emit = req.emit.bind(req) as Emitter['emit'];
      (req as unknown as Emitter).emit = (event: string | symbol, ...args: unknown[]) => {
        if (event === 'response' || event === 'upgrade') {
          if (reached === 'after') {
            // The apiserver did it; the answer dies with the process.
            if (event === 'response') (args[0] as IncomingMessage).resume();
            else (args[1] as Socket).destroy();
            this.die(n, 'after');
            return false;
          }
          this.track(event === 'response' ? (args[0] as IncomingMessage) : (args[1] as Socket));
        }
        return emit(event, ...args);
      };
      add(req, ...rest);
    };
    return agent;
  }
}
