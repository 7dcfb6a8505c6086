#!/usr/bin/env bash
# Train one expert per domain from a shared base, one after another on the same slice.
#
# Usage: tpu_scripts/experts.sh [shared flags] --config CONFIG --base RUN_DIR --out PREFIX \
#          --domains web,code,math [--resume] [-- extra key=value overrides]
#   Each expert: mergemix train --config CONFIG train.init_from=BASE train.mixture.<d>=1
#                train.output_dir=PREFIX/<d>, logged as job expert-<d>. With --resume every
#                expert survives preemption (see launch.sh); a finished expert is skipped on
#                re-run because its run directory already holds its final checkpoint.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  parse_common_flags "$@"
  local config="" base="" out="" domains="" launch_flags=() extra=() domain
  set -- "${REST[@]+"${REST[@]}"}"
  while (($#)); do
    case "$1" in
      --config) config="${2:?--config needs a value}"; shift 2 ;;
      --base) base="${2:?--base needs a value}"; shift 2 ;;
      --out) out="${2:?--out needs a value}"; shift 2 ;;
      --domains) domains="${2:?--domains needs a value}"; shift 2 ;;
      --resume) launch_flags+=(--resume); shift ;;
      --) shift; extra=("$@"); break ;;
      *) die "unknown argument '$1' (see the header of $0)" ;;
    esac
  done
  [[ -n "$config" && -n "$base" && -n "$out" && -n "$domains" ]] \
    || die "--config, --base, --out and --domains are all required"
  export MM_PROJECT MM_ZONE MM_TPU_NAME MM_ACCELERATOR MM_RUNTIME MM_PROVISIONING MM_QUEUED MM_QUEUE_TIMEOUT \
    MM_REMOTE_DIR MM_VENV MM_PYTHON MM_DRY_RUN MM_BUCKET
  IFS=, read -r -a domain_list <<<"$domains"
  for domain in "${domain_list[@]}"; do
    [[ "$domain" =~ ^[A-Za-z0-9_-]+$ ]] || die "domain name '$domain' may use only letters, digits, '_' and '-'"
    bash "$MM_SCRIPTS_DIR/launch.sh" --job "expert-$domain" "${launch_flags[@]+"${launch_flags[@]}"}" -- \
      mergemix train --config "$config" "train.init_from=$base" "train.mixture.$domain=1" \
      "train.output_dir=${out%/}/$domain" "${extra[@]+"${extra[@]}"}"
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
