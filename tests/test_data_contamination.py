"""Contamination check: task items whose text occurs in a training split are flagged, held-out ones are not."""

import json

from mergemix_jax.config import load_config
from mergemix_jax.data import index_domain
from mergemix_jax.data.contamination import check_contamination, item_needles
from mergemix_jax.data.tasks import TaskItem

LEAKED = "The committee voted to adopt the resolution on the third reading of the bill"
CLEAN = "An entirely different sentence that no training document of this corpus contains"


def test_items_in_a_training_document_are_flagged_and_others_are_not(tmp_path):
    docs = [f"Document {i}. Some filler text about nothing in particular, number {i}." for i in range(30)]
    docs[7] += "\n" + LEAKED.upper() + "  and more."  # case and spacing differ: still found
    path = tmp_path / "web.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    config = load_config(None, [f"data.domains=[{{name: web, paths: [{path}], format: jsonl}}]", "data.heldout_fraction=0.2"])
    index = index_domain(config.data.domains[0], 0.2, 0)
    heldout_doc = index.read(int(index.doc_ids("heldout")[0]))
    tasks = {
        "qa": [
            TaskItem("leak", "Question: what happened?\n" + LEAKED + "\nAnswer:", " yes"),
            TaskItem("clean", "Question: " + CLEAN + "\nAnswer:", " no"),
            TaskItem("heldout", heldout_doc.split("\n")[0] + " " * 3, " ok"),  # held-out text is allowed
            TaskItem("short", "Answer:", " no"),  # too short to identify anything
        ]
    }
    report = check_contamination(config.data, tasks, min_chars=40)
    assert [(h[0], h[1], h[2]) for h in report.hits] == [("qa", "leak", "web")]
    assert report.checked_items == 4 and report.bytes_read["web"] > 0 and not report.truncated
    assert "1 of 4 task items occur verbatim" in report.message()
    assert item_needles(tasks["qa"][3], 40) == []
