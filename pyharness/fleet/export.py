"""`pyharness fleet export ENGINE DIR`: the launch files for the engines
fleets already run, kept in one place (pyharness/fleet/engines/) and
written out by an installed pyharness: an Ansible role and playbook, a
Slurm job array and its merge, a Kubernetes DaemonSet and its image
recipe.  pyharness stays a program one box runs; the engine schedules."""
import os
import shutil

from ..errors import UsageError

ENGINES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engines")
ENGINES = {
    "ansible": "ansible-playbook -i inventory.ini site.yml -e pyharness_store=postgresql://USER@HOST/DB",
    "slurm": "PYHARNESS_STORE=postgresql://USER@HOST/DB PYHARNESS_BUDGET=1h ./submit.sh",
    "kubernetes": "podman build -t pyharness . && kubectl apply -f pyharness.yaml",
}


def export(engine, dest, wheel=None):
    """Copy the engine's files to dest (which must not exist, or be an empty
    directory); returns the files written and the command that launches."""
    if engine not in ENGINES:
        raise UsageError(f"no engine {engine!r} (known: {', '.join(ENGINES)})")
    if os.path.islink(dest) or (os.path.exists(dest) and not os.path.isdir(dest)):
        raise UsageError(f"{dest}: exists and is not a directory")
    if os.path.isdir(dest) and os.listdir(dest):
        raise UsageError(f"{dest}: not empty (the export never replaces files)")
    if wheel and not (os.path.isfile(wheel) and wheel.endswith(".whl")):
        raise UsageError(f"--wheel {wheel}: not a wheel file")
    shutil.copytree(os.path.join(ENGINES_DIR, engine), dest, dirs_exist_ok=True)
    if wheel:
        shutil.copy2(wheel, dest)
    files = sorted(os.path.relpath(os.path.join(r, f), dest) for r, _, fs in os.walk(dest) for f in fs)
    return files, ENGINES[engine]
