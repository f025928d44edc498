"""The builder's facts and rendering, and the release-page source against a local HTTP server."""
import hashlib
import http.server
import json
import threading

import pytest

import compat_matrix as cm
from tests.fixtures.wheelhouse.synth import make_wheel
from torch_npu_pkg import builder
from torch_npu_pkg.sources import GITHUB_API_ENV, NotHere, ReleaseSource
from torch_npu_pkg.wheels import Target, WheelError

M = cm.load_matrix()


def stack(row, python=None, arch="x86_64"):
    return cm.resolve(M, cm.Constraints(torch_npu="==" + row, python=python, arch=arch)).stack


def test_every_row_has_a_builder_toolchain_for_every_arch_it_ships():
    for row in M.rows:
        for arch in M.platforms.archs:
            if row.supports_arch(arch):
                tc = builder.toolchain_for(stack(row.torch_npu, arch=arch))
                assert tc.gcc_major >= 9 and tc.source.startswith("https://"), row.torch_npu


@pytest.mark.parametrize("row, arch, toolset, cmake", [
    ("2.13.0", "x86_64", "gcc-toolset-13", "'cmake==3.18.4.*'"),
    ("2.13.0", "aarch64", "gcc-toolset-13", "'cmake==4.3.2.*'"),
    ("2.7.1", "aarch64", "gcc-toolset-11", "'cmake==3.31.1.*'"),
    ("2.6.0", "x86_64", "gcc-toolset-9", "'cmake>=3.18.0'"),
])
def test_containerfile_uses_the_guides_toolchain(row, arch, toolset, cmake):
    s = stack(row, python="3.10", arch=arch)
    text = builder.render_containerfile(s)
    assert f"FROM quay.io/pypa/manylinux_2_28_{arch}:" in text
    assert f"yum install -y {toolset} " in text
    assert f"ENV PATH=/opt/rh/{toolset}/root/usr/bin:/opt/python/cp310-cp310/bin:$PATH" in text
    assert f"/opt/python/cp310-cp310/bin/python3.10 -m pip install --no-cache-dir {cmake} " in text
    assert "CMAKE_POLICY_VERSION_MINIMUM=3.5" in text
    assert f'io.npuenv.builder.torch="{builder.torch_line(s.row.torch)}"' in text
    assert builder.builder_image_name(s).startswith("localhost/npuenv-torch-npu-builder:torch")


def test_inferred_toolchains_say_so():
    text = builder.render_containerfile(stack("2.14.0", python="3.11"))
    assert "NOTE: inferred, not stated by the guide" in text


def test_source_repository_and_tag_come_from_the_matrix():
    row = M.find("2.12.0")
    assert builder.default_repo(row) == "https://github.com/Ascend/pytorch"
    assert builder.default_ref(row) == "v26.1.0-pytorch2.12.0"
    assert builder.default_repo(M.find("2.13.0")) == "https://github.com/Ascend/pytorch"
    assert builder.default_ref(M.find("2.13.0")) is None  # PyPI-only row: --source-ref needed


# --- release pages ---------------------------------------------------------------

class _Server:
    def __init__(self, routes):
        routes_ = routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = routes_.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A GitHub-like API for the release of row 2.0.1.post1 (a release-page row)."""
    s = stack("2.0.1.post1", python="3.10")
    owner, repo, tag = ReleaseSource.release_of(s.row.wheel["url"])
    wheel = make_wheel(tmp_path / "assets", "torch_npu", "2.0.1.post1", "cp310-cp310-linux_x86_64",
                       requires=["torch==2.0.1"])
    other = make_wheel(tmp_path / "assets", "torch_npu", "2.0.1.post1", "cp39-cp39-linux_x86_64")
    data = wheel.read_bytes()
    routes = {}
    server = _Server(routes)
    assets = [{"name": p.name, "size": p.stat().st_size, "browser_download_url": f"{server.url}/dl/{p.name}",
               "digest": "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()} for p in (other, wheel)]
    routes[f"/repos/{owner}/{repo}/releases/tags/{tag}"] = json.dumps({"tag_name": tag, "assets": assets}).encode()
    routes[f"/dl/{wheel.name}"] = data
    routes[f"/dl/{other.name}"] = other.read_bytes()
    monkeypatch.setenv(GITHUB_API_ENV, server.url)
    yield s, routes, assets, wheel
    server.close()


def test_release_page_wheel_is_fetched_and_its_digest_checked(release, tmp_path):
    s, _routes, _assets, wheel = release
    fetched = ReleaseSource().fetch(s, Target.for_stack(s), tmp_path / "stage", print)
    assert fetched.path.name == wheel.name and fetched.path.read_bytes() == wheel.read_bytes()
    assert fetched.source["checksum_source"] == "release asset digest"
    assert fetched.source["location"] == s.row.wheel["url"]


def test_release_page_checksum_mismatch_is_an_error(release, tmp_path):
    s, routes, assets, wheel = release
    routes[f"/dl/{wheel.name}"] = wheel.read_bytes()[:-1] + b"!"
    with pytest.raises(WheelError, match="checksum mismatch: the release says sha256"):
        ReleaseSource().fetch(s, Target.for_stack(s), tmp_path / "stage", print)


def test_release_page_without_the_wheel_or_the_release(release, tmp_path):
    s, routes, assets, wheel = release
    py39 = stack("2.0.1.post1", python="3.9")
    other_arch = stack("2.0.1.post1", python="3.10", arch="aarch64")
    with pytest.raises(NotHere, match=r"has no torch_npu 2.0.1.post1 wheel for Python 3.10 \(cp310\) on aarch64"):
        ReleaseSource().fetch(other_arch, Target.for_stack(other_arch), tmp_path / "a", print)
    assert ReleaseSource().fetch(py39, Target.for_stack(py39), tmp_path / "b", print).path.name.startswith(
        "torch_npu-2.0.1.post1-cp39")
    routes.clear()
    with pytest.raises(NotHere, match="HTTP 404"):
        ReleaseSource().fetch(s, Target.for_stack(s), tmp_path / "c", print)


def test_release_source_declines_pypi_rows(tmp_path):
    s = stack("2.13.0", python="3.11")
    with pytest.raises(NotHere, match="names no release page for torch_npu 2.13.0"):
        ReleaseSource().fetch(s, Target.for_stack(s), tmp_path, print)
