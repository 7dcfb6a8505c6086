#!/usr/bin/env bash
# Run one command on every worker of the TPU at once (the multi-host launch), with logs.
#
# Usage: tpu_scripts/launch.sh [shared flags] [--job NAME] [--detach] [--resume [--max-restarts N]] -- COMMAND...
#   e.g. tpu_scripts/launch.sh --accelerator v5p-64 --job expert-code --resume -- \
#          mergemix train --config configs/llama_1b_v5p.yaml train.mixture.code=1 train.output_dir=/gcs/BUCKET/experts/code
# COMMAND runs in the project folder inside its venv on every worker; its output streams here
# and is appended to ~/mergemix-logs/NAME.log on each worker (tpu_scripts/logs.sh follows it).
# --detach   start it in the background on the workers and return (follow with logs.sh).
# --resume   survive preemption: when the command fails because the TPU was preempted or is gone,
#            delete and re-create the TPU (same flags), re-install, and run the command again.
#            `mergemix train` resumes from the last orbax checkpoint in train.output_dir, so put
#            output_dir in a gcsfuse-mounted bucket (a re-created VM has a fresh disk). A failure on a healthy TPU
#            is a real error and stops the loop. `mergemix run` resumes too (finished stages are reused).
# With --bucket / MM_BUCKET every launch first mounts the bucket where it is not mounted (after a
# preemption, a restart or a re-creation the mount is gone), so /gcs/<bucket>/... paths keep working.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JOB=job
DETACH=0
RESUME=0
MAX_RESTARTS=20
COMMAND=()

parse_launch_flags() {
  while (($#)); do
    case "$1" in
      --job) JOB="${2:?--job needs a value}"; shift 2 ;;
      --detach) DETACH=1; shift ;;
      --resume) RESUME=1; shift ;;
      --max-restarts) MAX_RESTARTS="${2:?--max-restarts needs a value}"; shift 2 ;;
      --) shift; COMMAND=("$@"); break ;;
      *) die "unknown argument '$1'; put the command to run after -- (see the header of $0)" ;;
    esac
  done
  ((${#COMMAND[@]})) || die "no command to run: tpu_scripts/launch.sh [flags] -- COMMAND..."
  [[ "$JOB" =~ ^[A-Za-z0-9._-]+$ ]] || die "--job '$JOB' may use only letters, digits, '.', '_' and '-'"
  if ((RESUME && DETACH)); then
    die "--resume watches the job, so it cannot be combined with --detach"
  fi
}

# The shell line each worker runs. MERGEMIX_DISTRIBUTED=1 asks for jax.distributed.initialize().
remote_command() {
  local quoted log_file inner
  quoted="$(printf '%q ' "${COMMAND[@]}")"
  log_file="\$HOME/mergemix-logs/$JOB.log"
  inner="cd \"\$HOME/$MM_REMOTE_DIR\" && source \"\$HOME/$MM_VENV/bin/activate\" && export MERGEMIX_DISTRIBUTED=1 PYTHONUNBUFFERED=1 && $quoted"
  if [[ -n "$MM_BUCKET" ]]; then
    inner="$(mount_line) && $inner"
  fi
  # shellcheck disable=SC2016  # $HOME and $(hostname) expand on the worker
  if ((DETACH)); then
    printf 'mkdir -p "$HOME/mergemix-logs"; nohup bash -c %q >> "%s" 2>&1 < /dev/null & echo "started on $(hostname)"' \
      "$inner" "$log_file"
  else
    printf 'set -o pipefail; mkdir -p "$HOME/mergemix-logs"; (%s) 2>&1 | tee -a "%s"' "$inner" "$log_file"
  fi
}

recreate() {
  log "TPU '$MM_TPU_NAME' was lost; re-creating it"
  bash "$MM_SCRIPTS_DIR/teardown.sh" "${PASS_FLAGS[@]}" || true
  bash "$MM_SCRIPTS_DIR/create.sh" "${PASS_FLAGS[@]}"
  bash "$MM_SCRIPTS_DIR/install.sh" "${PASS_FLAGS[@]}"
}

main() {
  parse_common_flags "$@"
  parse_launch_flags "${REST[@]+"${REST[@]}"}"
  # The shared settings, passed on to create/install/teardown when --resume re-creates the TPU.
  export MM_PROJECT MM_ZONE MM_TPU_NAME MM_ACCELERATOR MM_RUNTIME MM_PROVISIONING MM_QUEUED MM_QUEUE_TIMEOUT \
    MM_REMOTE_DIR MM_VENV MM_PYTHON MM_DRY_RUN MM_BUCKET
  PASS_FLAGS=()
  local attempt=0 state
  while true; do
    if on_all_workers "$(remote_command)"; then
      if [[ "$MM_DRY_RUN" == 1 ]]; then log "dry run: nothing was run"; else log "job '$JOB' finished"; fi
      return 0
    fi
    state="$(tpu_state)"
    if ((!RESUME)) || [[ "$state" == READY ]]; then
      die "job '$JOB' failed on a TPU in state ${state:-unknown}; see tpu_scripts/logs.sh --job $JOB"
    fi
    attempt=$((attempt + 1))
    ((attempt <= MAX_RESTARTS)) || die "job '$JOB': TPU lost $attempt times; giving up (--max-restarts $MAX_RESTARTS)"
    log "job '$JOB' interrupted: TPU state ${state:-unknown} (restart $attempt of $MAX_RESTARTS)"
    recreate
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
