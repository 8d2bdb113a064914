import { z } from 'zod';
import { AppError } from '../errors/app-error.js';

/**
 * Parses URL query parameters with a zod schema; failures become 400 BAD_REQUEST with every issue
 * listed. An empty value (`lat=`) counts as absent: numbers are coerced, and '' would become 0.
 */
export function parseQuery<S extends z.ZodTypeAny>(schema: S, query: URLSearchParams): z.infer<S> {
  const raw: Record<string, string> = {};
  query.forEach((v, k) => { if (k !== 'token' && v !== '') raw[k] = v; });
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => ({ param: i.path.join('.'), message: i.message }));
    throw new AppError('BAD_REQUEST', issues.map((i) => `${i.param}: ${i.message}`).join('; '), issues);
  }
  return r.data;
}
