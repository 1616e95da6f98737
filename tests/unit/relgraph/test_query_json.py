"""`relgraph query … --json` prints every field, so scripts need no special cases."""

from __future__ import annotations

import json

from google.protobuf.timestamp_pb2 import Timestamp

from relgraph.query import response_json
from relgraph.v1 import common_pb2
from relgraph.v1 import warm_paths_pb2 as wp


def test_no_path_is_an_empty_list_and_zeros_are_printed() -> None:
    data = json.loads(response_json(wp.FindWarmPathsResponse()))
    assert data["paths"] == [] and data["targets"] == 0 and data["snapshot_age_seconds"] == 0.0


def test_every_hop_field_is_present_and_an_unset_time_is_null() -> None:
    masked = wp.Hop(person=common_pb2.PersonView(), evidence=wp.HopEvidence(strength=0.4))
    own = wp.Hop(
        person=common_pb2.PersonView(),
        evidence=wp.HopEvidence(
            strength=0.2, observed_by_requester=True, last_interaction=Timestamp(seconds=1_700_000_000)
        ),
    )
    response = wp.FindWarmPathsResponse(paths=[wp.WarmPath(strength=0.08, hops=[masked, own])], targets=1)
    hops = json.loads(response_json(response))["paths"][0]["hops"]
    evidence_fields = {field.name for field in wp.HopEvidence.DESCRIPTOR.fields}
    assert set(hops[0]["evidence"]) == set(hops[1]["evidence"]) == evidence_fields
    assert hops[0]["evidence"]["last_interaction"] is None and hops[0]["evidence"]["two_way_share"] == 0.0
    assert hops[1]["evidence"]["last_interaction"] == "2023-11-14T22:13:20Z"
    assert set(hops[0]["person"]) == {field.name for field in common_pb2.PersonView.DESCRIPTOR.fields}
