"""WSGI entry for production: ``gunicorn -w 4 -k gthread --threads 4 mh_platform.web.wsgi:app``.

Settings come from the environment (``MHP_*``) and the instance file; the app refuses to start with
bad configuration or a wrong master key. Run the scheduler as its own process (``mhp scheduler run``).
"""

from __future__ import annotations

from mh_platform.web.app import create_app

app = create_app()
