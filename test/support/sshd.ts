// The private sshd lives with the simulation (cli/local/), which starts one too.
export * from '../../cli/local/sshd.js';
