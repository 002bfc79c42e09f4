// The private Slurm cluster lives with the simulation (cli/local/), which starts one too.
export * from '../../cli/local/slurm.js';
