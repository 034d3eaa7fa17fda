"""Run training subprocesses (tests.train_worker) for the multi-process tests, and always
clean them up."""
import contextlib
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
# Wall-clock bound of a multi-process test (the issue asks for < 3 min on 2 CPU cores);
# MRCNN_MULTIPROCESS_TIMEOUT raises it on a machine shared with other jobs.
TIMEOUT = float(os.environ.get("MRCNN_MULTIPROCESS_TIMEOUT", 170))


def worker_command(out, role, *args):
    """The command line of one tests.train_worker process writing to ``out``."""
    return [sys.executable, "-m", "tests.train_worker", "--role", role, "--out", str(out),
            *[str(a) for a in args]]


class Processes:
    """Start processes with logs in ``folder``; kill every one still running on exit.

    timeout: seconds all of them may take together (default TIMEOUT).
    """

    def __init__(self, folder, timeout=None):
        self.folder = folder
        self.started = []
        self.timeout = TIMEOUT if timeout is None else float(timeout)
        self.deadline = time.monotonic() + self.timeout

    def start(self, name, command, env=None):
        environ = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        environ.pop("TF_CONFIG", None)
        environ.update(env or {})
        log = open(os.path.join(self.folder, f"{name}.log"), "w")
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log,
                                   stderr=subprocess.STDOUT)
        process.log_name, process.log_file = name, log
        self.started.append(process)
        return process

    def remaining(self):
        return max(1.0, self.deadline - time.monotonic())

    def wait(self, process):
        """Wait for ``process`` within the test's deadline; raise with its log tail if it fails."""
        try:
            code = process.wait(timeout=self.remaining())
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{process.log_name} still running after {self.timeout:.0f} s "
                                 f"(MRCNN_MULTIPROCESS_TIMEOUT)\n{self.log_tail(process)}")
        if code != 0:
            raise AssertionError(f"{process.log_name} exited with {code}\n{self.log_tail(process)}")

    def wait_for_file(self, path, process):
        """Wait until ``path`` exists (the process must stay alive meanwhile)."""
        while not os.path.exists(path):
            if process.poll() is not None:
                raise AssertionError(f"{process.log_name} exited with {process.returncode} "
                                     f"before writing {path}\n{self.log_tail(process)}")
            if time.monotonic() > self.deadline:
                raise AssertionError(f"{path} not written within {self.timeout:.0f} s")
            time.sleep(0.2)

    def log_tail(self, process, lines=30):
        process.log_file.flush()
        with open(os.path.join(self.folder, f"{process.log_name}.log")) as f:
            return "".join(f.readlines()[-lines:])

    def close(self):
        for process in self.started:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            process.log_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
