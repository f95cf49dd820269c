/** durable-sandbox as an MCP server: the `run_code` tool (./server.ts) over stdio or Streamable HTTP. */
export {
  createMcpServer,
  RESET_SESSION_TOOL,
  RUN_CODE_TOOL,
  type CreateMcpServerOptions,
  type SandboxClientLike,
} from './server';
export { serveStdio, type ServeStdioOptions, type StdioServer } from './stdio';
export { serveHttp, type HttpServer, type ServeHttpOptions } from './http';
export { EXECUTION_ID_IN_PROGRESS } from './progress';
