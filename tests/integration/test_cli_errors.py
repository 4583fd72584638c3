"""Bad CLI input gives one clear line on stderr and a non-zero exit, never a traceback."""

import os
import subprocess
import sys

import pytest


def run(args, db_url, key_file, **env_extra):
    env = dict(os.environ, MHP_DATABASE_URL=db_url, MHP_MASTER_KEY_FILE=key_file, MHP_ENV="test", **env_extra)
    env.pop("MHP_MASTER_KEY", None)
    return subprocess.run([sys.executable, "-m", "mh_platform.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("args", "needle"), [
    (["users", "create", "--username", "x1x", "--role", "wizard", "--unit", "nope"], "no org unit"),
    (["users", "create", "--username", "abc", "--role", "wizard"], "unknown role"),
    (["demo", "seed", "--students", "5"], "5 is not in the range"),
    (["demo", "seed", "--password", "short"], "at least 10"),
    (["keys", "shred-request", "not-a-uuid", "--reason", "guardian_request", "--user", "admin"], "not a student id"),
    (["keys", "shred-approve", "not-a-uuid", "--user", "admin", "--yes"], "not an erasure request id"),
    (["keys", "shred", "00000000-0000-0000-0000-000000000000", "--yes"], "No such command"),
    (["users", "disable", "nobody"], "no user"),
    (["nosuchcommand"], "No such command"),
])
def test_bad_input_is_one_clear_line(fresh_db_url, master_key_file, args, needle):
    res = run(args, fresh_db_url, master_key_file, MHP_NEW_PASSWORD="correct horse 1")
    assert res.returncode != 0
    assert needle in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_missing_master_key_refuses_to_start(fresh_db_url, tmp_path):
    res = run(["audit", "verify"], fresh_db_url, str(tmp_path / "absent.key"))
    assert res.returncode != 0 and "master key" in res.stderr and "Traceback" not in res.stderr


def test_world_readable_master_key_refused(fresh_db_url, master_key_file, tmp_path):
    import shutil

    p = tmp_path / "open.key"
    shutil.copy(master_key_file, p)
    os.chmod(p, 0o644)
    res = run(["audit", "verify"], fresh_db_url, str(p))
    assert res.returncode != 0 and "master key" in res.stderr


def test_wrong_master_key_refused(fresh_db_url, master_key_file, tmp_path):
    from mh_platform.services.keys import write_new_master_key_file

    assert run(["audit", "verify"], fresh_db_url, master_key_file).returncode == 0  # records the KCV
    other = tmp_path / "other.key"
    write_new_master_key_file(str(other))
    res = run(["audit", "verify"], fresh_db_url, str(other))
    assert res.returncode != 0 and "master key" in res.stderr


def test_demo_accounts_json(fresh_db_url, master_key_file):
    import json

    assert run(["demo", "seed", "--students", "120"], fresh_db_url, master_key_file).returncode == 0
    res = run(["demo", "accounts", "--json"], fresh_db_url, master_key_file)
    rows = json.loads(res.stdout)
    roles = {r["role"] for r in rows}
    assert roles == {"sysadmin", "city_officer", "county_officer", "counsellor", "school_leader", "head_teacher",
                     "class_monitor", "clinician"}
    assert all(set(r) == {"username", "role", "unit"} for r in rows)
