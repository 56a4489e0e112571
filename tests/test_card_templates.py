"""Tests for rela_hf.card_templates: templates, citation, the benchmark link."""

from __future__ import annotations

from rela_hf.card_templates import BENCHMARK_FILE, benchmark_reference, template_path


def test_templates_ship_and_the_benchmark_is_linked_or_named():
    assert template_path("encoder.md").is_file() and template_path("efficient_dataset.md").is_file()
    linked = benchmark_reference("https://github.com/org/rela-hf")
    url = f"https://github.com/org/rela-hf/blob/main/{BENCHMARK_FILE}"
    assert linked == f"[the rela-hf benchmark]({url})"
    assert benchmark_reference("https://rela-hf.example.org") == (
        f"[the rela-hf benchmark](https://rela-hf.example.org) (`{BENCHMARK_FILE}`)"
    )
    named = f"the rela-hf benchmark (`{BENCHMARK_FILE}` in the rela-hf source)"
    assert benchmark_reference("") == named
