"""``--outputs`` / ``--summary``: GitHub's file formats, appended to."""

from __future__ import annotations

import pytest

from ci import outputs
from ci.errors import UsageError
from ci.predict import format_predictions


def test_outputs_append_key_value_lines_with_one_line_json(tmp_path):
    path = tmp_path / "github_output"
    outputs.write_outputs(str(path), {"job_name": "projects/p/jobs/1"})
    outputs.write_outputs(str(path), {"metrics": {"loss": 0.1, "accuracy": 0.9}})
    assert path.read_text() == ('job_name=projects/p/jobs/1\nmetrics={"accuracy":0.9,"loss":0.1}\n')
    outputs.write_outputs(None, {"ignored": 1})  # no file given: nothing to do
    with pytest.raises(UsageError, match="several lines"):
        outputs.write_outputs(str(path), {"bad": "a\nb"})


def test_summary_appends_markdown_blocks(tmp_path):
    path = tmp_path / "summary.md"
    outputs.write_summary(str(path), "### One\n")
    outputs.write_summary(str(path), "### Two")
    assert path.read_text() == "### One\n\n### Two\n\n"


def test_predictions_print_one_line_each_even_when_a_text_answer_spans_lines():
    # A text model's prediction may hold newlines: printed as JSON, one line per
    # prediction (before, printing it raised "output value spans several lines" after the
    # endpoint had answered).
    response = {
        "predictions": ["first\nsecond", {"class_ids": 2}, 0.5],
        "modelVersionId": "3",
        "deployedModelId": "7",
    }
    assert format_predictions(response).splitlines() == [
        '"first\\nsecond"',
        '{"class_ids":2}',
        "0.5",
        "(model version 3, deployed model 7)",
    ]
