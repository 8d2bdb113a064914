import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * `util.parseArgs` for the project's commands: `-h` / `--help` prints `usage` and exits 0; an
 * unknown option or a missing value prints what is wrong and the usage, and exits 2, never a
 * stack trace.
 */
export function parseCliArgs<const O extends Options>(usage: string, options: O, args: string[] = process.argv.slice(2)): ReturnType<typeof parseArgs<{ options: O }>>['values'] {
  const text = usage.endsWith('\n') ? usage : `${usage}\n`;
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(text);
    process.exit(0);
  }
  try {
    return parseArgs({ args, options }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${text}`);
    process.exit(2);
  }
}
