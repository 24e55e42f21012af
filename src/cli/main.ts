import { processIo } from './io.js';
import { registerLoginCommands } from './login.js';
import { buildProgram, runCli } from './program.js';
import { registerServerCommands } from './server-commands.js';

const program = buildProgram(processIo());
registerServerCommands(program);
registerLoginCommands(program);
process.exitCode = await runCli(program, process.argv.slice(2));
