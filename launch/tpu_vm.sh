#!/usr/bin/env bash
# Pretraining on a Cloud TPU VM or pod slice: create it, install this repository on
# every worker, run `python -m launch.train` on all workers at once.
#
#   launch/tpu_vm.sh create  NAME ZONE ACCELERATOR [VERSION]   # e.g. v5litepod-16
#   launch/tpu_vm.sh install NAME ZONE
#   launch/tpu_vm.sh run     NAME ZONE -- --config=experiments/roberta.py:base \
#                                         --workdir=gs://BUCKET/roberta_base
#   launch/tpu_vm.sh delete  NAME ZONE
#
# Expects: gcloud authenticated for a project with TPU quota; a gs:// workdir that all
# workers can write (orbax writes checkpoints there from every host). No
# hyperparameters live here: they are in the experiment file and its --config.* flags.
# On the workers JAX finds the pod's other hosts itself (common/train/distributed.py).
#
# `run` restarts the command until the run is done. On SIGTERM (a maintenance event or
# a spot preemption notice) launch.train finishes its step, saves a checkpoint, prints
# "preempted (SIGTERM) at step N: ..." and exits 0; a lost connection (the VM went
# away) ends ssh with 255. Both are retried after RETRY_WAIT seconds (default 60), at
# most MAX_RESTARTS times (default 100); each retry resumes from the latest
# checkpoint, and a finished run reports "run complete" and stops the loop. Bad input
# (exit 2) or a crash is not retried.
set -euo pipefail

cmd=${1:?usage: tpu_vm.sh create|install|run|delete NAME ZONE ...}
name=${2:?TPU name}
zone=${3:?zone}
shift 3
repo_dir=bert-family-jax

ssh_all() {
  gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$1"
}

case "$cmd" in
  create)
    accelerator=${1:?accelerator type, e.g. v4-8 or v5litepod-16}
    version=${2:-tpu-ubuntu2204-base}
    gcloud compute tpus tpu-vm create "$name" --zone="$zone" \
      --accelerator-type="$accelerator" --version="$version"
    ;;
  install)
    # Copy this checkout (not a remote clone) so every worker runs the same code.
    tarball=$(mktemp --suffix=.tar.gz)
    git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$tarball" HEAD
    gcloud compute tpus tpu-vm scp "$tarball" "$name:code.tar.gz" --zone="$zone" \
      --worker=all
    ssh_all "rm -rf $repo_dir && mkdir $repo_dir && tar -xzf code.tar.gz -C $repo_dir \
      && cd $repo_dir && python3 -m pip install -q -U pip \
      && python3 -m pip install -q 'jax[tpu]' && python3 -m pip install -q -e ."
    ;;
  run)
    [[ ${1:-} == -- ]] && shift
    args=$(printf ' %q' "$@")
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    for (( attempt = 1; attempt <= ${MAX_RESTARTS:-100}; attempt++ )); do
      status=0
      ssh_all "cd $repo_dir && python3 -m launch.train$args" 2>&1 | tee "$log" \
        || status=${PIPESTATUS[0]}
      if [[ $status == 0 ]] && ! grep -q 'preempted (SIG' "$log"; then
        exit 0  # Done (or "run complete").
      fi
      if [[ $status != 0 && $status != 255 ]]; then
        exit "$status"  # Bad input or a crash: retrying would not help.
      fi
      echo "tpu_vm.sh: run interrupted (attempt $attempt, status $status); resuming in" \
        "${RETRY_WAIT:-60}s" >&2
      sleep "${RETRY_WAIT:-60}"
    done
    echo "tpu_vm.sh: giving up after ${MAX_RESTARTS:-100} attempts" >&2
    exit 1
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
    ;;
  *)
    echo "unknown command '$cmd': use create, install, run or delete" >&2
    exit 2
    ;;
esac
