"""Schemas of /api/v1/students. A response carries only the fields the caller's role may see
(``services.students_read.FIELDS_BY_ROLE``); every field but ``id`` is therefore optional."""

from __future__ import annotations

from marshmallow import Schema, fields

from mh_platform.web.schemas.common import page_envelope


class StudentSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(allow_none=True, metadata={"description": "monitor, head teacher (own class), counsellor"})
    pseudonym = fields.String(metadata={"description": "counsellor, school leader"})
    sex = fields.String(metadata={"description": "F or M"})
    birth_year = fields.Integer(allow_none=True)
    student_number = fields.String(allow_none=True, metadata={"description": "counsellor only"})
    class_id = fields.UUID()
    class_name = fields.String(allow_none=True)
    grade_level = fields.Integer()
    school_id = fields.UUID()
    school_name = fields.String(allow_none=True)


StudentPageSchema = page_envelope(StudentSchema, "StudentPageSchema")
