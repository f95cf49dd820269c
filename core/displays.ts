/**
 * Display data as each surface shows it (MCP, ADK, the CLI): a bundle's images (PNG and JPEG, base64), its best text
 * form for a reader that sees text only, and the file names a bundle's types are saved under. Pure.
 */
import type { MimeBundle } from './types';

/** Image types a surface shows as images (base64 in the bundle). */
export const IMAGE_TYPES = ['image/png', 'image/jpeg'] as const;

/** Rich text types, in the order a text-only reader is best served by them. */
const TEXT_TYPES = ['text/markdown', 'text/plain'] as const;

/** File extensions of the types a bundle may hold. */
const EXTENSION: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/svg+xml': 'svg',
  'text/html': 'html',
  'text/markdown': 'md',
  'text/plain': 'txt',
  'text/latex': 'tex',
  'application/json': 'json',
};

/** The bundle's images, each with its type and base64 data. */
export function displayImages(bundle: MimeBundle): { mimeType: string; data: string }[] {
  return IMAGE_TYPES.filter((t) => typeof bundle[t] === 'string').map((t) => ({ mimeType: t, data: bundle[t] }));
}

/** What a reader that sees text only is shown of a bundle: its markdown, else its plain text. */
export function displayText(bundle: MimeBundle): string {
  for (const t of TEXT_TYPES) if (typeof bundle[t] === 'string') return bundle[t];
  return '';
}

/** Whether a type's content is base64 (images) rather than text. */
export function isBinaryType(mimeType: string): boolean {
  return (IMAGE_TYPES as readonly string[]).includes(mimeType);
}

/** The file a display's type is saved as: display-<n>.<ext> (n from 1), or display-<n>-<k>.bin for an unknown type. */
export function displayFileName(index: number, mimeType: string, k = 0): string {
  const ext = EXTENSION[mimeType];
  return ext ? `display-${index + 1}.${ext}` : `display-${index + 1}-${k}.bin`;
}

/** A line saying how many displays did not come back, when some did not. */
export function droppedDisplaysNote(info: { total: number; dropped: number } | undefined): string | undefined {
  if (!info || info.dropped <= 0) return undefined;
  return `[${info.dropped} of ${info.total} displays did not come back: past the displays' count or byte cap (DS_DISPLAYS_MAX_COUNT, DS_DISPLAYS_CAP_BYTES)]`;
}
