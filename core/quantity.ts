/** Parsing of the Kubernetes resource quantities the API accepts for CPU and memory (the common forms). */

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** CPU quantity ("250m", "0.5", "2") in millicores, or null when it is not a valid CPU quantity. */
export function cpuMillis(q: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q);
  if (!m) return null;
  const value = Number(m[1]) * (m[2] === 'm' ? 1 : 1000);
  return Number.isFinite(value) && Number.isInteger(value) ? value : null;
}

/** Memory or storage quantity ("512Mi", "1G", "1048576") in bytes, or null when it is not valid. */
export function bytes(q: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)$/.exec(q);
  if (!m) return null;
  const value = Number(m[1]) * (BINARY[m[2]] ?? DECIMAL[m[2]]);
  return Number.isFinite(value) ? Math.floor(value) : null;
}
