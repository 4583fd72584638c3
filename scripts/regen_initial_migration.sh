#!/usr/bin/env bash
# Until the first release, the schema is one initial migration regenerated from the models.
# After the first release: never edit a released migration; add a new one with
#   .venv/bin/alembic revision --autogenerate -m "..."
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/*_0001_*.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from mh_platform.db.migrate import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/gen.sqlite3")
command.revision(cfg, message="foundation schema", autogenerate=True, rev_id="0001")
PY
rm -rf "$tmp"
ls migrations/versions/
