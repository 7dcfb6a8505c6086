#!/usr/bin/env bash
# Create a Cloud TPU VM or pod slice, directly or through a queued resource, and wait until READY.
#
# Usage: tpu_scripts/create.sh [shared flags]            (shared flags: see tpu_scripts/lib.sh)
#   e.g. MM_PROJECT=my-proj MM_ZONE=us-east5-a tpu_scripts/create.sh --accelerator v5p-64 --queued --spot
# Spot/preemptible capacity is cheaper but can be reclaimed: use launch.sh --resume for long jobs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

create_tpu() {
  local scope flags=()
  mapfile -t scope < <(gcloud_scope)
  case "$MM_PROVISIONING" in
    spot) flags+=(--spot) ;;
    preemptible) flags+=(--preemptible) ;;
  esac
  if [[ "$MM_QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources create "$(queued_resource_id)" "${scope[@]}" \
      --node-id="$MM_TPU_NAME" --accelerator-type="$MM_ACCELERATOR" --runtime-version="$MM_RUNTIME" \
      --valid-until-duration="$MM_QUEUE_TIMEOUT" "${flags[@]}"
    wait_for_queued_resource
  else
    run gcloud compute tpus tpu-vm create "$MM_TPU_NAME" "${scope[@]}" \
      --accelerator-type="$MM_ACCELERATOR" --version="$MM_RUNTIME" "${flags[@]}"
  fi
}

# A queued request waits for capacity: poll until ACTIVE, stop on FAILED/SUSPENDED.
wait_for_queued_resource() {
  local scope state describe
  mapfile -t scope < <(gcloud_scope)
  describe=(gcloud compute tpus queued-resources describe "$(queued_resource_id)" "${scope[@]}" --format='value(state.state)')
  if [[ "$MM_DRY_RUN" == 1 ]]; then
    run "${describe[@]}"
    return 0
  fi
  while true; do
    state="$("${describe[@]}")"
    case "$state" in
      ACTIVE) log "queued resource $(queued_resource_id) is ACTIVE"; return 0 ;;
      FAILED | SUSPENDED) die "queued resource $(queued_resource_id) is $state; delete it with teardown.sh and retry" ;;
      *) log "queued resource $(queued_resource_id): ${state:-unknown}; waiting ${MM_POLL_SECONDS}s"; sleep "$MM_POLL_SECONDS" ;;
    esac
  done
}

main() {
  parse_common_flags "$@"
  ((${#REST[@]} == 0)) || die "unknown arguments: ${REST[*]} (see the header of $0)"
  log "creating $MM_ACCELERATOR '$MM_TPU_NAME' in $MM_ZONE ($MM_PROVISIONING, runtime $MM_RUNTIME, queued=$MM_QUEUED)"
  create_tpu
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
