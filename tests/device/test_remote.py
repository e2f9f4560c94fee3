"""edgecnn bench --remote against a real sshd on 127.0.0.1: a local bench's JSON plus host and fingerprint,
the install cached on the device, and one line, fast, for a refused key or a closed port."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import pytest
from onnx_nets import Block, cnn, save
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.device.remote import device_fingerprint

SSHD = Path("/usr/sbin/sshd")
NEEDS_SSHD = pytest.mark.skipif(not SSHD.is_file() or not shutil.which("ssh") or os.geteuid() != 0,
                                reason="needs openssh-server and openssh-client (as root: make ssh-deps), and root to run sshd")
FAST = ["--batch", "1,4", "--warmup", "2", "--runs", "5"]  # the shape of a bench, not its figures
FINGERPRINT = {"cpu", "cores", "machine", "governor", "cpu_temp_c", "throttled", "throttling", "os", "kernel", "python", "onnxruntime", "hostname"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    return result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Device:
    port: int
    config: Path  # ssh client config: the key sshd accepts, no known_hosts; Host `device` is 127.0.0.1:port as root
    wrong_key: Path  # the same with a key sshd does not know
    cache: Path  # the device's XDG_CACHE_HOME (sshd sets it in each session)


def _client_config(path: Path, port: int, key: Path) -> Path:
    path.write_text(f"Host device\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                    f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile /dev/null\n"
                    "  StrictHostKeyChecking no\n  LogLevel ERROR\n")
    return path


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """sshd on 127.0.0.1 with generated host and user keys; its sessions use a cache folder of their own
    and this machine's pip settings and cache, so the install reaches the same package index."""
    tmp = tmp_path_factory.mktemp("ssh")
    for name in ("host_key", "id", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / name], check=True, timeout=30)
    (tmp / "authorized_keys").write_text((tmp / "id.pub").read_text())
    port = _free_port()
    pip = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    pip.setdefault("PIP_CACHE_DIR", str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"))
    setenv = " ".join(f'"{k}={v}"' for k, v in {"XDG_CACHE_HOME": str(tmp / "device-cache"), **pip}.items())
    config = tmp / "sshd_config"
    config.write_text(f"ListenAddress 127.0.0.1:{port}\nHostKey {tmp}/host_key\nPidFile {tmp}/sshd.pid\n"
                      f"AuthorizedKeysFile {tmp}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                      f"KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSetEnv {setenv}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder (Debian's service makes it)
    log = (tmp / "sshd.log").open("w")
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert sshd.poll() is None, (tmp / "sshd.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen within 10 s"
                time.sleep(0.1)
        yield Device(port, _client_config(tmp / "ssh_config", port, tmp / "id"), _client_config(tmp / "ssh_wrong", port, tmp / "other"),
                     tmp / "device-cache")
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    """Two small CNNs outside any run folder (so a local bench records nothing)."""
    folder = tmp_path_factory.mktemp("models")
    return [save(cnn((1, 8, 8)), folder / "model.fp32.onnx"), save(cnn((1, 8, 8), (Block(16, pool=2), Block(16)), seed=1), folder / "wide.onnx")]


@pytest.fixture(scope="module")
def first_run(device, models):
    """The first remote bench of the session: it copies and installs the bundle (pip into a venv there)."""
    t0 = time.perf_counter()
    result = invoke("bench", *models, *FAST, "--remote", f"root@127.0.0.1:{device.port}", "--ssh-config", device.config, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output), time.perf_counter() - t0


@pytest.mark.slow
@NEEDS_SSHD
def test_remote_bench_is_a_local_bench_plus_host_and_fingerprint(first_run, models, device):
    hosts, seconds = first_run
    local = invoke("bench", *models, *FAST, "--json")
    assert local.exit_code == 0, local.output
    local = json.loads(local.output)
    assert len(hosts) == 1
    remote = hosts[0]
    assert remote["host"] == f"root@127.0.0.1:{device.port}"
    assert set(remote) == set(local) | {"host", "device", "bundle"}
    assert [m["model"] for m in remote["models"]] == [m["model"] for m in local["models"]] == [str(m) for m in models]
    assert [(r["model"], r["variant"], r["batch"]) for r in remote["results"]] == [(r["model"], r["variant"], r["batch"]) for r in local["results"]]
    assert [set(r) for r in remote["results"]] == [set(r) for r in local["results"]]
    assert (remote["target"], remote["provider"], remote["threads"], remote["runs"], remote["warmup"]) == ("ort", "cpu", 1, 5, 2)
    device_info = remote["device"]
    assert FINGERPRINT <= set(device_info)
    assert device_info["os"] == platform.freedesktop_os_release()["PRETTY_NAME"] and device_info["kernel"] == platform.release()
    assert device_info["onnxruntime"] == ort.__version__  # the bundle pins this machine's versions
    assert device_info["python"] == remote["machine"]["python"]
    bundle = remote["bundle"]
    assert bundle["cached"] is False and bundle["copied"] == ["model.fp32.onnx", "wide.onnx"]
    assert (device.cache / "edgecnn" / "bundles" / bundle["sha256"] / "installed").is_file()
    print(f"first remote bench, install included: {seconds:.1f} s (setup {bundle['setup_s']:.1f} s)")


@pytest.mark.slow
@NEEDS_SSHD
def test_a_second_run_skips_copy_and_install_and_hosts_share_one_table(first_run, models, device):
    installed = device.cache / "edgecnn" / "bundles" / first_run[0][0]["bundle"]["sha256"] / "installed"
    stamp = installed.stat().st_mtime_ns
    t0 = time.perf_counter()
    result = invoke("bench", *models, *FAST, "--remote", "device", "--remote", f"root@127.0.0.1:{device.port}", "--ssh-config", device.config, "--json")
    seconds = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    hosts = json.loads(result.output)
    assert [h["host"] for h in hosts] == ["device", f"root@127.0.0.1:{device.port}"]
    assert {h["bundle"]["sha256"] for h in hosts} == {installed.parent.name}, "edgecnn's files changed since the first run: a new bundle"
    assert all(h["bundle"]["cached"] and h["bundle"]["copied"] == [] and h["bundle"]["setup_s"] == 0 for h in hosts)
    assert installed.stat().st_mtime_ns == stamp  # not installed again
    print(f"two cached remote benches: {seconds:.1f} s")
    assert seconds < 60
    table = invoke("bench", *models, *FAST, "--remote", "device", "--remote", f"root@127.0.0.1:{device.port}", "--ssh-config", device.config)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert any(line.split()[:2] == ["host", "model"] for line in lines)
    rows = [line.split() for line in lines if line.rstrip().endswith("×")]  # a long host name folds onto more lines
    assert len(rows) == 8 and {r[0][:8] for r in rows} == {"device", "root@127"}  # 2 hosts × 2 models × 2 batches
    assert sum(line.startswith(("device: ", f"root@127.0.0.1:{device.port}: ")) for line in lines) == 2  # a fingerprint line per host


@pytest.mark.slow
@NEEDS_SSHD
def test_a_refused_key_and_a_closed_port_are_one_line_each_and_fast(models, device):
    t0 = time.perf_counter()
    out = one_line_error(invoke("bench", *models, "--remote", f"root@127.0.0.1:{device.port}", "--ssh-config", device.wrong_key))
    assert out.startswith(f"error: root@127.0.0.1:{device.port}: ssh could not log in: ") and "Permission denied (publickey)" in out
    closed = _free_port()
    out = one_line_error(invoke("bench", *models, "--remote", f"root@127.0.0.1:{closed}", "--ssh-config", device.config))
    assert out.startswith(f"error: root@127.0.0.1:{closed}: ssh could not log in: ") and "Connection refused" in out
    assert time.perf_counter() - t0 < 10


@pytest.mark.slow
@NEEDS_SSHD
def test_a_failing_host_is_its_own_line_and_the_others_still_count(first_run, models, device):
    closed = _free_port()
    result = invoke("bench", *models, *FAST, "--remote", f"root@127.0.0.1:{closed}", "--remote", "device", "--ssh-config", device.config, "--json")
    assert result.exit_code == 2
    stdout, _, error = result.output.rpartition("}\n]\n")
    hosts = json.loads(stdout + "}\n]\n")
    assert hosts[0] == {"host": f"root@127.0.0.1:{closed}", "error": hosts[0]["error"]} and "Connection refused" in hosts[0]["error"]
    assert hosts[1]["host"] == "device" and len(hosts[1]["results"]) == 4
    assert error.startswith(f"error: root@127.0.0.1:{closed}: ssh could not log in") and error.count("\n") == 1


def test_bad_remote_options_are_one_line_before_any_connection(models, tmp_path):
    out = one_line_error(invoke("bench", *models, "--remote", "pi@pi4:70000"))
    assert "remote host 'pi@pi4:70000' is not [user@]host[:port]" in out
    out = one_line_error(invoke("bench", *models, "--remote=-oProxyCommand=touch x"))
    assert "is not [user@]host[:port]" in out and not Path("x").exists()
    out = one_line_error(invoke("bench", *models, "--remote", "pi@pi4", "--profile"))
    assert "--profile, --ep, --strict and --device-id are for a bench here" in out
    out = one_line_error(invoke("bench", *models, "--remote", "pi@pi4", "--ssh-config", tmp_path / "none"))
    assert f"ssh config {tmp_path / 'none'} not found" in out
    out = one_line_error(invoke("bench", *models, "--remote", "pi@pi4", "--target", "pi3"))
    assert "unknown target 'pi3'" in out


def test_the_fingerprint_has_every_key_here_too():
    info = device_fingerprint()
    assert FINGERPRINT <= set(info) and info["cores"] == os.cpu_count() and info["onnxruntime"] == ort.__version__
    assert info["throttling"] is None or isinstance(info["throttling"], list)


@pytest.mark.slow
@NEEDS_SSHD
def test_quantize_search_decides_on_the_devices_timings(first_run, device, tmp_path):
    """--remote: the candidates are timed on the device and the decision says so; the kept model is one of them."""
    from onnx_nets import save_with_data

    fp32, data = save_with_data(cnn((1, 24, 24), (Block(64, pool=2), Block(64)), classes=10), tmp_path, samples=64)
    result = invoke("quantize-search", fp32, "--calib", data, "--max-drop", "25", "--batch", "1", "--runs", "20",
                    "--remote", f"root@127.0.0.1:{device.port}", "--ssh-config", device.config, "--json")
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["target"] == "ort" and decision["timed"].startswith("on the device")
    assert decision["fp32_p50_ms"]["1"] > 0 and any(t["speedup"] for t in decision["trials"] if t["within_budget"])
