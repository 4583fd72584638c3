"""Helpers for tests that run real ``mhp`` processes against a ``fresh_db_url`` database."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
MHP = str(REPO / ".venv" / "bin" / "mhp")


def mhp_env(db_url: str, master_key_file: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MHP_")}
    env.update({"MHP_ENV": "test", "MHP_DATABASE_URL": db_url, "MHP_MASTER_KEY_FILE": master_key_file,
                "MHP_SECRET_KEY": "t" * 40, "MHP_CONFIG_FILE": "/nonexistent/mhp.toml", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Proc:
    """A background ``mhp`` process whose stderr goes to a file we can poll."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: pathlib.Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen([MHP, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                  cwd=str(REPO), start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, needle: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self.p.poll() is not None:
                return needle in self.text()
            time.sleep(0.1)
        return False

    def stop(self, sig: int = 15, timeout: float = 30.0) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._log.close()
        return self.p.returncode


def run_mhp(args: list[str], db_url: str, master_key_file: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([MHP, *args], env=mhp_env(db_url, master_key_file), capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), check=False)
