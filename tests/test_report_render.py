"""The report renders: valid HTML, every referenced image exists and is non-empty, the config and commands shown."""

from __future__ import annotations

import html.parser
from pathlib import Path
from typing import ClassVar

from mergemix_jax.report import render_report
from tests.pipeline_helpers import finished_tiny_run


class _Collector(html.parser.HTMLParser):
    VOID: ClassVar[set[str]] = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.images, self.headings, self.stack, self.errors = [], [], [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def test_report_is_well_formed_and_every_image_exists():
    run = finished_tiny_run()
    page = render_report(run.run_dir)
    text = page.read_text()
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert {"weights.png", "heatmap.png", "diagnostics.png", "traces.png"} <= {Path(src).name for src in parser.images}
    for src in parser.images:
        image = page.parent / src
        assert image.is_file() and image.stat().st_size > 1000, src
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert parser.headings[:4] == ["Mixtures found", "Proxy utility over the simplex", "Interference diagnostics", "Proxy vs real mixture training"]
    assert f"mergemix run --config {run.config_path}" in text
    assert "expert_steps: 3" in text  # the exact config
    assert "Chosen mixture" in text
