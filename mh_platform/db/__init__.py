"""Persistence: SQLAlchemy 2.x typed models. Import ``mh_platform.db.models`` to register every table."""
