"""The checked-in stubs in platform/seft/v1/ must be what protos/ generates."""

import importlib.util

from helpers import ROOT

spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
gen_protos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_protos)


def test_checked_in_stubs_are_fresh(tmp_path):
    generated = gen_protos.generate(tmp_path)
    checked_in = ROOT / "platform" / "seft" / "v1"
    assert {p.name for p in generated} == {p.name for p in checked_in.glob("*_pb2*.py*")}
    stale = [p.name for p in generated if p.read_bytes() != (checked_in / p.name).read_bytes()]
    assert not stale, f"stale stubs {stale}: run `make protos` (python scripts/gen_protos.py) and commit"


def test_four_services_are_defined():
    from seft.v1 import critic_pb2, generator_pb2, labeller_pb2, reviser_pb2

    names = {s.full_name for m in (generator_pb2, reviser_pb2, critic_pb2, labeller_pb2)
             for s in m.DESCRIPTOR.services_by_name.values()}
    assert names == {"seft.v1.Generator", "seft.v1.Reviser", "seft.v1.Critic", "seft.v1.Labeller"}
