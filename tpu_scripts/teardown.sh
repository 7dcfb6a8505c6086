#!/usr/bin/env bash
# Delete the TPU VM / pod slice (and its queued resource). Results on its disks are lost:
# copy them first with fetch.sh, or keep outputs in the gcsfuse-mounted bucket.
#
# Usage: tpu_scripts/teardown.sh [shared flags]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  parse_common_flags "$@"
  ((${#REST[@]} == 0)) || die "unknown arguments: ${REST[*]} (see the header of $0)"
  local scope
  mapfile -t scope < <(gcloud_scope)
  if [[ "$MM_QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$(queued_resource_id)" "${scope[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$MM_TPU_NAME" "${scope[@]}" --quiet
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
