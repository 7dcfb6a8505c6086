#!/usr/bin/env bash
# Copy this checkout to every worker of the TPU and install it there with TPU jax.
#
# Usage: tpu_scripts/install.sh [shared flags] [--extras interop,formats,sentencepiece]
# Ships the working tree (less .git and what .gitignore names, so put local files such as a
# tokenizer.json in place first), makes a Python $MM_PYTHON venv with uv
# (TPU images ship an older Python) and installs "jax[tpu]" at the version pinned in pyproject.toml,
# with the extras the data and checkpoints need (default: interop for HF bases, formats for
# Parquet/Arrow domains, sentencepiece for tokenizer.model). With --bucket / MM_BUCKET it then
# mounts the bucket on every worker (gcsfuse at /gcs/<bucket>).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The remote install script: one line of shell run on every worker.
remote_install_command() {
  local extras="$1" jax_version
  jax_version="$(sed -n 's/^ *"jax==\([0-9.]*\)",*/\1/p' "$MM_REPO_ROOT/pyproject.toml" | head -n 1)"
  [[ -n "$jax_version" ]] || die "could not read the jax pin from $MM_REPO_ROOT/pyproject.toml"
  printf '%s' "set -euo pipefail; " \
    "rm -rf \"\$HOME/$MM_REMOTE_DIR\" && mkdir -p \"\$HOME/$MM_REMOTE_DIR\" && " \
    "tar -xzf \"\$HOME/mergemix-src.tar.gz\" -C \"\$HOME/$MM_REMOTE_DIR\"; " \
    "command -v uv >/dev/null || python3 -m pip install --user --quiet uv; export PATH=\"\$HOME/.local/bin:\$PATH\"; " \
    "[ -x \"\$HOME/$MM_VENV/bin/python\" ] || uv venv --python $MM_PYTHON \"\$HOME/$MM_VENV\"; " \
    "uv pip install --python \"\$HOME/$MM_VENV/bin/python\" \"jax[tpu]==$jax_version\" -e \"\$HOME/${MM_REMOTE_DIR}[${extras}]\"; " \
    "\"\$HOME/$MM_VENV/bin/python\" -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
}

main() {
  parse_common_flags "$@"
  local extras=interop,formats,sentencepiece scope tarball
  set -- "${REST[@]+"${REST[@]}"}"
  while (($#)); do
    case "$1" in
      --extras) extras="${2:?--extras needs a value}"; shift 2 ;;
      *) die "unknown argument '$1' (see the header of $0)" ;;
    esac
  done
  mapfile -t scope < <(gcloud_scope)
  tarball="${TMPDIR:-/tmp}/mergemix-src.tar.gz"
  run tar --exclude-vcs --exclude-vcs-ignores -czf "$tarball" -C "$MM_REPO_ROOT" .
  run gcloud compute tpus tpu-vm scp "$tarball" "$MM_TPU_NAME:mergemix-src.tar.gz" "${scope[@]}" --worker=all
  on_all_workers "$(remote_install_command "$extras")"
  if [[ -n "$MM_BUCKET" ]]; then
    on_all_workers "$(mount_line)"
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
