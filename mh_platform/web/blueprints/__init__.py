"""Blueprints, one module per area; each is listed in ``mh_platform.web.app.BLUEPRINTS``."""
