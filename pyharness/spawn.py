"""Starting our own helper processes (python -m pyharness.<module>) from the
package this process imported: run from a source checkout, `-m` would
otherwise find the uncompiled tree in the current directory first."""
import os


def worker_env():
    """Popen keywords (cwd, env) for a `sys.executable -m pyharness...` child."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return {"cwd": root, "env": env}
