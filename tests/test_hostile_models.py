"""Hostile model files and archives (issue 26), below the console: the wire-format pre-check, the
sandbox's memory cap and time limit, and archives bounded by what they are. Every hostile file is
built here, a few hundred bytes to a few hundred KB; nothing large is written or committed."""
from __future__ import annotations

import gzip
import io
import json
import resource
import tarfile
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from car.console.errors import ApiError
from car.console.models import ModelStore
from car.policy.archive import ArchiveError, extract, scan
from car.policy.precheck import PrecheckError, check_model_file, frozen_graph_size, ir_size, onnx_size
from car.policy.sandbox import SandboxLimits, check_bundle
from hostile_models import fill_graph, huge_const_graph, many_nodes_graph
from model_factory import PPO_TAR, ir_files, metadata_bytes, nan_model, onnx_model, ov_model, pb_bytes, write_tar


def bundle(tmp_path: Path, model: dict[str, bytes]) -> Path:
    root = tmp_path / "bundle"
    root.mkdir()
    for name, data in {**model, "model_metadata.json": metadata_bytes()}.items():
        (root / name).write_bytes(data)
    return root


# the pre-check ----------------------------------------------------------------------------------

def test_a_real_aws_model_passes_the_precheck(sample_model):
    nodes, declared = frozen_graph_size(sample_model / "model" / "model_15.pb")
    assert 20 < nodes < 500 and 20_000_000 < declared < 30_000_000  # 62 nodes, 23.4 MB of weights


def write_pb(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_declared_huge_constant_is_refused_from_a_few_hundred_bytes(tmp_path):
    graph = huge_const_graph()
    assert len(graph) < 600
    with pytest.raises(PrecheckError,
                       match=r"^model.pb declares a constant of over 3.0 GiB; the car's limit is 64.0 MiB"):
        frozen_graph_size(write_pb(tmp_path / "model.pb", graph))


def test_graphs_past_the_node_cap_or_not_protobuf_are_refused(tmp_path):
    with pytest.raises(PrecheckError, match="more than 5000 nodes"):
        frozen_graph_size(write_pb(tmp_path / "model.pb", many_nodes_graph(5001)))
    assert frozen_graph_size(write_pb(tmp_path / "ok.pb", many_nodes_graph(100)))[0] == 101
    for garbage in (b"garbage" * 50, b"\x0a\xff\xff\xff\xff\x0f", b"\x0b"):  # bad tag, length past the end, group
        with pytest.raises(PrecheckError, match="is not a TensorFlow frozen graph"):
            frozen_graph_size(write_pb(tmp_path / "model.pb", garbage))
    assert frozen_graph_size(write_pb(tmp_path / "fixture.pb", pb_bytes(PPO_TAR))) == (40, 99072)


def _onnx_with(tensor: TensorProto, path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["policy"])], "g", [],
                              [helper.make_tensor_value_info("policy", TensorProto.FLOAT, None)], [tensor])
    onnx.save(helper.make_model(graph), path)
    return path


def test_onnx_declared_sizes_and_external_weights_are_refused(tmp_path):
    assert onnx_size(onnx_model(tmp_path / "tiny.onnx", outputs=5)) == (5, 40)
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[805306370], raw_data=b"\0" * 4)
    with pytest.raises(PrecheckError, match="declares a constant of over 3.0 GiB"):
        onnx_size(_onnx_with(huge, tmp_path / "huge.onnx"))
    outside = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    outside.external_data.add(key="location", value="../../../../etc/passwd")
    with pytest.raises(PrecheckError, match="external files"):
        onnx_size(_onnx_with(outside, tmp_path / "outside.onnx"))


def test_ir_files_past_their_caps_are_refused(tmp_path):
    files = ir_files(ov_model(), tmp_path / "ir")
    xml = tmp_path / "ir" / "model.xml"
    layers, weights = ir_size(xml)
    assert layers > 3 and weights == len(files["model.bin"])
    with pytest.raises(PrecheckError, match="more than 3 layers"):
        ir_size(xml, max_nodes=3)
    with pytest.raises(PrecheckError, match="model.bin is .* the car's limit is 16 bytes"):
        ir_size(xml, max_bytes=16)
    with pytest.raises(PrecheckError, match="model.xml is .* the car's limit"):
        ir_size(xml, max_xml_bytes=100)
    check_model_file(xml)


# the sandbox ------------------------------------------------------------------------------------

def test_a_conversion_that_allocates_gigabytes_is_stopped_by_the_memory_cap(tmp_path):
    """A Fill to 3 GiB: small constants pass the pre-check; OpenVINO allocates while converting."""
    root = bundle(tmp_path, {"model.pb": fill_graph(805306370)})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = check_bundle(root, tmp_path / "ir", tmp_path / "compiled")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"\nsandbox refused the 3 GiB Fill: {result.reason!r}; this process grew {grown_mib:.0f} MiB at peak")
    limit_mib = SandboxLimits().memory_bytes >> 20
    assert result.reason == f"the model needs more than the car's {limit_mib} MiB to convert and run"
    assert grown_mib < 100


def test_a_check_past_the_wall_clock_limit_is_killed(tmp_path):
    root = bundle(tmp_path, {"model.pb": pb_bytes(PPO_TAR)})
    result = check_bundle(root, tmp_path / "ir", tmp_path / "compiled", SandboxLimits(seconds=0.05))
    assert result.reason == "checking the model took longer than the car's 0.05 s limit"


def test_converted_files_past_the_file_size_cap_stop_the_check(tmp_path):
    root = bundle(tmp_path, {"model.pb": pb_bytes(PPO_TAR)})  # its IR weights are ~100 KB
    result = check_bundle(root, tmp_path / "ir", tmp_path / "compiled", SandboxLimits(file_bytes=10_000))
    assert result.reason == "the model's converted files would be larger than the car's 0 MiB (or the disk is full)"


def test_a_refused_model_leaves_nothing_in_the_cache_and_a_good_one_is_cached(tmp_path):
    store = ModelStore(tmp_path / "models", tmp_path / "cache")
    (tmp_path / "models").mkdir()
    good = bundle(tmp_path, {"model.pb": pb_bytes(PPO_TAR)})
    assert store.check(good) == good
    cached = sorted(p.relative_to(store.cache_dir) for p in store.cache_dir.rglob("*"))
    assert any(p.name == "model.xml" for p in cached)
    nan = tmp_path / "nan"
    nan.mkdir()
    for name, data in {**ir_files(nan_model(5), tmp_path / "nan-ir"), "model_metadata.json": metadata_bytes()}.items():
        (nan / name).write_bytes(data)
    with pytest.raises(ApiError, match="not finite") as refused:
        store.check(nan)  # compiles (a blob is cached), then fails on its blank-frame output
    assert refused.value.status == 422
    assert sorted(p.relative_to(store.cache_dir) for p in store.cache_dir.rglob("*")) == cached


# archives ---------------------------------------------------------------------------------------

def _tar_gz(path: Path, infos: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT) -> Path:
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in infos:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _file(name: str, data: bytes = b"") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _folder(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


def test_macos_litter_counts_toward_the_member_cap(tmp_path):
    path = _tar_gz(tmp_path / "litter.tar.gz", [_file("model.pb", b"x")] + [_file(f"._{i}") for i in range(1000)])
    with pytest.raises(ArchiveError, match="^archive has more than 1000 members$"):
        scan(path)
    assert [m.name for m in scan(path, max_members=1001)] == ["model.pb"]  # litter is counted, not listed


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_a_huge_member_name_is_refused_unread_and_never_echoed(tmp_path, fmt):
    path = _tar_gz(tmp_path / "name.tar.gz", [_file("n" * (1 << 20), b"x")], fmt)
    assert path.stat().st_size < 10_000
    with pytest.raises(ArchiveError) as refused:
        scan(path)
    assert "long-name or pax header" in str(refused.value) and len(str(refused.value)) < 120


@pytest.mark.parametrize("name, reason", [
    ("a/" * 2000, "name over 1024 bytes"),
    ("a/" * 500, "nested 500 deep; the limit is 16"),
    ("d/" + "c" * 256 + "/model.pb", "path part over 255 bytes"),
], ids=["2000 deep", "500 deep", "long component"])
def test_deep_or_long_names_are_refused_with_a_short_reason(tmp_path, name, reason):
    path = _tar_gz(tmp_path / "deep.tar.gz", [_folder(name)])
    with pytest.raises(ArchiveError, match=reason) as refused:
        scan(path, max_members=10)
    assert len(str(refused.value)) < 200


def test_directories_at_the_depth_cap_are_made_without_recursion(tmp_path):
    deep = "/".join(["d"] * 15)  # and the file at depth 16
    path = _tar_gz(tmp_path / "ok.tar.gz", [_folder(deep), _file(f"{deep}/model.pb", b"pb")])
    extract(path, tmp_path / "out")
    assert (tmp_path / "out" / deep / "model.pb").read_bytes() == b"pb"


def test_a_run_of_extended_headers_is_refused(tmp_path):
    """tarfile follows a run of GNU long-name headers by recursion: five in a row are refused."""
    raw = io.BytesIO()
    for _ in range(5):
        header = tarfile.TarInfo("././@LongLink")
        header.type, header.size = tarfile.GNUTYPE_LONGNAME, 10
        raw.write(header.tobuf(tarfile.USTAR_FORMAT) + b"longname\0\0".ljust(512, b"\0"))
    raw.write(tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024)
    path = tmp_path / "run.tar.gz"
    path.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(ArchiveError, match="more than 4 long-name or pax headers for one member"):
        scan(path)


def test_a_bundle_holds_no_data_beyond_the_unpacked_cap(tmp_path):
    meta = json.dumps({"pad": "x" * 200}).encode()
    path = write_tar(tmp_path / "big.tar.gz", {"model_metadata.json": meta, "model.pb": bytes(100_000)})
    with pytest.raises(ArchiveError, match="more than 50000 bytes"):
        scan(path, max_bytes=50_000)
