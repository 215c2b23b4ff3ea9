"""Submitting training runs on Kubernetes: the platform API against a bare client loop, in one run.

    source .testenv/env.sh && source .testenv/kube/env.sh
    .venv/bin/python benchmarks/kube_submit/run.py [--count 250] [--order bare,platform,platform,bare]
                                                   [--cores split,shared] [--warmup 64] [--downstream run|paused]
                                                   [--db sqlite|postgresql] [--servers N]

Against the control plane of scripts/kube-up.sh (MLP_TEST_KUBECONFIG; kwok nodes), in one fresh
namespace with an RWX claim (as tests/kube/test_server_kubernetes.py makes it):

- platform: a real `mlp server --backend kubernetes --namespace NS --pvc CLAIM` subprocess on
  127.0.0.1; a tiny model is saved once, then --count ``POST /api/v1/runs`` per phase with
  --concurrency requests in flight. A 201 means the run is recorded and its Job created (the
  backend makes one API call per run: the Job; the pod's run token is a projected service-account
  token, no Secret).
- bare: the same number of Jobs created straight through the platform's own async client
  (mlplatform_server/backends/kubernetes/client.py), same concurrency, the Jobs made before the
  clock starts. Each Job is the platform's own Job (read back from one warm-up run, renamed, its
  platform labels swapped for a bench label so the server's watches ignore it): same shape, size,
  and the same call (the create answered with the Job's metadata only, as the platform asks).
- --servers N (with --db postgresql): N servers on one database, request i sent to server i mod N.
- Both phases' HTTP clients are aiohttp, so the client's own CPU, which shares the box's cores
  with the server and the control plane, is alike each way.

Two CPU layouts, measured in turn (--cores): **split**, the control plane (kube-apiserver, etcd,
the controllers, the scheduler, kwok: every thread) pinned to the upper half of the CPUs and this
client and the server to the lower half, as on a cluster, where the platform's pod does not run on
the control plane's cores; and **shared**, every process on every CPU, where each CPU-second the
server spends is one the API server does not get. The pinning is undone at the end.

An untimed warm-up (--warmup Jobs each way) goes first: the first phase of a run was up to 1.6×
slower than later ones of its kind. Then phases alternate (bare, platform, platform, bare: 500
each way by default), and before each one the script waits (bounded) until the earlier phases'
work is over: every pod made and succeeded,
the box idle (and, first, no earlier run's namespace still being deleted). Everything stays on
loopback and in-flight requests are bounded by --concurrency. The namespace (and its PV) is
deleted at the end, also on failure.

Prints, per phase, Jobs/s, the CPU the box, this client and the server used; then, per layout,
Jobs/s each way over all phases and the ratio next to the goals (≥ 50 Jobs/s through the platform,
≤ 1.3× the bare loop's time).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from mlplatform_server.backends.common import free_port  # noqa: E402
from mlplatform_server.backends.kubernetes import manifests as mf  # noqa: E402
from mlplatform_server.backends.kubernetes.client import KubeClient  # noqa: E402
from kubetest import claim_manifests  # noqa: E402
from support import fresh_postgres_database  # noqa: E402
from notebooks import realistic_notebook  # noqa: E402

PVC = "mlp-data"
GOAL_RATE = 50.0
GOAL_RATIO = 1.3
BENCH_LABEL = "mlplatform.bench/phase"


def kubeconfig() -> str:
    path = os.environ.get("MLP_TEST_KUBECONFIG")
    if not path or not Path(path).is_file():
        sys.exit("MLP_TEST_KUBECONFIG is not set or missing: run make kube-up, then "
                 "source .testenv/env.sh && source .testenv/kube/env.sh")
    return path


def kubectl_bin() -> str:
    local = ROOT / ".testenv" / "bin" / "kubectl"
    return str(local) if local.exists() else (shutil.which("kubectl") or sys.exit("kubectl not found"))


def kubectl(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([kubectl_bin(), *args], input=input, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": kubeconfig()})
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_namespace(ns: str) -> None:
    """A namespace with an RWX claim bound to a hostPath volume (kwok never mounts it)."""
    kubectl("create", "namespace", ns)
    kubectl("-n", ns, "wait", "serviceaccount/default", "--for=create", "--timeout=60s")
    kubectl("apply", "-f", "-", input=json.dumps(claim_manifests(ns, PVC)))
    kubectl("-n", ns, "wait", f"pvc/{PVC}", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")


def drop_namespace(ns: str) -> None:
    kubectl("delete", "namespace", ns, "--wait=false", check=False)
    kubectl("delete", "pv", f"{ns}-data", "--wait=false", check=False)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")


def control_plane_pids() -> dict[str, int]:
    """The control plane's processes (scripts/kube-up.sh), by program name."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            program = Path((entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode()).name
        except OSError:
            continue
        if program in CONTROL_PLANE:
            found.setdefault(program, int(entry.name))
    return found


def control_plane_cpu(pids: dict[str, int]) -> dict[str, float]:
    cpu = {}
    for name, pid in pids.items():
        try:
            cpu[name] = cpu_seconds(pid)
        except OSError:
            continue
    return cpu


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads made later inherit it from their maker)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, FileNotFoundError):
            continue  # a thread that ended meanwhile


class SplitCores:
    """--cores split: the control plane on the upper half of this process's CPUs, this client and
    the platform's server (started after, so it inherits) on the lower half — as in a cluster, where
    the platform's pod and the control plane do not share cores. Undone on exit."""

    def __init__(self, plane: dict[str, int]) -> None:
        if not plane:  # e.g. a control plane on another machine: nothing here to pin
            sys.exit("--cores split: no control-plane process (kube-apiserver, etcd, ...) runs on this machine; "
                     "start one with make kube-up, or measure with --cores shared")
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            sys.exit(f"--cores split needs at least 2 CPUs, this process may use {len(cpus)}: use --cores shared")
        half = len(cpus) // 2
        self.ours, self.plane_cpus = set(cpus[:half]), set(cpus[half:])
        self.plane = plane
        self.before = {pid: os.sched_getaffinity(pid) for pid in plane.values()}

    def __enter__(self) -> SplitCores:
        for pid in self.plane.values():
            pin(pid, self.plane_cpus)
        os.sched_setaffinity(0, self.ours)
        return self

    def __exit__(self, *exc: object) -> None:
        for pid, cpus in self.before.items():
            try:
                pin(pid, cpus)
            except FileNotFoundError:
                continue  # that process has stopped
        os.sched_setaffinity(0, self.ours | self.plane_cpus)

    def describe(self) -> str:
        return (f"cores split: the control plane on CPU {_cpus(self.plane_cpus)}, "
                f"this client and the mlp server on CPU {_cpus(self.ours)}")


DOWNSTREAM = ("kube-controller-manager", "kube-scheduler", "kwok")


@contextlib.contextmanager
def downstream_paused(plane: dict[str, int], paused: bool):
    """--downstream paused: the Job controller, the scheduler and kwok stopped (SIGSTOP) for the
    timed phase and resumed after it, whatever happens, so neither way's window holds any of the
    work of running the Jobs (pods, bindings, status writes); the API server and etcd still serve
    the creates and the platform's watches. A diagnostic: it is not how a cluster runs."""
    stopped = [pid for name, pid in plane.items() if paused and name in DOWNSTREAM]
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


_REQUEST_LINE = re.compile(r'^apiserver_request_total\{(.*)\} (\S+)$')


def apiserver_requests() -> collections.Counter:
    """The API server's request counts so far, by verb and resource (its /metrics)."""
    counts: collections.Counter = collections.Counter()
    for line in kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = _REQUEST_LINE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        resource = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
        counts[f"{labels.get('verb')} {resource}"] += int(float(match.group(2)))
    return counts


PROFILED_SERVER = Path(__file__).with_name("profiled_server.py")


class Server:
    """`mlp server --backend kubernetes` as a subprocess on loopback."""

    def __init__(self, tmp: Path, ns: str, extra_env: dict[str, str], profile: str | None = None, *,
                 db_url: str | None = None, token: str | None = None, index: int = 0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token or "admin-" + os.urandom(12).hex()
        self.log_path = tmp / ("server.log" if index == 0 else f"server-{index}.log")
        # --profile-server: cProfile on the process's CPU time (not wall time: the box is shared) during
        # the platform phases only (SIGUSR1/SIGUSR2), written when the server stops; it slows the server,
        # so its phases' figures are not the goal's.
        runner = ["-m", "mlplatform_server.cli"] if profile is None else [str(PROFILED_SERVER), profile]
        args = [sys.executable, *runner, "server", "--backend", "kubernetes",
                "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(tmp / "data"),
                "--namespace", ns, "--kubeconfig", kubeconfig(), "--pvc", PVC,
                *(["--db-url", db_url] if db_url else [])]
        self.env = {**os.environ, "MLP_TOKEN": self.token, **extra_env}
        self.profiled = profile is not None
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     env=self.env, cwd=ROOT)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlp server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"mlp server did not answer:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def mlp_json(self, *args: str) -> Any:
        env = {**os.environ, "MLP_URL": self.url, "MLP_TOKEN": self.token}
        proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", *args, "--json"], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"mlp {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout)

    def profiling(self, on: bool) -> None:
        if self.profiled:
            self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# -- the bare loop's objects ----------------------------------------------------------------------
def strip_labels(labels: dict[str, str] | None, phase: str) -> dict[str, str]:
    """The platform's labels minus the ones its watches select on (and the Job controller's), plus ours."""
    out = {k: v for k, v in (labels or {}).items()
           if k not in mf.MANAGED_BY and not k.startswith("batch.kubernetes.io/")
           and k not in ("controller-uid", "job-name")}
    out[BENCH_LABEL] = phase
    return out


def job_template(created: dict[str, Any]) -> dict[str, Any]:
    """The platform's Job as it was submitted: server-set fields (status, uid, selector, the Job
    controller's labels) removed."""
    job = copy.deepcopy(created)
    job.pop("status", None)
    meta = job["metadata"]
    job["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    spec = job["spec"]
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    return job


def bare_job(template: dict[str, Any], name: str, phase: str) -> dict[str, Any]:
    job = copy.deepcopy(template)
    job["metadata"]["name"] = name
    job["metadata"]["labels"] = strip_labels(job["metadata"].get("labels"), phase)
    tmeta = job["spec"]["template"].setdefault("metadata", {})
    tmeta["labels"] = strip_labels(tmeta.get("labels"), phase)
    return job


# -- timing ---------------------------------------------------------------------------------------
class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seconds = 0.0
        self.latencies: list[float] = []
        self.count = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1000
        return (f"{self.name:<28} {self.count:>5} Jobs in {self.seconds:7.2f} s = {self.rate:7.1f} Jobs/s"
                f"   (per request p50 {p50:6.1f} ms, p95 {p95:6.1f} ms)")


async def bounded(count: int, concurrency: int, one) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i in range(count) with at most ``concurrency`` in flight; wall seconds and
    each call's latency."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def task(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(count)))
    return time.perf_counter() - start, latencies


async def bare_phase(name: str, count: int, concurrency: int, template: dict[str, Any]) -> Phase:
    """--count Jobs straight through the client; the Jobs are made before the clock starts, so the
    loop times the API calls alone."""
    client = KubeClient.from_kubeconfig(kubeconfig())
    phase = Phase(name)
    tag = uuid.uuid4().hex[:6]
    jobs = [bare_job(template, f"bench-bare-{tag}-{i}", "bare") for i in range(count)]

    async def one(i: int) -> None:
        await client.create(jobs[i], metadata_only=True)  # as the platform creates its Jobs

    try:
        await client.create(bare_job(template, f"bench-bare-{tag}-warm", "bare"), metadata_only=True)  # connections, TLS
        phase.seconds, phase.latencies = await bounded(count, concurrency, one)
        phase.count = count
    finally:
        await client.close()
    return phase


async def platform_phase(servers: list[Server], count: int, concurrency: int,
                         body: dict[str, Any]) -> tuple[Phase, list[str]]:
    """The same HTTP client library as the bare loop's (aiohttp), so the two phases' client CPU,
    which shares the box's cores with the server and the control plane, is alike. With several
    servers (--servers), request i goes to server i mod N, as a Service would spread them."""
    phase = Phase("platform POST /api/v1/runs")
    ids: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120),
                                     headers={"Authorization": f"Bearer {servers[0].token}"}) as api:
        async def one(i: int) -> None:
            async with api.post(servers[i % len(servers)].url + "/api/v1/runs", json=body) as r:
                text = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"POST /runs answered {r.status}: {text[:500]}")
            ids.append(json.loads(text)["id"])

        for server in servers:
            async with api.get(server.url + "/api/v1/health") as r:
                await r.read()
        phase.seconds, phase.latencies = await bounded(count, concurrency, one)
        phase.count = count
    return phase, ids


def box_busy_seconds() -> float:
    """CPU seconds the whole box has spent busy (all cores, Linux /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def settle(ns: str, expected_pods: int, timeout: float) -> float:
    """Wait (bounded) until the previous phase's work is over: the Job controller made a pod for
    every Job so far, every pod has succeeded (kwok), and the box is idle again (the server's
    bookkeeping, the controllers' status writes), so a phase does not pay for the one before it.
    Seconds waited."""
    start = time.time()
    while time.time() - start < timeout:
        phases = kubectl("-n", ns, "get", "pods", "-o", "jsonpath={.items[*].status.phase}", check=False).stdout
        if phases.split().count("Succeeded") >= expected_pods:
            break
        time.sleep(1)
    quiet = 0
    while time.time() - start < timeout and quiet < 2:
        before, t = box_busy_seconds(), time.time()
        time.sleep(1)
        load = (box_busy_seconds() - before) / (time.time() - t) / (os.cpu_count() or 1)
        quiet = quiet + 1 if load < 0.15 else 0
    return time.time() - start


def wait_for_earlier_namespaces(ns: str, timeout: float) -> float:
    """An earlier run's namespace is deleted in the background (its thousand Jobs and pods, at the
    controllers' pace, minutes): wait (bounded) until no namespace is being deleted (a spawn
    benchmark's or a test's, too), so that deletion does not land on this run's phases. A benchmark
    namespace left Active (--keep, or a run killed with SIGKILL) is not being deleted: it is named,
    not waited for. Seconds waited."""
    start = time.time()
    told: set[str] = set()  # what was said already: "kept", "deleting"
    while time.time() - start < timeout:
        listed = kubectl("get", "namespaces", "-o", "json", check=False).stdout
        items = [i for i in (json.loads(listed)["items"] if listed else []) if i["metadata"]["name"] != ns]
        deleting = [i["metadata"]["name"] for i in items if i.get("status", {}).get("phase") == "Terminating"]
        kept = [i["metadata"]["name"] for i in items
                if i["metadata"]["name"].startswith("mlp-bench-") and i["metadata"]["name"] not in deleting]
        if kept and "kept" not in told:
            print(f"  (note: earlier benchmark namespaces are still here: {', '.join(kept)}; "
                  "kubectl delete namespace NAME when done with them)", flush=True)
            told.add("kept")
        if not deleting:
            break
        if "deleting" not in told:
            print(f"  (waiting, at most {timeout:.0f} s, for namespaces being deleted: {', '.join(deleting)})",
                  flush=True)
            told.add("deleting")
        time.sleep(2)
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=250, help="Jobs per phase (250: 500 each way in the default order)")
    parser.add_argument("--order", default="bare,platform,platform,bare",
                        help="the phases in order, each 'bare' or 'platform' (bare,platform,platform,bare)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight, both ways (16)")
    parser.add_argument("--settle", type=float, default=120.0, help="max seconds to wait between phases")
    parser.add_argument("--keep", action="store_true", help="keep the namespace (for a look afterwards)")
    parser.add_argument("--warmup", type=int, default=64, help="untimed Jobs each way before the phases (64)")
    parser.add_argument("--cores", default="split,shared",
                        help="the CPU layouts to measure in turn (split,shared): split, the control plane on half "
                             "the CPUs and this client and the server on the other half, as on a cluster; "
                             "shared, every process on every CPU")
    parser.add_argument("--downstream", default="run", choices=("run", "paused"),
                        help="run (default): the controllers and kwok work during the phases as always; paused: "
                             "they are stopped (SIGSTOP) during each timed phase and resumed after it — a "
                             "diagnostic that leaves only the creates and the platform's own work in the windows")
    parser.add_argument("--servers", type=int, default=1,
                        help="platform servers sharing one database, the requests spread round-robin (1); "
                             "more than 1 needs --db postgresql (docs/replicas.md)")
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"),
                        help="the servers' database: sqlite (a file in the data dir, mlp server's default) or "
                             "postgresql (a fresh database on MLP_TEST_PG_URL's server, as the Helm chart runs)")
    parser.add_argument("--profile-server", metavar="FILE",
                        help="run the server under cProfile (CPU time) and write its stats to FILE (slows it; "
                             "FILE.split and FILE.shared with both layouts)")
    args = parser.parse_args()
    kinds = args.order.split(",")
    if not set(kinds) <= {"bare", "platform"} or {"bare", "platform"} - set(kinds):
        parser.error(f"--order: expected phases 'bare' and 'platform' separated by commas, got {args.order!r}")
    if args.profile_server and not Path(args.profile_server).resolve().parent.is_dir():
        parser.error(f"--profile-server: expected a file in an existing folder, got {args.profile_server!r}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected a whole number of at least 0, got {args.warmup}")
    if args.servers > 1 and args.db != "postgresql":
        parser.error(f"--servers: {args.servers} servers share one database: add --db postgresql")
    if args.db == "postgresql" and not os.environ.get("MLP_TEST_PG_URL"):
        parser.error("--db postgresql: set MLP_TEST_PG_URL (source .testenv/env.sh after make services)")
    if args.servers > 1 and args.profile_server:
        parser.error("--profile-server: profiles one server; use it with --servers 1")
    for flag in ("count", "concurrency", "servers"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: expected a whole number of at least 1, got {getattr(args, flag)}")
    layouts = args.cores.split(",")
    if not set(layouts) <= {"split", "shared"} or len(set(layouts)) != len(layouts):
        parser.error(f"--cores: expected 'split', 'shared' or both separated by a comma, got {args.cores!r}")
    kubeconfig()

    # A TERM (a timeout's) unwinds like Ctrl-C: the control plane is un-pinned, the namespace deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plane = control_plane_pids()
    if args.downstream == "paused" and set(DOWNSTREAM) - plane.keys():
        sys.exit(f"--downstream paused: {', '.join(sorted(set(DOWNSTREAM) - plane.keys()))} does not run on this "
                 "machine (start the control plane with make kube-up), or measure with --downstream run")
    results: list[tuple[str, Result]] = []
    for layout in layouts:
        cores = SplitCores(plane) if layout == "split" else contextlib.nullcontext()
        with cores:
            described = cores.describe() if isinstance(cores, SplitCores) else "cores shared: every process on every CPU"
            if args.downstream == "paused":
                described += "; the controllers and kwok paused during the timed phases"
            profile = args.profile_server
            if profile and len(layouts) > 1:
                profile = f"{profile}.{layout}"  # one file per layout
            results.append((described, run(args, kinds, plane, described, profile)))
        print()
    if len(results) > 1:
        print("each layout:")
        for described, result in results:
            print(f"  {described}:\n    {result.verdict()}")


class Result:
    """One layout's totals, against the goals."""

    def __init__(self, platform: Phase, bare: Phase, all_made: bool) -> None:
        self.platform, self.bare, self.all_made = platform, bare, all_made
        self.ratio = platform.seconds / bare.seconds
        self.rate_met = platform.rate >= GOAL_RATE and all_made
        self.ratio_met = self.ratio <= GOAL_RATIO

    def verdict(self) -> str:
        return (f"platform {self.platform.rate:.1f} Jobs/s (goal ≥ {GOAL_RATE:.0f}: {_met(self.rate_met)}), "
                f"bare {self.bare.rate:.1f} Jobs/s, overhead {self.ratio:.2f}× "
                f"(goal ≤ {GOAL_RATIO}×: {_met(self.ratio_met)})")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run(args: argparse.Namespace, kinds: list[str], plane: dict[str, int], layout: str,
        profile: str | None) -> Result:
    """One measurement (its own namespace and server) in the current CPU layout."""
    ns = f"mlp-bench-{uuid.uuid4().hex[:8]}"
    database = contextlib.ExitStack()  # --db postgresql: a fresh database, dropped after the servers stop
    tmp = Path(tempfile.mkdtemp(prefix="mlp-kube-bench-"))
    servers: list[Server] = []
    print(f"control plane {KubeClient.from_kubeconfig(kubeconfig()).config.server}, namespace {ns}, "
          f"phases {args.order}, {args.count} Jobs each, {args.concurrency} in flight, {os.cpu_count()} CPUs, "
          f"{layout}; {args.servers} server{'s' if args.servers > 1 else ''} on {args.db}")
    try:
        make_namespace(ns)
        db_url = database.enter_context(fresh_postgres_database()) if args.db == "postgresql" else None
        token = "admin-" + os.urandom(12).hex()
        for index in range(args.servers):
            servers.append(Server(tmp, ns, {}, profile=profile, db_url=db_url, token=token, index=index))
        server = servers[0]
        servers_named = "mlp server" if len(servers) == 1 else f"{len(servers)} mlp servers"
        nb = tmp / "bench.ipynb"
        nb.write_text(realistic_notebook())
        server.mlp_json("models", "save", str(nb), "--name", "bench")
        body = {"model": "bench"}
        # One warm-up run: the server's watches, connections and caches are started, and its Job is
        # the template of the bare loop's.
        with httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {server.token}"},
                          timeout=60) as api:
            r = api.post("/runs", json=body)
            r.raise_for_status()
            warm = r.json()
        job = json.loads(kubectl("-n", ns, "get", "job", mf.job_name(warm["id"]), "-o", "json").stdout)
        template = job_template(job)
        pods = 1
        waited = wait_for_earlier_namespaces(ns, 600)
        if waited > 1:
            print(f"  (waited {waited:.0f} s for an earlier run's namespace to be deleted)", flush=True)

        # Alternating order (bare, platform, platform, bare by default): whatever drifts during
        # the run — the namespace filling up, the Job controller's backlog, the box's other load —
        # falls on both ways alike.
        totals = {"bare": Phase("bare loop"), "platform": Phase("platform POST /api/v1/runs")}
        server_cpu = 0.0
        all_ids: list[str] = []
        if args.warmup:
            # Untimed, both ways: the first phase of a run was up to 1.6× slower than later ones of
            # its kind (here, with the cores split), which would fall on whichever kind went first.
            for kind in ("bare", "platform"):
                settle(ns, pods, args.settle)
                if kind == "bare":
                    asyncio.run(bare_phase("warm-up", args.warmup, args.concurrency, template))
                    pods += args.warmup + 1
                else:
                    asyncio.run(platform_phase(servers, args.warmup, args.concurrency, body))
                    pods += args.warmup
            print(f"  (warm-up, untimed: {args.warmup} Jobs each way)", flush=True)
        for kind in kinds:
            waited = settle(ns, pods, args.settle)
            print(f"  (waited {waited:.0f} s for {pods} pods to be made and succeed and the box to go idle)",
                  flush=True)
            client_cpu, box_before = time.process_time(), box_busy_seconds()
            plane_before, requests_before = control_plane_cpu(plane), apiserver_requests()
            if kind == "bare":
                with downstream_paused(plane, args.downstream == "paused"):
                    phase = asyncio.run(bare_phase("bare loop", args.count, args.concurrency, template))
                pods += args.count + 1
            else:
                cpu_before = sum(cpu_seconds(s.proc.pid) for s in servers)
                server.profiling(True)
                with downstream_paused(plane, args.downstream == "paused"):
                    phase, ids = asyncio.run(platform_phase(servers, args.count, args.concurrency, body))
                server.profiling(False)
                used = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu_before
                server_cpu += used
                all_ids += ids
                pods += args.count
            print(phase.line(), flush=True)
            box = box_busy_seconds() - box_before
            plane_used = {k: v - plane_before[k] for k, v in control_plane_cpu(plane).items() if k in plane_before}
            requests = apiserver_requests() - requests_before
            print(f"  (the box was busy {box:.2f} CPU-s of {phase.seconds * (os.cpu_count() or 1):.2f}; "
                  f"this client used {time.process_time() - client_cpu:.2f} s"
                  + (f"; the {servers_named}: {used:.2f} s, {used / args.count * 1000:.1f} ms per run)"
                     if kind == "platform" else ")"), flush=True)
            print("  (control plane, CPU ms per Job: " + ", ".join(
                f"{k} {v / args.count * 1000:.1f}" for k, v in plane_used.items())
                + f"; together {sum(plane_used.values()) / args.count * 1000:.1f})", flush=True)
            print("  (API server requests during the phase: " + ", ".join(
                f"{k} {v}" for k, v in requests.most_common(8)) + ")", flush=True)
            total = totals[kind]
            total.seconds += phase.seconds
            total.count += phase.count
            total.latencies += phase.latencies

        present = set(kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split())
        missing = [i for i in all_ids if f"job.batch/{mf.job_name(i)}" not in present]
        made = len(all_ids) - len(missing)
        bare, plat = totals["bare"], totals["platform"]
        print()
        print("all phases together:")
        print(bare.line())
        print(plat.line())
        print(f"  (the {servers_named} used {server_cpu:.2f} s of CPU: {server_cpu / plat.count * 1000:.1f} ms per run; "
              f"{made}/{len(all_ids)} platform Jobs found in the namespace)")
        result = Result(plat, bare, made == len(all_ids))
        print()
        print(f"platform: {plat.rate:6.1f} Jobs/s       goal ≥ {GOAL_RATE:.0f} Jobs/s   "
              f"{_met(result.rate_met)}")
        print(f"overhead: {result.ratio:6.2f}× the bare loop   goal ≤ {GOAL_RATIO}×          "
              f"{_met(result.ratio_met)}   (bare {bare.rate:.1f} Jobs/s)")
        return result
    finally:
        for server in servers:
            server.stop()
        database.close()
        if args.keep:
            print(f"kept namespace {ns}; server log {tmp / 'server.log'}")
        else:
            drop_namespace(ns)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
