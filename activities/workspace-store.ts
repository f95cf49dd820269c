/**
 * The object store sessions keep their workspaces in: any S3-compatible store (the local stack's SeaweedFS, AWS S3,
 * Cloud Storage through its XML API with HMAC keys, MinIO, Ceph). A session's snapshots (after its runs: one object
 * each, the last few kept; sessions from before snapshots: one object), each written whole (a PUT replaces an object
 * atomically), read whole, copied for a fork, all deleted when the session ends.
 */
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { sessionPrefix, workspaceKey, type WorkspaceStoreConfig } from '../core/workspace';

export interface WorkspaceStore {
  /** Where it keeps them, for messages: s3://bucket/prefix at the endpoint. */
  readonly where: string;
  /** `seq`: the snapshot after that run; none: the session's one workspace object (sessions before snapshots). */
  put(sessionId: string, body: Buffer, metadata: Record<string, string>, seq?: number): Promise<void>;
  /** Undefined when there is no such object. */
  get(sessionId: string, seq?: number): Promise<Buffer | undefined>;
  delete(sessionId: string, seq?: number): Promise<void>;
  /** One session's snapshot as another's (a fork's first). */
  copy(from: { sessionId: string; seq: number }, to: { sessionId: string; seq: number }): Promise<void>;
  /** Every object of the session (it has ended). */
  deleteAll(sessionId: string): Promise<number>;
}

export function s3WorkspaceStore(config: WorkspaceStoreConfig): WorkspaceStore {
  // This project runs on Node 20 by design (its Kubernetes client's newest release for it); the SDK's notice about
  // its own future Node versions is for its operators, not for every CLI user of a worker.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const s3 = new S3Client({
    region: config.region,
    ...(config.endpoint ? { endpoint: config.endpoint, forcePathStyle: true } : {}),
    ...(config.accessKeyId && config.secretAccessKey
      ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } }
      : {}),
    // Temporal retries the step; the SDK's own retries stay short so a step's heartbeat is never starved.
    maxAttempts: 2,
  });
  const key = (sessionId: string, seq?: number) => workspaceKey(config.prefix, sessionId, seq);
  return {
    where: `s3://${config.bucket}/${config.prefix}${config.endpoint ? ` at ${config.endpoint}` : ''}`,
    async put(sessionId, body, metadata, seq) {
      await s3.send(
        new PutObjectCommand({
          Bucket: config.bucket,
          Key: key(sessionId, seq),
          Body: body,
          ContentType: 'application/gzip',
          Metadata: metadata,
        }),
      );
    },
    async get(sessionId, seq) {
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: config.bucket, Key: key(sessionId, seq) }));
        return Buffer.from(await r.Body!.transformToByteArray());
      } catch (err) {
        if (err instanceof NoSuchKey || (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404))
          return undefined;
        throw err;
      }
    },
    async delete(sessionId, seq) {
      await s3.send(new DeleteObjectCommand({ Bucket: config.bucket, Key: key(sessionId, seq) }));
    },
    async copy(from, to) {
      await s3.send(
        new CopyObjectCommand({
          Bucket: config.bucket,
          Key: key(to.sessionId, to.seq),
          CopySource: encodeURI(`${config.bucket}/${key(from.sessionId, from.seq)}`),
        }),
      );
    },
    async deleteAll(sessionId) {
      const prefix = sessionPrefix(config.prefix, sessionId);
      let deleted = 0;
      let token: string | undefined;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({ Bucket: config.bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) {
          await s3.send(new DeleteObjectCommand({ Bucket: config.bucket, Key: o.Key! }));
          deleted++;
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return deleted;
    },
  };
}
