"""Marshmallow schemas of the JSON API (one module per area); the OpenAPI document is built from them.

Add ``mh_platform/web/schemas/<area>.py`` with your request/response schemas and reference the
classes from ``@api_doc`` on the views (see ``mh_platform.web.openapi``).
"""
