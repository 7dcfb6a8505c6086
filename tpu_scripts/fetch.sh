#!/usr/bin/env bash
# Copy results back to this machine: from gs:// (where long runs should write) or from worker 0's disk.
#
# Usage: tpu_scripts/fetch.sh [shared flags] SOURCE DEST
#   SOURCE gs://bucket/path   -> gcloud storage rsync (incremental)
#   SOURCE path/on/worker     -> scp from worker 0, relative to the project folder there
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  parse_common_flags "$@"
  ((${#REST[@]} == 2)) || die "usage: tpu_scripts/fetch.sh [flags] SOURCE DEST"
  local source="${REST[0]}" dest="${REST[1]}" scope remote
  mapfile -t scope < <(gcloud_scope)
  run mkdir -p "$dest"
  if [[ "$source" == gs://* ]]; then
    run gcloud storage rsync --recursive "$source" "$dest"
  else
    [[ "$source" == /* ]] && remote="$source" || remote="$MM_REMOTE_DIR/$source"
    run gcloud compute tpus tpu-vm scp --recurse "$MM_TPU_NAME:$remote" "$dest" "${scope[@]}" --worker=0
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
