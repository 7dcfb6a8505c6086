"""The embedded demo corpus (four real domains) and its evaluation tasks; see README.md and PROVENANCE.md."""

from pathlib import Path

DEMO_DATA_DIR = Path(__file__).resolve().parent
CORPUS_DIR = DEMO_DATA_DIR / "corpus"  # <domain>.jsonl, one {"text", "source"} document per line
TASKS_DIR = DEMO_DATA_DIR / "tasks"  # <task>.jsonl in the format of mergemix_jax.data.tasks
