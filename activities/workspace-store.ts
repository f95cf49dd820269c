/**
 * The object store sessions keep their workspaces in: any S3-compatible store (the local stack's SeaweedFS, AWS S3,
 * Cloud Storage through its XML API with HMAC keys, MinIO, Ceph). One object per session, written whole (a PUT
 * replaces an object atomically), read whole, deleted when the session ends.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { workspaceKey, type WorkspaceStoreConfig } from '../core/workspace';

export interface WorkspaceStore {
  /** Where it keeps them, for messages: s3://bucket/prefix at the endpoint. */
  readonly where: string;
  put(sessionId: string, body: Buffer, metadata: Record<string, string>): Promise<void>;
  /** Undefined when there is no such object. */
  get(sessionId: string): Promise<Buffer | undefined>;
  delete(sessionId: string): Promise<void>;
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
  const key = (sessionId: string) => workspaceKey(config.prefix, sessionId);
  return {
    where: `s3://${config.bucket}/${config.prefix}${config.endpoint ? ` at ${config.endpoint}` : ''}`,
    async put(sessionId, body, metadata) {
      await s3.send(
        new PutObjectCommand({
          Bucket: config.bucket,
          Key: key(sessionId),
          Body: body,
          ContentType: 'application/gzip',
          Metadata: metadata,
        }),
      );
    },
    async get(sessionId) {
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: config.bucket, Key: key(sessionId) }));
        return Buffer.from(await r.Body!.transformToByteArray());
      } catch (err) {
        if (err instanceof NoSuchKey || (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404))
          return undefined;
        throw err;
      }
    },
    async delete(sessionId) {
      await s3.send(new DeleteObjectCommand({ Bucket: config.bucket, Key: key(sessionId) }));
    },
  };
}
