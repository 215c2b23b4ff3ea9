#!/usr/bin/env bash
# Prove that the Podman Docker-compatible API runs what the docker backend needs, through the
# Python docker SDK: host network, bind mounts (read-write and read-only), env, mem_limit,
# nano_cpus, logs, exit codes, stop/kill, published ports, labels. Needs `make services images`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$TESTENV/env.sh"
exec "$ROOT/.venv/bin/python" - <<'PY'
import os, socket, tempfile, time, urllib.request, pathlib, sys
import docker

image = os.environ["MLP_TEST_IMAGE"]
client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], version="auto")
print("engine:", client.version()["Version"], "api", client.api.api_version)
failures = []

def check(name, fn):
    t = time.time()
    try:
        fn()
        print(f"  ok    {name} ({time.time() - t:.1f}s)")
    except Exception as exc:  # report every failing flag, do not stop at the first
        failures.append(name)
        print(f"  FAIL  {name}: {type(exc).__name__}: {exc}")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def run(cmd, **kw):
    c = client.containers.run(image, cmd, detach=True, labels={"mlplatform.check": "1"}, **kw)
    try:
        code = c.wait(timeout=60)["StatusCode"]
        return code, c.logs().decode()
    finally:
        c.remove(force=True)

work = pathlib.Path(tempfile.mkdtemp(prefix="mlp-docker-check-"))
(work / "in.txt").write_text("hello\n")

def bind_mounts():
    code, out = run(["sh", "-c", "cat /in/in.txt && echo written > /out/result.txt && touch /in/ro 2>&1; true"],
                    volumes={str(work): {"bind": "/out", "mode": "rw"}, str(work) + "/": {"bind": "/in", "mode": "ro"}})
    assert code == 0 and "hello" in out, out
    assert (work / "result.txt").read_text() == "written\n"
    st = (work / "result.txt").stat()
    assert (st.st_uid, st.st_gid) == (0, 0), st  # written as root inside → root-owned on host
    assert "Read-only file system" in out, out

def mounts_api():
    m = docker.types.Mount(target="/out", source=str(work), type="bind")
    code, out = run(["sh", "-c", "ls /out"], mounts=[m])
    assert code == 0 and "in.txt" in out, out

def env_workdir():
    code, out = run(["sh", "-c", "echo $FOO $PWD $LANG"], environment={"FOO": "bar"}, working_dir="/tmp")
    assert out.split() == ["bar", "/tmp", "C.UTF-8"], out

def exit_code():
    code, _ = run(["sh", "-c", "exit 3"]); assert code == 3, code

def mem_limit():
    c = client.containers.run(image, ["sleep", "30"], detach=True, mem_limit="256m")
    try:
        assert c.attrs["HostConfig"]["Memory"] == 256 * 2**20, c.attrs["HostConfig"]["Memory"]
        out = c.exec_run(["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]).output.decode()
        assert int(out.strip()) == 256 * 2**20, out
    finally:
        c.remove(force=True)
    # the limit is enforced: allocating 400 MB gets the process OOM-killed (137)
    code, out = run(["python3", "-c", "b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('survived')"],
                    mem_limit="256m", memswap_limit="256m")
    assert code == 137 and "survived" not in out, (code, out)

def nano_cpus():
    c = client.containers.run(image, ["sleep", "30"], detach=True, nano_cpus=500_000_000)
    try:
        out = c.exec_run(["sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max"]).output.decode().split()
        assert [int(x) for x in out[:2]] == [50000, 100000], out
    finally:
        c.remove(force=True)

def host_network():
    port = free_port()
    c = client.containers.run(image, ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              detach=True, network_mode="host")
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read(); break
            except OSError:
                time.sleep(0.1)
        assert body is not None, c.logs().decode()
    finally:
        c.remove(force=True)

def published_port():
    port = free_port()
    c = client.containers.run(image, ["python3", "-m", "http.server", "8080"], detach=True,
                              ports={"8080/tcp": ("127.0.0.1", port)})
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read(); break
            except OSError:
                time.sleep(0.1)
        assert body is not None, c.logs().decode()
    finally:
        c.remove(force=True)

def stop_and_logs():
    c = client.containers.run(image, ["python3", "-u", "-c", "import time\nfor i in range(1000):\n print('line', i); time.sleep(0.05)"], detach=True)
    try:
        time.sleep(1)
        lines = []
        for chunk in c.logs(stream=True, follow=True):
            lines.append(chunk)
            if len(lines) > 3: break
        c.stop(timeout=2)
        c.reload()
        assert c.status == "exited", c.status
        assert c.attrs["State"]["ExitCode"] in (137, 143), c.attrs["State"]
    finally:
        c.remove(force=True)

def list_by_label():
    c = client.containers.run(image, ["sleep", "30"], detach=True, labels={"mlplatform.run": "check"})
    try:
        found = client.containers.list(filters={"label": "mlplatform.run=check"})
        assert [x.id for x in found] == [c.id], found
    finally:
        c.remove(force=True)

def image_inspect():
    img = client.images.get(image)
    assert image in img.tags, img.tags

for name, fn in [("image inspect", image_inspect), ("bind mounts (volumes=, rw+ro, root-owned output)", bind_mounts),
                 ("mounts=[Mount(type=bind)]", mounts_api), ("environment + working_dir", env_workdir),
                 ("exit code", exit_code), ("network_mode=host", host_network),
                 ("ports= published on 127.0.0.1 (default bridge network)", published_port),
                 ("mem_limit (set and enforced)", mem_limit), ("nano_cpus", nano_cpus),
                 ("logs(stream, follow) + stop", stop_and_logs), ("list(filters=label)", list_by_label)]:
    check(name, fn)

import shutil; shutil.rmtree(work, ignore_errors=True)
print("FAILED: " + ", ".join(failures) if failures else "all Docker API checks passed")
sys.exit(1 if failures else 0)
PY
