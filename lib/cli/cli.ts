#!/usr/bin/env node
/**
 * lakeinfer CLI: works against the local host and against a deployed Function App alike. Every
 * command has --help; `lakeinfer help` lists them. API options: --url URL (or LAKEINFER_URL;
 * default http://127.0.0.1:7071), --key KEY (or LAKEINFER_KEY: a deployed app's function key).
 * Commands that read or write the data account (upload, models, results, report) use
 * --account-url URL (or LAKEINFER_ACCOUNT_URL) with Entra ID, or a connection string with
 * --storage (or DATA_STORAGE: what `lakeinfer host` prints).
 */
import { UsageError, parseArgs, type Args, type CliDeps } from './args';
import { COMMANDS, type Command } from './commands';
import { hostCommand } from './hostCommand';

export { parseArgs } from './args';

export type { CliDeps } from './args';

const HOST: Command = {
  usage: 'lakeinfer host [--data DIR] [--port 7071] [--blob-port 10000] [--processes 2] [--storage CONNECTION_STRING]',
  summary: 'run the local host (API, Durable engine, activity processes, embedded Azurite) until Ctrl+C',
  details: [
    '--data DIR       keep storage in DIR (created if missing) and its ports across restarts;',
    '                 without it storage lives in a temporary folder, gone when the host stops',
    '--port N         the job API on 127.0.0.1:N (default 7071)',
    '--blob-port N    the emulator on N, N+1, N+2 (default: the ports saved in DIR, else 10000-10002 when free)',
    '--processes N    activity worker processes (default 2)',
    '--storage CS     use this storage instead of the embedded Azurite',
    'It prints the connection string to use (export DATA_STORAGE=...) for upload, models, results and report.',
  ].join('\n'),
  run: () => Promise.resolve(0),
};

function all(): Record<string, Command> {
  return { host: HOST, ...COMMANDS };
}

function usage(): string {
  const lines = ['usage: lakeinfer COMMAND [options]   (lakeinfer COMMAND --help for one command)', ''];
  for (const [name, c] of Object.entries(all())) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  lines.push(
    '',
    'API: --url URL (LAKEINFER_URL, default http://127.0.0.1:7071), --key KEY (LAKEINFER_KEY)',
    'Data account (upload, models, results, report): --account-url https://<account>.blob.core.windows.net',
    '  (LAKEINFER_ACCOUNT_URL; Entra ID: az login / azd auth login) or --storage CONNECTION_STRING (DATA_STORAGE)',
  );
  return lines.join('\n');
}

function help(name: string, c: Command): string {
  return [`usage: ${c.usage}`, '', c.summary, ...(c.details ? ['', c.details] : [])].join('\n');
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, out: (s: string) => void = (s) => console.log(s), deps: CliDeps = {}): Promise<number> {
  const a: Args = parseArgs(argv);
  if (a.cmd === 'help' || a.cmd === '--help' || a.cmd === '-h') {
    const topic = a.pos[0];
    const c = topic ? all()[topic] : undefined;
    if (topic && !c) {
      out(`lakeinfer: unknown command '${topic}'\n\n${usage()}`);
      return 2;
    }
    out(c ? help(topic!, c) : usage());
    return 0;
  }
  const c = Object.hasOwn(all(), a.cmd) ? all()[a.cmd] : undefined;
  if (!c) {
    out(`lakeinfer: unknown command '${a.cmd}'\n\n${usage()}`);
    return 2;
  }
  if (a.flags['help']) {
    out(help(a.cmd, c));
    return 0;
  }
  try {
    if (a.cmd === 'host') return await hostCommand(a, env, out);
    return await c.run(a, env, out, deps);
  } catch (err) {
    if (err instanceof UsageError) {
      out(`lakeinfer ${a.cmd}: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`lakeinfer: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
