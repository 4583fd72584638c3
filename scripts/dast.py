"""T14 injection DAST: sqlmap and wapiti against the real app, as each role, on SQLite or PostgreSQL.

    .venv/bin/python scripts/dast.py scan --db sqlite --out build/dast/sqlite
    .venv/bin/python scripts/dast.py scan --db postgresql://postgres@127.0.0.1:5432/postgres --out build/dast/pg
    make dast            # builds .venv-dast, runs the planted-defect controls, then both scans

``scan`` builds a throwaway database (a SQLite file, or a scratch PostgreSQL database created next to
the one named by ``--db`` and dropped afterwards), migrates it, seeds the cases world of the T14
schemathesis test (``tests/integration/cases_world.py``: a city, counties, schools, classes, students,
one user of each of the eight roles, a raised flag, an assessed flag, a case, a submitted referral,
two institutions) and serves the real app with Werkzeug's threaded server on 127.0.0.1 (a free port).
Then, for each role:

* **credentials**: an API bearer token (``auth.mint_api_token``; a token of its own for the operation
  that revokes it) and a page session cookie from a real login through ``/login`` (CSRF token included);
* **sqlmap** (``--level 3 --risk 2 --batch``, explicit ``--timeout``) once per API operation of the app's
  own OpenAPI document (``/api/v1/openapi.json``) and once per GET page that reads query parameters
  (found in the views' source: ``request.args``): path and query values carry the injection marker
  (``*``), JSON-body fields are tested by name; every value is a real object id or a valid example,
  so the requests reach the queries and not only the validation;
* **wapiti** (modules ``sql,xss,exec,file,crlf,redirect,csrf``, scope: the local server) over the API
  from the same OpenAPI document with the bearer token, and over the pages by crawling from ``/``
  with the session cookie.

An anonymous pass covers the public operations (``POST /api/v1/auth/token``, the login form and the
student code pages). A WSGI wrapper counts the server's 5xx answers per pass. The summary
(``summary.json`` and ``summary.txt`` in ``--out``) gives per role: parameters tested, injectable
parameters, wapiti findings by severity, 5xx answers, tool errors and elapsed time. The exit status
is 1 on any injectable parameter, any wapiti finding of medium or higher, any 5xx or any tool error.

The tools come from ``.venv-dast`` (``make dast-deps``; ``MHP_DAST_VENV`` to override); a missing
tool is an error, never a pass. Every tool run has a wall-clock limit. Knobs (environment):
``MHP_DAST_JOBS`` sqlmap processes at once (2), ``MHP_DAST_SQLMAP_LIMIT`` seconds per sqlmap run (1200),
``MHP_DAST_WAPITI_LIMIT`` wapiti ``--max-scan-time`` (1200), ``MHP_DAST_WAPITI_ATTACK_LIMIT`` wapiti
``--max-attack-time`` per module (120; a module stopped by it is listed as time-capped in the summary),
``MHP_DAST_TECHNIQUES`` sqlmap ``--technique`` (BEUSTQ, all six). ``--wapiti-pages ROLES`` limits the
page crawl to some roles (the API scan always runs for every role).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
DAST_BIN = Path(os.environ.get("MHP_DAST_VENV", str(REPO / ".venv-dast"))) / "bin"

WAPITI_MODULES = "sql,xss,exec,file,crlf,redirect,csrf"
WAPITI_LEVELS = {0: "info", 1: "low", 2: "medium", 3: "high", 4: "critical"}

# sqlmap: level 3 / risk 2 as the plan asks. The techniques and the DBMS are the run's choice
# (docs/security_tests.md, T14, says why): --dbms is the database the app really runs on.
SQLMAP_TECHNIQUES = os.environ.get("MHP_DAST_TECHNIQUES", "BEUSTQ")  # sqlmap's default: all six
SQLMAP_HTTP_TIMEOUT = 10  # seconds per request (sqlmap --timeout)
SQLMAP_JOBS = int(os.environ.get("MHP_DAST_JOBS", "2"))  # sqlmap processes at once (one per operation)
SQLMAP_RUN_LIMIT = int(os.environ.get("MHP_DAST_SQLMAP_LIMIT", "1200"))  # wall clock per sqlmap run
WAPITI_SCAN_LIMIT = int(os.environ.get("MHP_DAST_WAPITI_LIMIT", "1200"))  # wapiti --max-scan-time
WAPITI_ATTACK_LIMIT = int(os.environ.get("MHP_DAST_WAPITI_ATTACK_LIMIT", "120"))  # per module

#: wapiti findings judged false positives, each with its reason: (category, method, path) → why.
#: Listed in the summary as waived, never counted as clean silently.
WAIVED_WAPITI: dict[tuple[str, str, str], str] = {
    ("Cross Site Request Forgery", "POST", "/s/lang"):
        "wapiti's csrf module replays the crawled form and a copy with the token replaced, and calls the token "
        "unchecked when both answers match. In the student area a refused code (wapiti's attacks on the code "
        "form send many) and the end of a visit empty the session, CSRF token included (shared computer-room "
        "PCs), so by the time wapiti replays the language form its token no longer matches the session: both requests are refused with the same 400 csrf_failed page. The token is "
        "checked (web.app._guard: csrf.protect() on every unsafe method; tests/web/test_security.py::"
        "test_student_language_switch_checks_its_csrf_token).",
    ("Cross Site Request Forgery", "POST", "/lang"):
        "the same replay in the anonymous crawl: the login page's language form and the student pages share one "
        "session cookie, and the crawl's refused codes at /s/ empty it, so the replayed token is stale and both "
        "requests get the same 400 (checked in the reports: the form's token is not the session's). "
        "tests/web/test_security.py::test_student_language_switch_checks_its_csrf_token covers /lang too.",
}

CLEAN_SQLMAP = ("all tested parameters do not appear to be injectable",)
# CRITICAL lines that are sqlmap's notes, not errors: an operation that creates something answers with
# new ids each time, and sqlmap retries with its comparison adjusted
NOT_ERRORS = (*CLEAN_SQLMAP, "appears to be heavily dynamic")


# ---------------------------------------------------------------------------------------------- targets

@dataclasses.dataclass
class Target:
    """One request for sqlmap: every parameter in ``params`` carries an injection marker (``*``)."""

    label: str  # "GET /api/v1/students/{student_id}"
    method: str
    path: str  # path with real values (markers added when the request file is written)
    path_params: list[str]  # names of path segments (values in path_values) to mark
    path_values: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any] | None
    headers: dict[str, str]

    @property
    def params(self) -> list[str]:
        return ([f"path:{n}" for n in self.path_params] + [f"query:{n}" for n in self.query]
                + [f"body:{n}" for n in (self.body or {})])

    def request_text(self, host: str) -> str:
        """The raw request for ``sqlmap -r``: path and query values carry the marker ``*``; the JSON
        body is left unmarked, as sqlmap tests each of its fields by name (and, at level 3, the
        User-Agent and Referer headers; at level 2 and above the cookie)."""
        path = self.path
        for name in self.path_params:
            value = self.path_values[name]
            path = path.replace(quote(value, safe=""), quote(value, safe="") + "*", 1)
        if self.query:
            path += "?" + "&".join(f"{quote(k, safe='')}={quote(str(v), safe='')}*" for k, v in self.query.items())
        lines = [f"{self.method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/json, text/html",
                 *[f"{k}: {v}" for k, v in self.headers.items()]]
        body = ""
        if self.body is not None:
            body = json.dumps(self.body, ensure_ascii=False)
            lines += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}"]
        return "\r\n".join(lines) + "\r\n\r\n" + body


def _resolve(spec: dict[str, Any], schema: Any) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
    return schema if isinstance(schema, dict) else {}


def _example(spec: dict[str, Any], name: str, schema: dict[str, Any], ids: dict[str, list[str]]) -> Any:
    """A valid value for a parameter or field: a real id when the name is an id the world has."""
    schema = _resolve(spec, schema)
    if name in ids:
        return ids[name][0]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    if typ == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if typ == "number":
        return max(1, schema.get("minimum", 1))
    if typ == "boolean":
        return True
    if typ == "array":
        return [_example(spec, name, schema.get("items", {}), ids)]
    if typ == "object":
        return {k: _example(spec, k, s, ids) for k, s in schema.get("properties", {}).items()
                if k in schema.get("required", [])}
    fmt = schema.get("format")
    if fmt == "uuid":
        return str(uuid.uuid4())
    if fmt == "date":
        return "2026-10-01"
    if fmt == "date-time":
        return "2026-10-01T08:00:00+08:00"
    if fmt == "email":
        return "dast@example.test"
    return "dast" + "x" * max(0, int(schema.get("minLength", 0)) - 4)


def api_targets(spec: dict[str, Any], ids: dict[str, list[str]], headers: dict[str, str], *,
                public: bool, fresh_headers: Callable[[], dict[str, str]] | None = None) -> list[Target]:
    """One target per operation of the document: the protected ones (``public=False``) or the public."""
    out = []
    for path, ops in sorted(spec.get("paths", {}).items()):
        for method, op in sorted(ops.items()):
            is_public = op.get("security") == []
            if is_public != public or path.endswith("/openapi.json"):
                continue
            path_values: dict[str, str] = {}
            path_params: list[str] = []
            query: dict[str, str] = {}
            for p in op.get("parameters", []):
                p = _resolve(spec, p)
                value = _example(spec, p["name"], p.get("schema", {}), ids)
                if p["in"] == "path":
                    path_params.append(p["name"])
                    path_values[p["name"]] = str(value)
                elif p["in"] == "query":
                    query[p["name"]] = str(value).lower() if isinstance(value, bool) else str(value)
            body = None
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None:
                schema = _resolve(spec, content.get("schema", {}))
                body = {k: _example(spec, k, s, ids) for k, s in schema.get("properties", {}).items()}
            real = path
            for name, value in path_values.items():
                real = real.replace("{" + name + "}", quote(value, safe=""))
            hdrs = dict(headers)
            if fresh_headers is not None and "revoke" in path:  # revoking the run's token would end the run
                hdrs = fresh_headers()
            out.append(Target(f"{method.upper()} {path}", method.upper(), real, path_params, path_values,
                              query, body, hdrs))
    return out


def page_query_params(app: Any) -> dict[str, list[str]]:
    """endpoint → the query parameters its view reads (``request.args.get("x")``, ``request.args["x"]``,
    and the flag queue's ``<list>_page`` arguments), for the GET page routes."""
    out: dict[str, list[str]] = {}
    for endpoint, view in app.view_functions.items():
        if endpoint.startswith("api_v1") or endpoint == "static":
            continue
        try:
            src = textwrap.dedent(inspect.getsource(view))
        except (OSError, TypeError):
            continue
        names: list[str] = []
        for node in ast.walk(ast.parse(src)):
            attr = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if isinstance(node, ast.Subscript):
                attr = node.value
            if not (isinstance(attr, ast.Attribute) and attr.attr == "args"
                    and isinstance(attr.value, ast.Name) and attr.value.id == "request"):
                continue
            arg = node.args[0] if isinstance(node, ast.Call) and node.args else getattr(node, "slice", None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value not in names:
                names.append(arg.value)
        paged = sys.modules[view.__module__].__dict__.get("PAGED_LISTS") if "PAGED_LISTS" in src else None
        names += [f"{n}_page" for n in paged or ()]
        if names:
            out[endpoint] = names
    return out


def page_targets(app: Any, ids: dict[str, list[str]], cookie: str | None) -> list[Target]:
    """The GET pages that read query parameters: with a staff session cookie, those that need one;
    without (``cookie=None``), the public ones (the login page)."""
    params = page_query_params(app)
    out = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if "GET" not in rule.methods or rule.endpoint not in params:
            continue
        public = bool(getattr(app.view_functions[rule.endpoint], "_mhp_public", False))
        if public != (cookie is None):
            continue
        values = {a: (ids.get(a) or ids.get(ALIASES.get(a, ""), [str(uuid.uuid4())]))[0] for a in rule.arguments}
        path = rule.build(values, append_unknown=False)[1]
        query = {n: "1" for n in params[rule.endpoint]}
        out.append(Target(f"GET {rule.rule}", "GET", path, sorted(rule.arguments), values, query, None,
                          {"Cookie": cookie} if cookie else {}))
    return out


ALIASES = {"cid": "campaign_id"}


# ---------------------------------------------------------------------------------------------- tools

def tool(name: str) -> str:
    path = DAST_BIN / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: build the DAST tools venv with `make dast-deps`")
    return str(path)


@dataclasses.dataclass
class SqlmapResult:
    label: str
    params: list[str]
    tested: list[str]
    injectable: list[str]
    errors: list[str]
    seconds: float


HEADERS_TESTED = {"User-Agent", "Referer", "Host", "Cookie"}


def run_sqlmap(target: Target, host: str, workdir: Path, dbms: str | None) -> SqlmapResult:
    """sqlmap on every parameter of the target: the marked path and query values and the JSON body's
    fields (tested by name), plus the headers level 3 adds. One run per target."""
    t0 = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    req = workdir / "request.txt"
    req.write_text(target.request_text(host), encoding="utf-8")
    cmd = [tool("sqlmap"), "-r", str(req), "--batch", "--level=3", "--risk=2", f"--technique={SQLMAP_TECHNIQUES}",
           f"--timeout={SQLMAP_HTTP_TIMEOUT}", "--retries=1", "--threads=1", "--flush-session", "--skip-waf",
           "--disable-coloring", "--ignore-code=400,401,403,404,405,409,410,422,429", f"--output-dir={workdir / 'out'}"]
    if dbms:
        cmd.append(f"--dbms={dbms}")
    out, errors = run_checked("sqlmap", cmd, SQLMAP_RUN_LIMIT, workdir)
    (workdir / "sqlmap.log").write_text(out, encoding="utf-8")
    tested = sorted(set(re.findall(r"parameter '([^']+)' (?:is dynamic|does not appear to be dynamic|might not be"
                                   r" injectable|might be injectable|appears to be|is '|does not seem to be"
                                   r" injectable)", out)))
    injectable = sorted(set(re.findall(r"^Parameter: (.+)$", out, flags=re.M)))
    errors += [line.strip() for line in out.splitlines()
               if "[CRITICAL]" in line and not any(c in line for c in NOT_ERRORS)]
    if not injectable and not errors and not any(c in out for c in CLEAN_SQLMAP):
        errors.append("sqlmap ended without its verdict line")
    params = [t for t in tested if t not in HEADERS_TESTED]
    if not injectable and not errors and len(params) < len(target.params):
        errors.append(f"sqlmap tested {len(params)} of {len(target.params)} parameters: {tested}")
    return SqlmapResult(target.label, target.params, tested, injectable, errors, round(time.monotonic() - t0, 1))


_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()


def run_tool(cmd: list[str], limit: float, cwd: Path) -> tuple[int | None, str]:
    """Run a tool with a wall-clock limit; (exit code or None when killed at the limit, its output).
    The children are killed too when this process is told to stop (``stop_tools``)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: S603
                            text=True, cwd=cwd, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        out, _ = proc.communicate(timeout=limit)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def run_checked(name: str, cmd: list[str], limit: float, cwd: Path, *, tail: int = 0) -> tuple[str, list[str]]:
    """``run_tool``, with a kill at the limit or a non-zero exit turned into an error line (the last
    ``tail`` characters of the output appended to an exit error); (output, errors)."""
    code, out = run_tool(cmd, limit, cwd)
    if code is None:
        return out, [f"{name} still running after {limit} s (killed)"]
    if code != 0:
        return out, [f"{name} exit {code}" + (f": {out[-tail:]}" if tail else "")]
    return out, []


def stop_tools(signum: int, frame: Any) -> None:
    with _RUNNING_LOCK:
        for proc in _RUNNING:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit(128 + signum)


@dataclasses.dataclass
class WapitiResult:
    label: str
    findings: dict[str, int]  # severity → count
    details: list[str]  # medium or higher
    anomalies: int
    crawled: int
    truncated: list[str]  # modules stopped by --max-attack-time
    waived: list[str]  # findings in WAIVED_WAPITI (not counted)
    errors: list[str]
    seconds: float


def run_wapiti(label: str, base: str, workdir: Path, *, headers: dict[str, str] | None = None,
               cookie: str | None = None, swagger: str | None = None, excludes: tuple[str, ...] = (),
               start: str | None = None) -> WapitiResult:
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    report = workdir / "wapiti.json"
    cmd = [tool("wapiti"), "-u", base, "--scope", "folder", "-m", WAPITI_MODULES, "-f", "json", "-o", str(report),
           "--flush-session", "--store-session", str(workdir / "session"), "--store-config", str(workdir / "config"),
           "--no-bugreport", "--max-scan-time", str(WAPITI_SCAN_LIMIT), "--max-attack-time", str(WAPITI_ATTACK_LIMIT),
           "-t", str(SQLMAP_HTTP_TIMEOUT), "--tasks", "4", "-d", "4", "-v", "1", "--log", str(workdir / "wapiti.log")]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if cookie:
        cmd += ["-C", cookie]
    if swagger:
        cmd += ["--swagger", swagger]
    if start:
        cmd += ["-s", start]
    for x in excludes:
        cmd += ["-x", x]
    t0 = time.monotonic()
    out, errors = run_checked("wapiti", cmd, WAPITI_SCAN_LIMIT + 120, workdir, tail=500)
    (workdir / "wapiti.out").write_text(out, encoding="utf-8")
    if "Traceback" in out:
        errors.append("wapiti raised: " + out[out.index("Traceback"):][:800])
    logtext = out + ((workdir / "wapiti.log").read_text(encoding="utf-8", errors="replace")
                     if (workdir / "wapiti.log").exists() else "")
    # time limits reached: not an error, but the scan did not finish; reported with the results
    truncated = sorted(set(re.findall(r"Max attack time was reached for module (\w+)", logtext)))
    if "Max scan time was reached" in logtext:
        truncated.append("(whole scan: --max-scan-time)")
    findings = {name: 0 for name in WAPITI_LEVELS.values()}
    details: list[str] = []
    waived: list[str] = []
    anomalies = crawled = 0
    if report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        for category, items in data.get("vulnerabilities", {}).items():
            for item in items:
                sev = WAPITI_LEVELS.get(int(item.get("level", 0)), str(item.get("level")))
                findings[sev] = findings.get(sev, 0) + 1
                key = (category, str(item.get("method")), str(item.get("path")))
                if key in WAIVED_WAPITI:
                    waived.append(f"{category}: {key[1]} {key[2]} (waived: see WAIVED_WAPITI)")
                    continue
                if int(item.get("level", 0)) >= 2:
                    details.append(f"{sev} {category}: {item.get('method')} {item.get('path')} "
                                   f"[{item.get('parameter')}] {item.get('info')}")
        for category, items in data.get("anomalies", {}).items():
            anomalies += len(items)
            details += [f"anomaly {category}: {i.get('method')} {i.get('path')} [{i.get('parameter')}]" for i in items]
        crawled = int(data.get("infos", {}).get("crawled_pages_nbr") or 0)
    elif not errors:
        errors.append("wapiti wrote no report")
    return WapitiResult(label, findings, details, anomalies, crawled, truncated, waived, errors,
                        round(time.monotonic() - t0, 1))


# ---------------------------------------------------------------------------------------------- server

class StatusCounter:
    """WSGI wrapper: counts the app's 5xx answers (per pass: ``reset`` between them)."""

    def __init__(self, app: Any) -> None:
        self.app, self.server_errors, self.requests = app, [], 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            with self.lock:
                self.requests += 1
                if status.startswith("5"):
                    self.server_errors.append(f"{status} {environ.get('REQUEST_METHOD')} "
                                              f"{environ.get('PATH_INFO')}?{environ.get('QUERY_STRING', '')[:200]}")
            return start_response(status, headers, exc_info)
        return self.app(environ, start)

    def reset(self) -> tuple[int, list[str]]:
        with self.lock:
            out = (self.requests, self.server_errors)
            self.requests, self.server_errors = 0, []
            return out


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port with Werkzeug's threaded server; yields host:port."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        thread.join(timeout=10)
        srv.server_close()


# ---------------------------------------------------------------------------------------------- one site

@dataclasses.dataclass
class Pass:
    """Everything run as one caller: the sqlmap targets and the wapiti scans."""

    who: str
    targets: list[Target]
    wapiti: list[dict[str, Any]]  # keyword arguments of run_wapiti (label first)


def run_pass(p: Pass, host: str, out: Path, dbms: str | None, counter: StatusCounter | None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    t0 = time.monotonic()
    if counter is not None:
        counter.reset()

    def one(i: int, t: Target) -> SqlmapResult:
        r = run_sqlmap(t, host, out / p.who / "sqlmap" / f"{i:02d}", dbms)
        log(f"  [{p.who}] sqlmap {t.label}: {len(r.tested)}/{len(r.params)} params, injectable {r.injectable}, "
            f"{r.seconds} s{' ERRORS ' + '; '.join(r.errors) if r.errors else ''}")
        return r

    # operations without parameters have nothing to inject (the bearer token itself is not a parameter)
    with ThreadPoolExecutor(max_workers=SQLMAP_JOBS) as pool:
        sq = list(pool.map(lambda it: one(*it), [(i, t) for i, t in enumerate(p.targets) if t.params]))
    wa = []
    for kw in p.wapiti:
        r = run_wapiti(workdir=out / p.who / f"wapiti-{kw['label']}", **kw)
        log(f"  [{p.who}] wapiti {r.label}: {r.crawled} pages, {r.findings}, anomalies {r.anomalies}, "
            f"time-capped {r.truncated}, {r.seconds} s"
            f"{' ERRORS ' + '; '.join(r.errors) if r.errors else ''}")
        wa.append(r)
    requests, server_errors = counter.reset() if counter is not None else (0, [])
    findings: dict[str, int] = {}
    for r in wa:
        for sev, n in r.findings.items():
            findings[sev] = findings.get(sev, 0) + n
    return {
        "who": p.who,
        "operations": len(p.targets),
        "operations_without_parameters": [t.label for t in p.targets if not t.params],
        "parameters": sum(len(t.params) for t in p.targets),
        "parameters_tested": sum(len([x for x in r.tested if x not in HEADERS_TESTED]) for r in sq),
        "headers_tested": sum(len([x for x in r.tested if x in HEADERS_TESTED]) for r in sq),
        "injectable": [f"{r.label}: {i}" for r in sq for i in r.injectable],
        "wapiti_findings": findings,
        "wapiti_medium_or_higher": [d for r in wa for d in r.details],
        "wapiti_anomalies": sum(r.anomalies for r in wa),
        "wapiti_pages": sum(r.crawled for r in wa),
        "wapiti_time_capped": [f"{r.label}: {m}" for r in wa for m in r.truncated],
        "wapiti_waived": [f"{r.label}: {w}" for r in wa for w in r.waived],
        "server_errors": server_errors[:50],
        "server_error_count": len(server_errors),
        "requests_served": requests,
        "tool_errors": [f"{r.label}: {e}" for r in [*sq, *wa] for e in r.errors],
        "seconds": round(time.monotonic() - t0, 1),
        "sqlmap": [dataclasses.asdict(r) for r in sq],
        "wapiti": [dataclasses.asdict(r) for r in wa],
    }


def failed(summary: dict[str, Any]) -> bool:
    return bool(summary["injectable"] or summary["wapiti_medium_or_higher"] or summary["server_error_count"]
                or summary["tool_errors"])


# ---------------------------------------------------------------------------------------------- the app

def _world(ctx: Any) -> tuple[Any, dict[str, list[str]]]:
    """The schemathesis test's world (tests/web/test_api_schemathesis.py: ``world``), committed."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from cases_world import api_world

    w, ids = api_world(ctx)
    ids |= {"class_id": [w.class_a.id], "unit_id": [w.school_a.id]}
    return w, {k: [str(v) for v in vs] for k, vs in ids.items()}


#: role → the world's user of that role (as in the schemathesis test)
ROLE_USERS = {"class_monitor": "monitor.a", "head_teacher": "teacher.a", "counsellor": "counsellor.a",
              "school_leader": "leader.a", "county_officer": "county.a", "city_officer": "city",
              "clinician": "clinician.one", "sysadmin": "admin"}
PASSWORD = "correct horse 1"  # noqa: S105 - the seeded throwaway world's password (cases_world.PASSWORD)  # pragma: allowlist secret


@contextlib.contextmanager
def database(db: str) -> Iterator[str]:
    """A migrated throwaway database: ``sqlite`` (a temp file) or a scratch PostgreSQL database on the
    server of the URL given (created, then dropped)."""
    from mh_platform.db import migrate
    from mh_platform.db.engine import normalise_url

    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="mhp-dast-") as tmp:
            url = f"sqlite:///{tmp}/dast.sqlite3"
            migrate.upgrade(url)
            yield url
        return
    import sqlalchemy as sa

    base = normalise_url(db).rsplit("/", 1)[0]
    name = f"mhp_dast_{os.getpid()}"
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = f"{base}/{name}"
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _login_cookie(base: str, username: str) -> str:
    """A staff session from a real login through the form; returns "name=value"."""
    import requests

    s = requests.Session()
    page = s.get(f"{base}/login", timeout=30)
    m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page.text)
    assert m, "no CSRF token on /login"
    r = s.post(f"{base}/login", data={"username": username, "password": PASSWORD, "csrf_token": m.group(1)},
               allow_redirects=False, timeout=60)
    assert r.status_code == 302, (username, r.status_code)
    cookie = next(c for c in s.cookies if "session" in c.name)
    return f"{cookie.name}={cookie.value}"


def scan(db: str, out: Path, roles: list[str], with_pages: bool, with_wapiti: bool,
         wapiti_pages_roles: list[str] | None = None) -> int:
    from dataclasses import replace

    from mh_platform.config import load_settings
    from mh_platform.services import auth
    from mh_platform.services.context import build_context
    from mh_platform.services.keys import bootstrap_keys, write_new_master_key_file
    from mh_platform.web.app import create_app
    from mh_platform.web.openapi import build_spec

    out.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    with database(db) as url, tempfile.TemporaryDirectory(prefix="mhp-dast-key-") as keydir:
        key = f"{keydir}/master.key"
        write_new_master_key_file(key)
        # the long scans need tokens and sessions that outlive the default 30 minutes; the login limits
        # would otherwise answer the tools' repeated requests with 429 (counted as "not injectable")
        settings = load_settings({"env": "test", "database_url": url, "master_key_file": key,
                                  "secret_key": uuid.uuid4().hex * 2, "api_token_minutes": 600,
                                  "session_minutes": 600, "erasure_ledger_file": f"{keydir}/ledger.jsonl"},
                                 environ={})
        settings = replace(settings, extra={**settings.extra, "login_rate_limit": "100000 per minute",
                                            "login_ip_rate_limit": "100000 per minute"})
        ctx = build_context(settings)
        bootstrap_keys(ctx)
        t0 = time.monotonic()
        logging.getLogger("mh_platform.services.notify").setLevel(logging.ERROR)  # no SMTP server here
        w, ids = _world(ctx)
        print(f"seeded the world in {time.monotonic() - t0:.1f} s on {url.split('@')[-1]}", flush=True)
        app = create_app(ctx=ctx, extra_config={"MHP_PROPAGATE_ERRORS": False})
        spec = build_spec(app)
        counter = StatusCounter(app)
        dbms = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
        summaries = []
        with serve(counter) as host:
            base = f"http://{host}"
            from cases_world import actor_of

            passes = []
            for role in roles:
                actor = actor_of(ctx, ROLE_USERS[role])
                token = auth.mint_api_token(ctx, actor)[0]
                headers = {"Authorization": f"Bearer {token}"}

                def fresh(_actor: Any = actor) -> dict[str, str]:
                    return {"Authorization": f"Bearer {auth.mint_api_token(ctx, _actor)[0]}"}

                targets = api_targets(spec, ids, headers, public=False, fresh_headers=fresh)
                wapiti: list[dict[str, Any]] = []
                cookie = _login_cookie(base, ROLE_USERS[role]) if (with_pages or with_wapiti) else ""
                if with_pages:
                    targets += page_targets(app, ids, cookie)
                if with_wapiti:
                    wapiti.append(dict(label="api", base=f"{base}/api/v1/", headers=headers,
                                       swagger=f"{base}/api/v1/openapi.json",
                                       excludes=(f"{base}/api/v1/auth/revoke", f"{base}/api/v1/auth/token")))
                if with_wapiti and (wapiti_pages_roles is None or role in wapiti_pages_roles):
                    wapiti.append(dict(label="pages", base=f"{base}/", cookie=cookie,
                                       excludes=(f"{base}/logout", f"{base}/s/*", f"{base}/api/*",
                                                 f"{base}/login*", f"{base}/static/*")))
                passes.append(Pass(role, targets, wapiti))
            # nobody: the public operations (the token endpoint), the login form, the student code pages
            anon_wapiti = [dict(label="public", base=f"{base}/", start=f"{base}/s/", excludes=(f"{base}/static/*",))
                           ] if with_wapiti else []
            anon_targets = api_targets(spec, ids, {}, public=True) + (page_targets(app, ids, None) if with_pages else [])
            passes.append(Pass("anonymous", anon_targets, anon_wapiti))
            for p in passes:
                print(f"[{p.who}] {len(p.targets)} sqlmap targets, {len(p.wapiti)} wapiti scans", flush=True)
                s = run_pass(p, host, out, dbms, counter, log=lambda m: print(m, flush=True))
                s["db"] = dbms
                summaries.append(s)
                (out / "summary.json").write_text(json.dumps(summaries, indent=1, ensure_ascii=False), encoding="utf-8")
        del w
    total = round(time.monotonic() - t_all, 1)
    text = render(summaries, total)
    (out / "summary.txt").write_text(text, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps({"db": dbms, "seconds": total, "passes": summaries}, indent=1,
                                                 ensure_ascii=False), encoding="utf-8")
    print(text)
    return 1 if any(failed(s) for s in summaries) else 0


def render(summaries: list[dict[str, Any]], total: float) -> str:
    lines = [f"{'who':<16} {'db':<10} {'ops':>4} {'params':>7} {'inj':>4} {'wapiti (c/h/m/l/i)':>19} "
             f"{'5xx':>4} {'err':>4} {'reqs':>7} {'sec':>7}"]
    for s in summaries:
        f = s["wapiti_findings"]
        sev = "/".join(str(f.get(k, 0)) for k in ("critical", "high", "medium", "low", "info"))
        lines.append(f"{s['who']:<16} {s['db']:<10} {s['operations']:>4} {s['parameters_tested']:>3}/"
                     f"{s['parameters']:<3} {len(s['injectable']):>4} {sev:>19} {s['server_error_count']:>4} "
                     f"{len(s['tool_errors']):>4} {s['requests_served']:>7} {s['seconds']:>7}")
    for s in summaries:
        for kind in ("injectable", "wapiti_medium_or_higher", "server_errors", "tool_errors", "wapiti_time_capped",
                     "wapiti_waived"):
            lines += [f"{s['who']} {kind}: {x}" for x in s[kind]]
    lines.append(f"total {total} s; {'FAILED' if any(failed(s) for s in summaries) else 'clean'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sc = sub.add_parser("scan", help="seed, serve and scan the real app")
    sc.add_argument("--db", default="sqlite", help="'sqlite' or a PostgreSQL URL (a scratch database is made beside it)")
    sc.add_argument("--out", type=Path, default=REPO / "build" / "dast")
    sc.add_argument("--roles", default=",".join(ROLE_USERS), help="comma-separated roles (default: all eight)")
    sc.add_argument("--no-pages", action="store_true", help="sqlmap over the API only")
    sc.add_argument("--no-wapiti", action="store_true")
    sc.add_argument("--wapiti-pages", default="all",
                    help="roles whose pages wapiti crawls and attacks (comma-separated, 'all' or 'none'; the API "
                         "scan runs for every role)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_tools)  # `timeout` in make dast: the tools stop with the harness
    sys.path.insert(0, str(REPO))
    tool("sqlmap")
    tool("wapiti")
    roles = [r for r in args.roles.split(",") if r]
    unknown = set(roles) - set(ROLE_USERS)
    if unknown:
        ap.error(f"unknown roles: {sorted(unknown)}")
    pages_roles = None if args.wapiti_pages == "all" else [r for r in args.wapiti_pages.split(",") if r != "none"]
    return scan(args.db, args.out, roles, not args.no_pages, not args.no_wapiti, pages_roles)


if __name__ == "__main__":
    raise SystemExit(main())
