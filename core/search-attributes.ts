/** Custom search attributes an execution sets, so operators can filter runs in the Temporal UI. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SEARCH_ATTRIBUTES = {
  status: defineSearchAttributeKey('SandboxStatus', SearchAttributeType.KEYWORD),
  language: defineSearchAttributeKey('SandboxLanguage', SearchAttributeType.KEYWORD),
  exitCode: defineSearchAttributeKey('SandboxExitCode', SearchAttributeType.INT),
} as const;
