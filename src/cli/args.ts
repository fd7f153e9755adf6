import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type WithHelp<O extends Options> = O & { help: { type: 'boolean'; short: 'h' } };
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: WithHelp<O>; allowPositionals: true; strict: true }>>;

/**
 * Parses a subcommand's flags (plus `--help`/`-h`). Prints the help, or the flag error with the help,
 * itself; returns the parsed flags, or the exit code to return: 0 after `--help`, 2 on a bad flag.
 * Positionals are allowed only when `allowPositionals` is set.
 */
export function parseCommandArgs<O extends Options>(command: string, help: string, argv: string[], options: O, allowPositionals = false): Parsed<O> | number {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } } as WithHelp<O>, allowPositionals: true, strict: true });
    if (!allowPositionals && parsed.positionals.length > 0) throw new Error(`Unexpected argument '${parsed.positionals[0]}'`);
  } catch (err) {
    process.stderr.write(`tfgate ${command}: ${(err as Error).message}\n\n${help}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(help);
    return 0;
  }
  return parsed;
}
