// The private nats-server lives with the simulation (cli/local/), which starts one too.
export * from '../../cli/local/nats.js';
