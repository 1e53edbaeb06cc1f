"""The checked-in generated modules are exactly what grpcio-tools makes of the protos."""

from __future__ import annotations

from pathlib import Path

from mixerhub.api import protogen


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    checked_in = Path(protogen.__file__).resolve().parent / "mixer" / "v1"
    generated = protogen.generate(tmp_path)
    assert generated, "protoc produced nothing"
    for path in generated:
        mine = (checked_in / path.name).read_text()
        assert mine == path.read_text(), f"{path.name} is stale: run python -m mixerhub.api.protogen"
    names = {p.name for p in checked_in.glob("*_pb2*.py*")}
    assert names == {p.name for p in generated}


def test_messages_use_the_mixer_package_and_field_numbers() -> None:
    from mixerhub.api.mixer.v1 import check_pb2, report_pb2, service_pb2

    assert service_pb2.DESCRIPTOR.services_by_name["Mixer"].full_name == "istio.mixer.v1.Mixer"
    pre = check_pb2.CheckResponse.PreconditionResult.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in pre.items()} == {
        "status": 1, "valid_duration": 2, "valid_use_count": 3, "referenced_attributes": 5,
        "route_directive": 6}
    assert pre["status"].message_type.full_name == "google.rpc.Status"
    rr = report_pb2.ReportRequest.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in rr.items()} == {
        "attributes": 1, "default_words": 2, "global_word_count": 3,
        "repeated_attributes_semantics": 4}
