"""tpu_scripts/: the gcloud commands a v5p-64 launch prints, the preemption loop, shellcheck."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "tpu_scripts"
ENV = {"MM_PROJECT": "my-proj", "MM_ZONE": "us-east5-a", "MM_TPU_NAME": "mm-pod"}
# Only catches a hung script: the scripts do no real work here (gcloud and tar are fakes), so a loaded
# machine takes seconds, never this long.
HANG_GUARD_S = 600


def script(name: str, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MM_")}
    result = subprocess.run(
        ["bash", str(SCRIPTS / name), *args], env=base | ENV | (env or {}), capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def commands(stdout: str) -> list[list[str]]:
    """The printed commands ("+ gcloud ...") as argument lists."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in argv if a.startswith("--"))


def test_v5p_64_dry_run_prints_the_gcloud_commands():
    create = commands(script("create.sh", "--accelerator", "v5p-64", "--queued", "--spot", "--dry-run").stdout)
    assert [c[:4] for c in create] == [["gcloud", "compute", "tpus", "queued-resources"]] * 2
    assert create[0][4:6] == ["create", "mm-pod-qr"]
    assert flags(create[0]) == {
        "project": "my-proj", "zone": "us-east5-a", "node-id": "mm-pod", "accelerator-type": "v5p-64",
        "runtime-version": "v2-alpha-tpuv5", "valid-until-duration": "24h", "spot": "",
    }  # fmt: skip
    assert create[1][4:6] == ["describe", "mm-pod-qr"] and flags(create[1])["format"] == "value(state.state)"

    install = commands(script("install.sh", "--accelerator", "v5p-64", "--dry-run").stdout)
    assert install[1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and flags(install[1])["worker"] == "all"
    assert 'uv pip install --python "$HOME/mergemix-venv/bin/python" "jax[tpu]==0.10.2"' in flags(install[2])["command"]

    out = script(
        "launch.sh", "--accelerator", "v5p-64", "--dry-run", "--job", "expert-code", "--",
        "mergemix", "train", "--config", "configs/llama_1b_v5p.yaml", "train.mixture.code=1",
    ).stdout  # fmt: skip
    (launch,) = commands(out)
    assert launch[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mm-pod"]
    assert {k: v for k, v in flags(launch).items() if k != "command"} == {"project": "my-proj", "zone": "us-east5-a", "worker": "all"}
    remote = flags(launch)["command"]
    assert "mergemix train --config configs/llama_1b_v5p.yaml train.mixture.code=1" in remote
    assert "MERGEMIX_DISTRIBUTED=1" in remote and "mergemix-logs/expert-code.log" in remote

    teardown = commands(script("teardown.sh", "--queued", "--dry-run").stdout)
    assert teardown == [["gcloud", "compute", "tpus", "queued-resources", "delete", "mm-pod-qr", "--project=my-proj",
                         "--zone=us-east5-a", "--force", "--quiet"]]  # fmt: skip


def test_the_remote_command_runs_the_job_in_the_venv_and_logs_it(tmp_path):
    """Run the --command a worker would get, in a fake home: quoting survives, the log is written."""
    home = tmp_path / "home"
    (home / "mergemix").mkdir(parents=True)
    (home / "mergemix-venv" / "bin").mkdir(parents=True)
    (home / "mergemix-venv" / "bin" / "activate").write_text("export ACTIVATED=yes\n")
    out = script("launch.sh", "--dry-run", "--job", "t1", "--", "bash", "-c", 'echo "$ACTIVATED $MERGEMIX_DISTRIBUTED it'"'"'s $PWD"').stdout
    remote = flags(commands(out)[0])["command"]
    run = subprocess.run(["bash", "-c", remote], env={"HOME": str(home), "PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    expected = f"yes 1 it's {home / 'mergemix'}"
    assert run.stdout.strip() == expected
    assert (home / "mergemix-logs" / "t1.log").read_text().strip() == expected


FAKE_GCLOUD = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_DIR/calls"
case "$*" in
  *"tpu-vm ssh"*MERGEMIX_DISTRIBUTED*)
    n=$(cat "$FAKE_DIR/job_runs" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_DIR/job_runs"
    [ "$n" -ge "$FAIL_JOBS" ] || exit 255 ;;
  *"tpu-vm describe"*) echo "$STATE" ;;
esac
exit 0
"""


# install.sh packs the repository before copying it; packing the real tree (with whatever runs/ holds)
# costs seconds to minutes depending on load, and the fake scp does not need it.
FAKE_TAR = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_DIR/tar_calls"
"""


def fake_gcloud(tmp_path: Path) -> dict:
    """A bin folder whose `gcloud` logs each call (and fails the job FAIL_JOBS times) and whose `tar` only logs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("gcloud", FAKE_GCLOUD), ("tar", FAKE_TAR)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DIR": str(tmp_path), "TMPDIR": str(tmp_path)}


def verbs(tmp_path: Path) -> list[str]:
    """Each gcloud call as 'group verb' (e.g. 'tpu-vm ssh+job'), in order."""
    out = []
    for line in (tmp_path / "calls").read_text().splitlines():
        words = line.split()
        out.append(f"{words[2]} {words[3]}" + ("+job" if "MERGEMIX_DISTRIBUTED" in line else ""))
    return out


def test_resume_recreates_a_preempted_tpu_and_reruns_the_job(tmp_path):
    env = fake_gcloud(tmp_path) | {"FAIL_JOBS": "2", "STATE": "PREEMPTED"}
    result = script("launch.sh", "--accelerator", "v5p-64", "--spot", "--resume", "--job", "j", "--", "mergemix", "train", env=env)
    recreate = ["tpu-vm describe", "tpu-vm delete", "tpu-vm create", "tpu-vm scp", "tpu-vm ssh"]
    assert verbs(tmp_path) == ["tpu-vm ssh+job", *recreate, "tpu-vm ssh+job", *recreate, "tpu-vm ssh+job"]
    create = next(line for line in (tmp_path / "calls").read_text().splitlines() if "tpu-vm create" in line)
    assert "--accelerator-type=v5p-64" in create and "--spot" in create  # re-created with the same flags
    assert "restart 2 of 20" in result.stderr
    assert len((tmp_path / "tar_calls").read_text().splitlines()) == 2  # the source packed once per re-creation


def test_a_failure_on_a_healthy_tpu_is_not_retried(tmp_path):
    env = fake_gcloud(tmp_path) | {"FAIL_JOBS": "1", "STATE": "READY"}
    result = script("launch.sh", "--resume", "--job", "j", "--", "false", env=env, check=False)
    assert result.returncode != 0 and "failed on a TPU in state READY" in result.stderr
    assert verbs(tmp_path) == ["tpu-vm ssh+job", "tpu-vm describe"]


def test_bad_settings_are_named():
    assert "set MM_PROJECT or pass --project" in script("create.sh", env={"MM_PROJECT": ""}, check=False).stderr
    assert "'v5x-8' is not like v5p-64" in script("create.sh", "--accelerator", "v5x-8", check=False).stderr
    assert "take --spot, not --preemptible" in script("create.sh", "--queued", "--preemptible", check=False).stderr
    assert "no command to run" in script("launch.sh", "--dry-run", check=False).stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_every_script_passes_shellcheck():
    files = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    assert len(files) >= 7
    result = subprocess.run(["shellcheck", "-x", *files], cwd=SCRIPTS, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_install_brings_the_data_format_extras_and_mounts_the_bucket():
    (_, _, pip) = commands(script("install.sh", "--accelerator", "v5p-64", "--dry-run").stdout)
    assert "mergemix[interop,formats,sentencepiece]" in flags(pip)["command"]  # Parquet domains need pyarrow
    mounted = commands(script("install.sh", "--accelerator", "v5p-64", "--bucket", "my-bkt", "--dry-run").stdout)
    assert "gcsfuse --implicit-dirs my-bkt /gcs/my-bkt" in flags(mounted[-1])["command"] and flags(mounted[-1])["worker"] == "all"
    bad = script("install.sh", "--bucket", "gs://my-bkt/x", "--dry-run", check=False)
    assert bad.returncode == 2 and "MM_BUCKET / --bucket" in bad.stderr


def test_resume_remounts_the_bucket_before_every_attempt(tmp_path):
    env = fake_gcloud(tmp_path) | {"FAIL_JOBS": "1", "STATE": "PREEMPTED", "MM_BUCKET": "my-bkt"}
    script("launch.sh", "--resume", "--job", "run", "--", "mergemix", "run", "--config", "configs/llama_1b_v5p.yaml", env=env)
    calls = (tmp_path / "calls").read_text().splitlines()
    jobs = [c for c in calls if "MERGEMIX_DISTRIBUTED" in c]
    assert len(jobs) == 2 and all("mountpoint -q /gcs/my-bkt || gcsfuse --implicit-dirs my-bkt /gcs/my-bkt" in c for c in jobs)
    assert verbs(tmp_path) == ["tpu-vm ssh+job", "tpu-vm describe", "tpu-vm delete", "tpu-vm create", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh", "tpu-vm ssh+job"]
