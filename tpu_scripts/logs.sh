#!/usr/bin/env bash
# Follow a job's log on the workers (Ctrl-C stops following, not the job).
#
# Usage: tpu_scripts/logs.sh [shared flags] [--job NAME] [--worker 0|all] [--lines N] [--no-follow]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  parse_common_flags "$@"
  local job=job worker=0 lines=100 follow=-F scope
  set -- "${REST[@]+"${REST[@]}"}"
  while (($#)); do
    case "$1" in
      --job) job="${2:?--job needs a value}"; shift 2 ;;
      --worker) worker="${2:?--worker needs a value}"; shift 2 ;;
      --lines) lines="${2:?--lines needs a value}"; shift 2 ;;
      --no-follow) follow=; shift ;;
      *) die "unknown argument '$1' (see the header of $0)" ;;
    esac
  done
  [[ "$worker" =~ ^([0-9]+|all)$ ]] || die "--worker must be a worker number or 'all', got '$worker'"
  mapfile -t scope < <(gcloud_scope)
  run gcloud compute tpus tpu-vm ssh "$MM_TPU_NAME" "${scope[@]}" --worker="$worker" \
    --command="tail -n $lines $follow \"\$HOME/mergemix-logs/$job.log\""
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
