# shellcheck shell=bash disable=SC2034  # (the settings here are read by the scripts that source this file)
# Shared settings and helpers for the Cloud TPU scripts; sourced, never run.
#
# Every setting comes from an environment variable and can be overridden by a flag:
#   MM_PROJECT      --project       Google Cloud project (required)
#   MM_ZONE         --zone          zone, e.g. us-east5-a (v5p), us-east5-b (v6e) (required)
#   MM_TPU_NAME     --name          TPU VM / pod slice name                    [mergemix]
#   MM_ACCELERATOR  --accelerator   accelerator type, e.g. v5p-64, v6e-64, v4-8 [v5p-8]
#   MM_RUNTIME      --runtime       TPU runtime (software) version             [by generation]
#   MM_PROVISIONING --spot | --preemptible | --on-demand                       [on-demand]
#   MM_QUEUED       --queued        1: ask through a queued resource (waits for capacity) [0]
#   MM_QUEUE_TIMEOUT --queue-timeout give up a queued request after this long, e.g. 6h [24h]
#   MM_REMOTE_DIR   --remote-dir    project folder on every worker             [mergemix]
#   MM_VENV         --venv          virtualenv folder on every worker          [mergemix-venv]
#   MM_PYTHON       --python        Python version on the workers              [3.11]
#   MM_DRY_RUN      --dry-run       1: print every command, run none           [0]
#   MM_BUCKET       --bucket        GCS bucket gcsfuse-mounts at /gcs/<bucket> on every worker, again
#                                   before every launch (a restarted or re-created VM has lost it) [none]
# Remote folders are relative to the worker's home directory.

set -euo pipefail

MM_PROJECT="${MM_PROJECT:-}"
MM_ZONE="${MM_ZONE:-}"
MM_TPU_NAME="${MM_TPU_NAME:-mergemix}"
MM_ACCELERATOR="${MM_ACCELERATOR:-v5p-8}"
MM_RUNTIME="${MM_RUNTIME:-}"
MM_PROVISIONING="${MM_PROVISIONING:-on-demand}"
MM_QUEUED="${MM_QUEUED:-0}"
MM_QUEUE_TIMEOUT="${MM_QUEUE_TIMEOUT:-24h}"
MM_REMOTE_DIR="${MM_REMOTE_DIR:-mergemix}"
MM_VENV="${MM_VENV:-mergemix-venv}"
MM_PYTHON="${MM_PYTHON:-3.11}"
MM_DRY_RUN="${MM_DRY_RUN:-0}"
MM_BUCKET="${MM_BUCKET:-}"
MM_POLL_SECONDS="${MM_POLL_SECONDS:-60}"
MM_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MM_REPO_ROOT="$(cd "$MM_SCRIPTS_DIR/.." && pwd)"
REST=()

die() {
  echo "error: $*" >&2
  exit 2
}

log() {
  echo "[$(date -u +%H:%M:%S)] $*" >&2
}

# One argument as the shell would need it typed: bare when safe, else in single quotes.
quote_arg() {
  local squote="'" escaped="'\\''"
  if [[ "$1" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//$squote/$escaped}"
  fi
}

# Print a command as a copy-pasteable line ("+ gcloud ..."), then run it unless dry-run.
run() {
  local line="+" arg
  for arg in "$@"; do
    line+=" $(quote_arg "$arg")"
  done
  printf '%s\n' "$line"
  if [[ "$MM_DRY_RUN" == 1 ]]; then
    return 0
  fi
  "$@"
}

common_usage() {
  sed -n '4,19p' "$MM_SCRIPTS_DIR/lib.sh" | sed 's/^# \{0,1\}//'
}

# Parse the shared flags; everything else is left in REST for the calling script.
parse_common_flags() {
  REST=()
  while (($#)); do
    case "$1" in
      --project) MM_PROJECT="${2:?--project needs a value}"; shift 2 ;;
      --zone) MM_ZONE="${2:?--zone needs a value}"; shift 2 ;;
      --name) MM_TPU_NAME="${2:?--name needs a value}"; shift 2 ;;
      --accelerator) MM_ACCELERATOR="${2:?--accelerator needs a value}"; shift 2 ;;
      --runtime) MM_RUNTIME="${2:?--runtime needs a value}"; shift 2 ;;
      --spot) MM_PROVISIONING=spot; shift ;;
      --preemptible) MM_PROVISIONING=preemptible; shift ;;
      --on-demand) MM_PROVISIONING=on-demand; shift ;;
      --queued) MM_QUEUED=1; shift ;;
      --queue-timeout) MM_QUEUE_TIMEOUT="${2:?--queue-timeout needs a value}"; shift 2 ;;
      --remote-dir) MM_REMOTE_DIR="${2:?--remote-dir needs a value}"; shift 2 ;;
      --venv) MM_VENV="${2:?--venv needs a value}"; shift 2 ;;
      --python) MM_PYTHON="${2:?--python needs a value}"; shift 2 ;;
      --dry-run) MM_DRY_RUN=1; shift ;;
      --bucket) MM_BUCKET="${2:?--bucket needs a value}"; shift 2 ;;
      --) REST+=("$@"); break ;;
      *) REST+=("$1"); shift ;;
    esac
  done
  [[ -n "$MM_PROJECT" ]] || die "no project: set MM_PROJECT or pass --project"
  [[ -n "$MM_ZONE" ]] || die "no zone: set MM_ZONE or pass --zone"
  [[ "$MM_ACCELERATOR" =~ ^(v4|v5litepod|v5p|v6e)-[0-9]+$ ]] \
    || die "accelerator '$MM_ACCELERATOR' is not like v5p-64, v6e-64, v5litepod-16 or v4-8 (MM_ACCELERATOR / --accelerator)"
  [[ -z "$MM_BUCKET" || "$MM_BUCKET" =~ ^[a-z0-9][a-z0-9._-]*$ ]] \
    || die "bucket '$MM_BUCKET' is not a bucket name (MM_BUCKET / --bucket: the name only, no gs:// and no folder)"
  case "$MM_PROVISIONING" in on-demand | spot | preemptible) ;; *)
    die "MM_PROVISIONING must be on-demand, spot or preemptible, got '$MM_PROVISIONING'" ;;
  esac
  if [[ "$MM_QUEUED" == 1 && "$MM_PROVISIONING" == preemptible ]]; then
    die "queued resources take --spot, not --preemptible"
  fi
  if [[ -z "$MM_RUNTIME" ]]; then
    MM_RUNTIME="$(default_runtime "$MM_ACCELERATOR")"
  fi
}

# The TPU software version Google recommends for each generation.
default_runtime() {
  case "$1" in
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) echo tpu-ubuntu2204-base ;;
  esac
}

# Flags every gcloud tpu command takes.
gcloud_scope() {
  printf '%s\n' "--project=$MM_PROJECT" "--zone=$MM_ZONE"
}

queued_resource_id() {
  echo "${MM_TPU_NAME}-qr"
}

# Run a shell command line on every worker at once (--worker=all): the multi-host launch.
on_all_workers() {
  local scope
  mapfile -t scope < <(gcloud_scope)
  run gcloud compute tpus tpu-vm ssh "$MM_TPU_NAME" "${scope[@]}" --worker=all --command="$1"
}

# State of the TPU VM (READY, PREEMPTED, ...), or NOT_FOUND. In a dry run: READY.
tpu_state() {
  local scope
  mapfile -t scope < <(gcloud_scope)
  if [[ "$MM_DRY_RUN" == 1 ]]; then
    run gcloud compute tpus tpu-vm describe "$MM_TPU_NAME" "${scope[@]}" --format='value(state)' >&2
    echo READY
    return 0
  fi
  gcloud compute tpus tpu-vm describe "$MM_TPU_NAME" "${scope[@]}" --format='value(state)' 2>/dev/null || echo NOT_FOUND
}

# The shell line that mounts MM_BUCKET at /gcs/<bucket> on a worker unless it is mounted (empty without a bucket).
mount_line() {
  [[ -n "$MM_BUCKET" ]] || return 0
  local dir="/gcs/$MM_BUCKET"
  printf '%s' "sudo mkdir -p $dir && sudo chmod 777 $dir && (mountpoint -q $dir || gcsfuse --implicit-dirs $MM_BUCKET $dir)"
}
