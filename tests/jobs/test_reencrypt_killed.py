"""Rotation under load: `mhp keys reencrypt` killed three times midway while a reader reads.

0 failed reads; every value on an active key at the end; a second full run re-encrypts 0 rows.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import sqlalchemy as sa

from mh_platform.db.models import DataKey, Student
from mh_platform.services import key_ops
from mh_platform.services.context import SYSTEM
from tests.integration.test_key_ops import read_name, seed_students


def _env(ctx):
    env = dict(os.environ, MHP_DATABASE_URL=ctx.settings.database_url, MHP_ENV="test",
               MHP_MASTER_KEY_FILE=ctx.settings.master_key_file)
    env.pop("MHP_MASTER_KEY", None)
    return env


def test_reencrypt_killed_three_times_under_reads(fresh_ctx):
    ctx = fresh_ctx
    names = seed_students(ctx, 120)
    key_ops.rotate_data_keys(ctx, SYSTEM)
    failures, reads = [], [0]
    stop = threading.Event()

    def reader():
        ids = list(names)
        i = 0
        while not stop.is_set():
            sid = ids[i % len(ids)]
            try:
                if read_name(ctx, sid) != names[sid]:
                    failures.append(("wrong", sid))
            except Exception as exc:  # noqa: BLE001 - any failure counts
                failures.append((type(exc).__name__, sid))
            reads[0] += 1
            i += 1

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    cmd = [sys.executable, "-m", "mh_platform.cli", "keys", "reencrypt", "--batch", "3", "--pause-ms", "40"]
    kills = 0
    for _ in range(3):
        p = subprocess.Popen(cmd, env=_env(ctx), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.5)  # start-up is ~1-2 s; then a few batches
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait(timeout=30)
    final = subprocess.run(cmd[:-1] + ["0"], env=_env(ctx), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    again = subprocess.run(cmd[:-1] + ["0"], env=_env(ctx), capture_output=True, text=True, timeout=300)
    stop.set()
    t.join(timeout=10)
    assert kills == 3, "the runs finished before they could be killed: make the data set larger"
    assert failures == [] and reads[0] > 100
    assert json.loads(again.stdout)["reencrypted"] == 0
    with ctx.uow() as uow:
        active = set(uow.session.scalars(sa.select(DataKey.id).where(DataKey.active.is_(True))))
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Student)) == 120
    assert set(key_ops.keys_in_use(ctx)) <= active
