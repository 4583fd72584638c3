"""Display names of roles, unit kinds and levels (Chinese first; English through the catalog)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l

from mh_platform.core.types import Level, Role, UnitKind

ROLE_LABELS = {
    Role.CLASS_MONITOR: _l("心理委员"),
    Role.HEAD_TEACHER: _l("班主任"),
    Role.COUNSELLOR: _l("心理教师"),
    Role.SCHOOL_LEADER: _l("分管校长"),
    Role.COUNTY_OFFICER: _l("县区教育局/心理中心"),
    Role.CITY_OFFICER: _l("市教育局/未成年人心理健康辅导站"),
    Role.CLINICIAN: _l("精神卫生机构医生"),
    Role.SYSADMIN: _l("系统管理员"),
}

UNIT_KIND_LABELS = {
    UnitKind.CITY: _l("市"),
    UnitKind.COUNTY: _l("县区"),
    UnitKind.SCHOOL: _l("学校"),
    UnitKind.GRADE: _l("年级"),
    UnitKind.CLASS: _l("班级"),
}

# The default of Settings.help_counselling_room (config.py), listed so that the catalog translates it
# while a deployment keeps it; the templates pass the setting through gettext (a room name a
# deployment sets is shown as set).
DEFAULT_COUNSELLING_ROOM = _l("学校心理辅导室")

LEVEL_LABELS = {
    Level.RED: _l("红色（I级）"),
    Level.ORANGE: _l("橙色（II级）"),
    Level.YELLOW: _l("黄色（III级）"),
}


def role_label(role: Role | str | None) -> str:
    if role is None:
        return ""
    try:
        return str(ROLE_LABELS[Role(role)])
    except ValueError:
        return str(role)


def unit_kind_label(kind: UnitKind | str | None) -> str:
    if kind is None:
        return ""
    try:
        return str(UNIT_KIND_LABELS[UnitKind(kind)])
    except ValueError:
        return str(kind)


LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # display time zone of the deployment (China Standard Time)


def local_dt(value: str | datetime | None) -> str:
    """ISO UTC (or an aware datetime) → local time for display, "—" for none."""
    if not value:
        return "—"
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
