/**
 * Follows a container's log through the Kubernetes API as it is written (GET pods/log?follow=true), handing each
 * piece to a callback. Unlike the client library's Log helper it reports the end of the stream and a broken
 * connection, so the run step can tell "the container is done" from "the stream was lost".
 */
import http from 'node:http';
import https from 'node:https';
import { ApiException } from '@kubernetes/client-node';
import type { Kube } from './kube';

export interface LogStreamOptions {
  namespace: string;
  pod: string;
  container: string;
  /** The server stops after this many bytes. */
  limitBytes: number;
  follow: boolean;
  /** Only what was written from this moment on (ms since the epoch; the server counts whole seconds). */
  since?: number;
}

export interface LogStream {
  /** Settles when the stream ends: 'end' when the server closed it normally, an Error when the connection broke. */
  done: Promise<'end' | Error>;
  /**
   * Stops handing pieces to the callback. The rest is read and dropped for up to a moment (the container is usually
   * about to end it: its connection then goes back to the keep-alive pool, sparing the next request a TLS
   * handshake); a stream still open after that is cut.
   */
  abort(): void;
}

/** How long an aborted log stream may drain before its connection is cut. */
const DRAIN_MS = 3_000;

/**
 * Opens the log stream. Rejects with an ApiException when the API answers with an error (400 while the container
 * has not started yet, 404 when the pod is gone).
 */
export async function openLogStream(
  kube: Kube,
  o: LogStreamOptions,
  onData: (piece: Buffer) => void,
): Promise<LogStream> {
  const cluster = kube.config.getCurrentCluster();
  if (!cluster) throw new Error('no current Kubernetes cluster in the kubeconfig');
  const url = new URL(`${cluster.server}/api/v1/namespaces/${o.namespace}/pods/${o.pod}/log`);
  url.searchParams.set('container', o.container);
  url.searchParams.set('follow', String(o.follow));
  url.searchParams.set('limitBytes', String(o.limitBytes));
  if (o.since !== undefined)
    url.searchParams.set('sinceTime', new Date(Math.floor(o.since / 1000) * 1000).toISOString());
  const options: https.RequestOptions = {};
  await kube.config.applyToHTTPSOptions(options);
  const transport = url.protocol === 'http:' ? http : https;
  return new Promise<LogStream>((resolve, reject) => {
    const req = transport.request(url, { ...options, method: 'GET' }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          reject(new ApiException(res.statusCode ?? 500, `log of pod ${o.pod}`, body, {}));
        });
        res.on('error', reject);
        return;
      }
      let ended = false;
      const done = new Promise<'end' | Error>((settle) => {
        res.on('data', onData);
        res.on('end', () => settle('end'));
        res.on('error', (err) => settle(err));
        res.on('close', () => settle(res.complete ? 'end' : new Error(`log stream of pod ${o.pod} closed early`)));
      });
      void done.then(() => (ended = true));
      const abort = (): void => {
        if (ended) return;
        res.off('data', onData);
        res.resume();
        setTimeout(() => req.destroy(), DRAIN_MS).unref();
      };
      resolve({ done, abort });
    });
    req.on('error', reject);
    req.end();
  });
}
