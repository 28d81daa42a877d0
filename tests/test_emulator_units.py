"""The emulator's pure parts, without processes: replica plans, schema checks, fault table."""

from __future__ import annotations

import io
import json

import pytest

from ci.emulator import batch_read, replicas, schema
from ci.emulator.faults import FaultTable
from ci.emulator.httpd import ApiError, Router


def test_plan_maps_pools_to_task_types_with_distinct_ports():
    plan, notes = replicas.plan(
        [{"replicaCount": "1"}, {"replicaCount": "2"}, {}, {"replicaCount": 1}]
    )
    assert [(r.name, r.task_type) for r in plan] == [
        ("workerpool0-0", "chief"),
        ("workerpool1-0", "worker"),
        ("workerpool1-1", "worker"),
        ("workerpool3-0", "evaluator"),
    ]
    assert len({r.port for r in plan}) == 4 and notes == []


def test_plan_cap_drops_the_last_pools_first_and_says_so():
    plan, notes = replicas.plan([{}, {"replicaCount": 3}, {"replicaCount": 2}], max_local=3)
    assert [r.name for r in plan] == ["workerpool0-0", "workerpool1-0", "workerpool1-1"]
    assert "asks for 6 replicas" in notes[0] and "caps it at 3" in notes[0]


def test_cluster_env_is_the_same_cluster_for_everyone_and_empty_for_one_replica():
    plan, _ = replicas.plan([{}, {"replicaCount": 1}, {"replicaCount": 1}, {"replicaCount": 1}])
    envs = [replicas.cluster_env(plan, r) for r in plan]
    configs = [json.loads(e["TF_CONFIG"]) for e in envs]
    assert len({json.dumps(c["cluster"]) for c in configs}) == 1
    assert sorted(configs[0]["cluster"]) == ["chief", "ps", "worker"]
    assert configs[3]["task"] == {"type": "evaluator", "index": 0}
    single, _ = replicas.plan([{}])
    assert replicas.cluster_env(single, single[0]) == {}


def test_output_env_sits_under_the_base_output_directory():
    env = replicas.output_env({"baseOutputDirectory": {"outputUriPrefix": "gs://b/run/"}})
    assert env == {
        "AIP_MODEL_DIR": "gs://b/run/model/",
        "AIP_CHECKPOINT_DIR": "gs://b/run/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": "gs://b/run/logs/",
    }
    assert replicas.output_env({}) == {}


def test_schema_drops_output_only_fields_and_normalises_int64():
    body = {
        "displayName": "x",
        "state": "JOB_STATE_SUCCEEDED",
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "replicaCount": 2,
                    "pythonPackageSpec": {
                        "executorImageUri": "i",
                        "packageUris": ["gs://b/p"],
                        "pythonModule": "m",
                    },
                }
            ]
        },
    }
    cleaned = schema.validate("GoogleCloudAiplatformV1CustomJob", body)
    assert "state" not in cleaned
    assert cleaned["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "2"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"instances": "x"}, "expected a list"),
        ({}, "Field: instances; Message: Required"),
        ({"instances": [1], "extra": 1}, 'Unknown name "extra"'),
    ],
)
def test_schema_rejects_with_400(body, fragment):
    with pytest.raises(ApiError) as caught:
        schema.validate("GoogleCloudAiplatformV1PredictRequest", body)
    assert caught.value.code == 400 and fragment in caught.value.message


def test_fault_table_matches_method_suffixes_and_counts_down():
    table = FaultTable()
    table.add({"method": "endpoints.predict", "status": 503, "count": 2})
    table.check_call("aiplatform.projects.locations.models.get")  # not this one
    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            table.check_call("aiplatform.projects.locations.endpoints.predict")
        assert caught.value.status == "UNAVAILABLE"
    table.check_call("aiplatform.projects.locations.endpoints.predict")
    assert table.listing() == []


def test_fault_table_refuses_bad_specs():
    table = FaultTable()
    for spec in [{"method": "predict", "status": 200}, {"job": "explode"}, {"count": 0}]:
        with pytest.raises(ApiError):
            table.add(spec)


def test_router_answers_unknown_paths_and_methods_in_google_format():
    router = Router()
    router.add("GET", "/v1/things/(?P<id>[^/]+)", "test.get", lambda r: (200, r.params))
    assert router.dispatch("GET", "/v1/things/7?alt=json", b"") == (200, {"id": "7"})
    status, body = router.dispatch("POST", "/v1/things/7", b"")
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")
    status, body = router.dispatch("GET", "/v1/nothing", b"")
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (b"a\n\n  \nbb\r\nccc", [b"a", b"bb", b"ccc"]),  # blanks skipped, CRLF, no last \n
        (b"x" * 23 + b"\n" + b"y" * 9 + b"\n", [b"x" * 23, b"y" * 9]),  # across many chunks
        (b"\n\nabcd", [b"abcd"]),
    ],
)
def test_batch_input_lines_join_lines_that_span_chunks(data, expected):
    # Chunks of 4 bytes: every line longer than that is joined from its pieces.
    assert list(batch_read.lines(io.BytesIO(data), chunk_size=4)) == expected
