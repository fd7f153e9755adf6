#!/usr/bin/env node
/**
 * The `tfgate` command: dispatches to one module per subcommand (src/cli/<name>.ts), each exporting
 * `run(argv): Promise<number>` that returns the exit code. User-facing output only; no logic here.
 */
const COMMANDS: Record<string, string> = {
  serve: 'run the gateway',
  keys: "print the gateway's public key",
  keygen: 'create a client key pair in the 20ft layout',
  accounts: 'add, list or remove client accounts',
  publish: 'publish a cluster from this machine and keep it live until Ctrl-C',
  domains: 'prepare, claim, release, list, make global or private a domain',
  demo: 'a gateway, two demo upstreams and a publishing session in one command',
};

interface CommandModule {
  run(argv: string[]): Promise<number>;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage());
    return command === undefined ? 1 : 0;
  }
  if (!Object.hasOwn(COMMANDS, command)) {
    process.stderr.write(`tfgate: unknown command "${command}"\n\n${usage()}`);
    return 1;
  }
  let module: CommandModule;
  try {
    module = (await import(`./${command}.js`)) as CommandModule;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`${command}.js`)) {
      process.stderr.write(`tfgate: "${command}" is not available in this version\n`);
      return 1;
    }
    throw err;
  }
  return module.run(rest);
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, what]) => `  ${name.padEnd(width)}  ${what}`);
  return `Usage: tfgate <command> [flags]\n\nCommands:\n${lines.join('\n')}\n\nRun "tfgate <command> --help" for its flags.\n`;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`tfgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
