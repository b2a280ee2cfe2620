"""Joining JAX's distributed runtime, the same on TPU pods, GPU clusters and one CPU.

`initialize()` calls `jax.distributed.initialize` when the environment says this is one
of several processes: on Cloud TPU and under SLURM JAX detects the cluster itself; on
other machines set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (the
local multi-process launcher does). A single process without any of these runs alone.
CPU processes exchange collectives over gloo.
"""

import os

import jax


def initialize() -> None:
  """Starts the distributed runtime if this is one process of many; else no-op."""
  explicit = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if explicit:
    # Only the CPU backend reads this; accelerators use their own interconnect.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=explicit,
        num_processes=int(os.environ['JAX_NUM_PROCESSES']),
        process_id=int(os.environ['JAX_PROCESS_ID']))
  elif 'SLURM_JOB_ID' in os.environ and int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    jax.distributed.initialize()
  elif os.environ.get('TPU_WORKER_HOSTNAMES', '').count(',') > 0:
    jax.distributed.initialize()
