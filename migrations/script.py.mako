"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Rules: this migration must work with the previous release's code still serving (deploys migrate
first); it goes both ways (tests run upgrade -> downgrade -> upgrade); a NOT NULL column on an
existing table is added in two steps (server default, then drop the default).
"""
from alembic import op
import sqlalchemy as sa
import mh_platform.db.base
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
