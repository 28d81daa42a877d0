"""The gate: TFX threshold semantics (pure), its config, its report and exit code."""

from __future__ import annotations

import json
import math

import pytest

from ci import cli, gate, gate_rules
from ci.errors import CiError, UsageError

CONFIG = """
[metrics.accuracy]
direction = "higher"
lower_bound = 0.9
absolute_change = -0.01

[metrics.loss]
direction = "lower"
upper_bound = 0.5
relative_change = 0.1
"""


@pytest.fixture
def thresholds(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(CONFIG)
    return gate_rules.load_config(path)


def test_a_config_saved_with_a_byte_order_mark_reads_the_same(thresholds, tmp_path):
    # Editors on Windows may start UTF-8 files with one; tomllib alone would refuse line 1.
    marked = tmp_path / "marked.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + CONFIG.encode())
    assert gate_rules.load_config(marked) == thresholds


def test_no_champion_value_thresholds_alone_decide(thresholds):
    decision = gate_rules.decide(thresholds, {"accuracy": 0.95, "loss": 0.3}, None)
    assert decision.passed and decision.word == "yes"
    assert {c.kind for c in decision.checks} == {"value"}
    assert not gate_rules.decide(thresholds, {"accuracy": 0.89, "loss": 0.3}, None).passed
    assert not gate_rules.decide(thresholds, {"accuracy": 0.95, "loss": 0.6}, None).passed


def test_change_thresholds_against_champion(thresholds):
    champion = {"accuracy": 0.97, "loss": 0.30}
    # accuracy dropped 0.005 (allowed: 0.01), loss rose 5% (allowed: 10%)
    ok = gate_rules.decide(thresholds, {"accuracy": 0.965, "loss": 0.315}, champion)
    assert ok.passed
    # accuracy dropped 0.02: the value threshold holds, the change threshold does not
    drop = gate_rules.decide(thresholds, {"accuracy": 0.95, "loss": 0.30}, champion)
    failed = [(c.metric, c.kind) for c in drop.checks if not c.passed]
    assert failed == [("accuracy", "change")]
    # loss rose 20%: relative change broken
    worse = gate_rules.decide(thresholds, {"accuracy": 0.97, "loss": 0.36}, champion)
    assert [(c.metric, c.rule) for c in worse.checks if not c.passed] == [
        ("loss", "relative change <= 0.1")
    ]


def test_overrides_and_dotted_metrics(thresholds):
    merged = gate_rules.apply_overrides(
        thresholds, ["accuracy.lower_bound=0.999", "recall.setosa.lower_bound=0.5"]
    )
    assert (
        merged["accuracy"]["lower_bound"] == 0.999 and thresholds["accuracy"]["lower_bound"] == 0.9
    )
    metrics = {"accuracy": 0.99, "loss": 0.1, "recall": {"setosa": 1.0}}
    decision = gate_rules.decide(merged, metrics, None)
    assert [c.metric for c in decision.checks if not c.passed] == ["accuracy"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[metrics.accuracy]\nlower = 0.9\n", "unknown key 'lower'"),
        ("[metrics.accuracy]\nlower_bound = 'high'\n", "must be a number"),
        ("[metrics.accuracy]\nabsolute_change = -0.1\n", "no direction"),
        ("[metrics.accuracy]\ndirection = 'up'\n", "'higher' or 'lower'"),
        ("[thresholds]\n", "unknown table 'thresholds'"),
        ("[metrics\n", "not valid TOML"),
    ],
)
def test_bad_config_is_named(tmp_path, text, message):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        gate_rules.load_config(path)


def test_bad_override_and_missing_metric(thresholds):
    with pytest.raises(UsageError, match=r"bad --threshold 'accuracy=0\.9'"):
        gate_rules.apply_overrides(thresholds, ["accuracy=0.9"])
    with pytest.raises(UsageError, match="'abc' is not a number"):
        gate_rules.apply_overrides(thresholds, ["accuracy.lower_bound=abc"])
    with pytest.raises(CiError, match=r"no finite number 'loss' \(found nothing\)"):
        gate_rules.decide(thresholds, {"accuracy": 0.95}, None)
    # An infinite (or NaN) metric is no number to judge: never a "yes".
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(CiError, match="no finite number 'accuracy'"):
            gate_rules.decide(thresholds, {"accuracy": bad, "loss": 0.1}, None)


def test_markdown_table_candidate_against_champion(thresholds):
    champion = gate.Champion(
        "3", "projects/p/locations/l/models/m", "gs://b/m.json", {"accuracy": 0.97, "loss": 0.3}
    )
    candidate = {"accuracy": 0.95, "loss": 0.3, "num_eval_examples": 30}
    result = gate.GateResult(
        gate_rules.decide(thresholds, candidate, champion.metrics), "m.json", candidate, champion
    )
    table = gate.markdown(result)
    assert "### Evaluation gate: no" in table
    assert "| accuracy | 0.95 | 0.97 | -0.02 | ✅ >= 0.9, ❌ change >= -0.01 |" in table
    assert "| num_eval_examples | 30 | — | — | — |" in table
    assert result.as_dict()["champion"]["version_id"] == "3"


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe on this machine
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "loss": 0.2}))
    (tmp_path / "gate.toml").write_text(CONFIG)
    argv = [
        "gate",
        "--candidate-metrics",
        "metrics.json",
        "--project",
        "my-project",
        "--bucket",
        "my-bucket",
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert "credentials" in err
    assert cli.main(["gate", "--job", "1", "--candidate-metrics", "m", "--config", "x"]) == 2
    assert "cannot read gate config 'x'" in capsys.readouterr().err
    # A bad local metrics file is bad usage (exit 2), found before connecting; no decision.
    (tmp_path / "inf.json").write_text('{"accuracy": Infinity, "loss": 1e999}')
    (tmp_path / "list.json").write_text("[1]")
    for name, message in [
        ("inf.json", "inf.json metrics have no finite number 'accuracy' (found Infinity)"),
        ("list.json", "metrics are not a JSON object: list.json"),
        ("missing.json", "cannot read metrics file 'missing.json'"),
    ]:
        argv = ["gate", "--candidate-metrics", name, "--decision-out", "d.json"]
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "d.json").exists()
