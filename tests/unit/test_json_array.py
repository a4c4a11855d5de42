"""Listings are joined from per-job JSON into one valid array, whatever their number."""

import json

from gflow.scheduler.ops_jobs import json_array


def test_json_array_of_zero_one_and_many_values():
    assert json_array([]) == b"[]"
    assert json_array([b'{"id":1}']) == b'[{"id":1}]'
    items = [json.dumps({"id": i}).encode() for i in range(5)]
    assert json.loads(json_array(list(items))) == [{"id": i} for i in range(5)]
