"""The fleet (issue 20): the launch files the engines run, exported by an
installed pyharness, and run for real where the engine is here: the
Ansible role with ansible-core against two "boxes" on this machine (the
local connection, each its own identity) and one unreachable host, into a
real PostgreSQL server, merged on the controller."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from _support import pg_database
from pyharness.fleet.export import ENGINES, export

BIN = os.path.dirname(sys.executable)


def test_every_engine_exports_into_a_new_directory_and_never_over_files(tmp_path):
    for engine in ENGINES:
        files, launch = export(engine, str(tmp_path / engine))
        assert files and launch
    from pyharness.errors import UsageError
    with pytest.raises(UsageError, match="not empty"):
        export("ansible", str(tmp_path / "ansible"))
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(UsageError, match="not a directory"):
        export("slurm", str(tmp_path / "link"))


def test_the_kubernetes_manifests_validate_against_the_kubernetes_schemas(tmp_path):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    import yaml
    export("kubernetes", str(tmp_path / "k"))
    docs = []
    for f in sorted(glob.glob(str(tmp_path / "k" / "*.yaml"))):
        docs += [d for d in yaml.safe_load_all(open(f)) if d]
    assert {d["kind"] for d in docs} == {"Namespace", "DaemonSet"}
    version = kv.utils.latest_version()
    for d in docs:
        kv.validate(d, version, strict=True)
    # the unprivileged one is unprivileged; the kernel one says why it is not
    ds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "DaemonSet"}
    assert not ds["pyharness"]["spec"]["template"]["spec"]["containers"][0].get("securityContext")
    assert ds["pyharness-kernel"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"]
    for d in ds.values():
        assert d["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


@pytest.fixture(scope="module")
def fleet_store(postgres_server):
    """One PostgreSQL store for the whole fleet: every engine's boxes meet there."""
    return pg_database(postgres_server, "fleet")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel of this checkout, as the controller would build it."""
    d = tmp_path_factory.mktemp("wheel")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", root, "-w", str(d)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        pytest.fail("could not build the wheel: " + r.stderr[-800:])
    return glob.glob(str(d / "*.whl"))[0]


def test_the_ansible_role_runs_two_boxes_into_one_store_and_one_merge(tmp_path, wheel, fleet_store):
    playbook = shutil.which("ansible-playbook", path=BIN) or shutil.which("ansible-playbook")
    if not playbook:
        pytest.skip("ansible-core is not installed (pip install '.[test]')")
    store = fleet_store
    fleet = tmp_path / "fleet"
    export("ansible", str(fleet), wheel=wheel)
    work = tmp_path / "work"
    inv = fleet / "inventory.ini"
    common = (f"ansible_connection=local ansible_python_interpreter={sys.executable} "
              f"pyharness_wheel={fleet / os.path.basename(wheel)} pyharness_budget=5s "
              f"pyharness_workdir={work} pyharness_poll=2 pyharness_timeout=600")
    inv.write_text(
        "[burnin]\n"
        f"box-a pyharness_hostname=fleet-box-a pyharness_venv={tmp_path / 'venv-a'} {common}\n"
        f"box-b pyharness_hostname=fleet-box-b pyharness_venv={tmp_path / 'venv-b'} {common}\n"
        # a host whose install fails (no such wheel), and one that never
        # answers: rows of the merge, not gaps
        f"box-broken pyharness_hostname=fleet-box-broken pyharness_venv={tmp_path / 'venv-c'} {common} "
        f"pyharness_wheel={tmp_path / 'no-such.whl'}\n"
        "box-gone ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody "
        "ansible_ssh_common_args='-o ConnectTimeout=3 -o BatchMode=yes'\n")
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    env.pop("PYHARNESS_HOSTNAME", None)
    r = subprocess.run([playbook, "-i", str(inv), "site.yml", "-f", "1",       # one campaign at a time
                        "-e", f"pyharness_store={store}",
                        "-e", f"pyharness_controller_bin={os.path.join(BIN, 'pyharness')}"],
                       cwd=fleet, capture_output=True, text=True, timeout=1500, env=env)
    out = r.stdout + r.stderr
    # an unreachable host fails the play: its exit status says not every host passed
    assert r.returncode != 0, out
    assert "box-gone" in out and "UNREACHABLE" in out, out[-3000:]
    assert (fleet / "results" / "merge.json").exists(), out[-4000:]
    merged = json.loads((fleet / "results" / "merge.json").read_text())
    boxes = {b for row in merged["rows"] for b in row["boxes"]}
    assert {"fleet-box-a", "fleet-box-b"} <= boxes, merged
    assert {m["host"]: m["result"] for m in merged["missing"]} == {
        "box-gone": "no result: unreachable", "fleet-box-broken": "no result: install failed"}
    for h in ("fleet-box-a", "fleet-box-b"):
        st = json.loads((fleet / "results" / h / "fleet-status.json").read_text())
        assert st["host"] == h and st["status"] in ("ok", "exit 1"), st
    # the store is the meeting point: both boxes, their own identities
    m = subprocess.run([os.path.join(BIN, "pyharness"), "merge", "--store", store, "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert m.returncode in (0, 1), m.stderr
    doc = json.loads(m.stdout)
    assert {"fleet-box-a", "fleet-box-b"} <= {b for row in doc["rows"] for b in row["boxes"]}
    assert all(row["steps"] > 0 for row in doc["rows"])


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def slurm(tmp_path):
    """A real single-node Slurm (slurmctld, slurmd, munge from the system
    packages), started by hand in a temporary directory: no systemd here."""
    import socket
    import time
    bins = {b: shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo")}
    if not all(bins.values()):
        pytest.skip("Slurm or munge is not installed (apt-get install slurm-wlm munge): "
                    + ", ".join(b for b, p in bins.items() if not p) + " missing")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    d = tmp_path / "slurm"
    for sub in ("state", "spool", "munge"):
        (d / sub).mkdir(parents=True)
    os.chmod(d / "munge", 0o700)
    key = d / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    msock = d / "munge" / "munge.socket"
    procs = []
    subprocess.run([bins["munged"], "--force", f"--socket={msock}", f"--key-file={key}",
                    f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munge' / 'munged.log'}",
                    f"--seed-file={d / 'munge' / 'munged.seed'}"], check=True, timeout=30)
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=pyharness
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={msock}
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'slurmctld.log'}
SlurmdLogFile={d / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    # no systemd here: slurmd makes its own cgroup (cgroup/v2 needs IgnoreSystemd)
    (d / "cgroup.conf").write_text("CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")
    env = dict(os.environ, SLURM_CONF=str(conf))
    for b in ("slurmctld", "slurmd"):
        procs.append(subprocess.Popen([bins[b], "-D"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(d / f"{b}.stderr", "w")))
    deadline = time.monotonic() + 60
    ok = False
    while time.monotonic() < deadline:
        r = subprocess.run([bins["sinfo"], "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if r.returncode == 0 and "idle" in r.stdout:
            ok = True
            break
        time.sleep(0.5)
    if not ok:
        logs = "".join(open(f).read()[-600:] for f in glob.glob(str(d / "*.log")) + glob.glob(str(d / "*.stderr")))
        for p in procs:
            p.kill()
        _stop_munged(d)
        pytest.fail("the test's Slurm did not come up: " + logs)
    yield env
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    _stop_munged(d)


def _stop_munged(d):
    pid = d / "munge" / "munged.pid"
    if pid.exists():
        try:
            os.kill(int(pid.read_text()), 15)
        except (ProcessLookupError, ValueError):
            pass


def test_the_slurm_job_array_runs_a_task_per_box_then_the_merge(tmp_path, slurm, fleet_store):
    import time
    store = fleet_store
    d = tmp_path / "sl"
    export("slurm", str(d))
    results = tmp_path / "results"
    env = dict(slurm, PYHARNESS=os.path.join(BIN, "pyharness"), PYHARNESS_BUDGET="5s",
               PYHARNESS_STORE=store, PYHARNESS_RESULTS=str(results),
               PYHARNESS_HOSTNAME_PREFIX="slurm-box-")
    env.pop("PYHARNESS_HOSTNAME", None)
    r = subprocess.run(["bash", str(d / "submit.sh"), "2"], cwd=d, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    merge_job = r.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        q = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True)
        if q.returncode == 0 and not q.stdout.strip():
            break
        time.sleep(1)
    else:
        pytest.fail("the job array did not finish")
    s = subprocess.run(["scontrol", "show", "job", merge_job], env=env, capture_output=True, text=True)
    merged = json.loads((results / "merge.json").read_text())
    boxes = {b for row in merged["rows"] for b in row["boxes"]}
    assert boxes == {"slurm-box-0", "slurm-box-1"} and not merged["missing"], merged
    # the merge job's exit status is the fleet's
    want = "ExitCode=0:0" if not any(row["failed_steps"] for row in merged["rows"]) else "ExitCode=1:0"
    assert want in s.stdout, s.stdout
    m = subprocess.run([os.path.join(BIN, "pyharness"), "merge", "--store", store, "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    doc = json.loads(m.stdout)
    assert {"slurm-box-0", "slurm-box-1"} <= {b for row in doc["rows"] for b in row["boxes"]}


def test_the_report_from_the_one_store_shows_every_box(tmp_path, fleet_store):
    """After the engines above: one store, and `pyharness report --store`
    names every box that reached it."""
    from pyharness.history.store import open_store
    hosts = {r["hostname"] for r in open_store(fleet_store, create=False).results()}
    if not hosts & {"fleet-box-a", "slurm-box-0"}:
        pytest.skip("no engine test put boxes in the store (ansible-core and Slurm absent)")
    html = tmp_path / "fleet.html"
    rep = subprocess.run([os.path.join(BIN, "pyharness"), "report", "--store", fleet_store, "--out", str(html)],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    text = html.read_text()
    assert 'id="fleet-table"' in text
    for h in hosts:
        assert h in text, h
    assert {"fleet-box-a", "fleet-box-b"} <= hosts or {"slurm-box-0", "slurm-box-1"} <= hosts
