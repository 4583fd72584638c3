"""`mhp instruments`: list, validate, score (JSON Lines) and FHIR export of screening instruments."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from mh_platform.core.errors import DomainError
from mh_platform.core.instruments import (
    YES_NO_CODES,
    Instrument,
    InstrumentError,
    instrument_files,
    instruments_dir,
    load_all,
    load_file,
    load_instrument,
)
from mh_platform.core.scoring import STATUS_CODES, BatchScores, score, score_many

CHUNK = 20_000


@click.group()
def cli() -> None:
    """Screening instruments (筛查量表): definitions, scoring, FHIR."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array with a summary of each instrument.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Definitions directory (default: screening_instruments/ or $MHP_INSTRUMENTS_DIR).")
def list_cmd(as_json: bool, directory: str | None) -> None:
    """List the shipped instruments."""
    insts = load_all(directory)
    if as_json:
        click.echo(json.dumps([i.summary() for i in insts.values()], ensure_ascii=False, indent=2))
        return
    for i in insts.values():
        lo, hi = i.total_range()
        text = "text" if i.licence.ship_text else "scoring only"
        click.echo(f"{i.id:8s} {i.version:7s} {i.short_name:8s} {i.n_items:3d} items  total {lo}–{hi}  "
                   f"[{text}; {i.licence.name}]  {i.name_zh}")


@cli.command("validate")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
def validate_cmd(files: tuple[str, ...]) -> None:
    """Validate definition files (default: every file in the instruments directory)."""
    paths = [Path(f) for f in files] or instrument_files()
    if not paths:
        raise click.ClickException(f"no definition files in {instruments_dir()}")
    bad = 0
    for path in paths:
        try:
            inst = load_file(path)
        except InstrumentError as exc:
            bad += 1
            click.echo(f"INVALID {path}", err=True)
            for e in exc.errors:
                click.echo(f"  {e['path'] or '/'}: {e['message']}", err=True)
        except DomainError as exc:
            bad += 1
            click.echo(f"INVALID {path}: {exc}", err=True)
        else:
            click.echo(f"ok {path} ({inst.id} {inst.version}, {inst.n_items} items)")
    if bad:
        raise click.ClickException(f"{bad} of {len(paths)} definition file(s) invalid")


@cli.command("fhir")
@click.argument("instrument_id")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
def fhir_cmd(instrument_id: str, lang: str) -> None:
    """Print the instrument as a FHIR R4 Questionnaire (JSON)."""
    from mh_platform.core.fhir import to_questionnaire

    click.echo(json.dumps(to_questionnaire(load_instrument(instrument_id), lang=lang), ensure_ascii=False, indent=2))


@cli.command("score")
@click.argument("instrument_id")
@click.option("--variant", default=None, help="Scoring variant (default: the definition's default).")
@click.option("--cutoff-set", default=None, help="Cut-off set (default: the variant's default).")
def score_cmd(instrument_id: str, variant: str | None, cutoff_set: str | None) -> None:
    """Score JSON Lines from stdin: {"answers": {"1": 2, "9": null}} -> one result object per line."""
    inst = load_instrument(instrument_id)
    score_stream(inst, sys.stdin.buffer, sys.stdout.buffer, variant=variant, cutoff_set=cutoff_set)


# --------------------------------------------------------------------------- streaming scorer


def _error_line(inst: Instrument, message: str) -> dict[str, Any]:
    return {"instrument": inst.id, "total": None, "status": "invalid", "band": None, "subscales": {},
            "critical": [], "critical_unanswered": [], "short_forms": {}, "errors": [message]}


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


class _Float(float):
    """A parsed JSON float that never compares equal to an option value (1.0 is not the option 1)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(("json-float", float(self)))


_FAST_DECODER = json.JSONDecoder(parse_float=_Float)
NULL_CODE = 0xFFFF


class _Encoder:
    """(answer key, raw value) -> (column, batch code) for valid answers and nulls of known items."""

    def __init__(self, inst: Instrument) -> None:
        self.n = inst.n_items
        # each hit packs (column, code) into one int: column << 16 | (code + 32768); NULL_CODE = null
        self.pairs: dict[tuple[Any, Any], int] = {}
        for it in inst.items:
            j = it.number - 1
            for key in (it.number, str(it.number)):
                self.pairs[(key, None)] = j << 16 | NULL_CODE
                for o in it.options:
                    code = YES_NO_CODES[o.value] if it.kind == "yes_no" else int(o.value)
                    if not -32768 <= code < 32767:
                        raise ValueError(f"{inst.id}: option value {code} out of the batch range")
                    self.pairs[(key, o.value)] = j << 16 | (code + 32768)


def _row_keys(b: BatchScores) -> list[tuple]:
    """A hashable key per row that determines its JSON output (for caching the serialised line)."""
    cols = [np.where(np.isnan(b.total), -1, b.total), b.status, b.band]
    if b.critical.shape[1]:
        cols.append(b.critical @ (1 << np.arange(b.critical.shape[1], dtype=np.int64)))
        cols.append(b.critical_unanswered @ (1 << np.arange(b.critical.shape[1], dtype=np.int64)))
    for sid in b.subscales:
        cols.append(np.where(np.isnan(b.subscales[sid]), -1, b.subscales[sid]))
        cols.append(b.subscale_positive[sid])
    for sid in b.short_forms:
        cols.append(np.where(np.isnan(b.short_forms[sid]), -1, b.short_forms[sid]))
        cols.append(b.short_form_positive[sid])
    K = np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)
    return list(map(tuple, K.tolist()))


def score_stream(inst: Instrument, stdin: Any, stdout: Any, *, variant: str | None = None,
                 cutoff_set: str | None = None, chunk: int = CHUNK) -> int:
    """Score JSON Lines from a binary stream to a binary stream, in chunks via score_many.

    A line that is not a JSON object with an "answers" object gives an error object and the run
    goes on; a line with any invalid answer is scored by ``score`` (same rules, precise errors).
    Returns the number of lines read.
    """
    score(inst, {}, variant=variant, cutoff_set=cutoff_set)  # fail early on an unknown variant/cut-off set
    enc = _Encoder(inst)
    pairs_get = enc.pairs.get
    n_items = enc.n
    scan = _FAST_DECODER.scan_once
    cache: dict[tuple, bytes] = {}
    n_lines = 0
    lines_iter = iter(stdin)

    def slow(i: int, line: bytes) -> bytes:
        """The careful path for one line: exact JSON, precise errors, single-response scoring."""
        lineno = n_lines + i + 1
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return _dumps(_error_line(inst, f"line {lineno}: not valid JSON: {exc}"))
        answers = obj.get("answers") if type(obj) is dict else None
        if type(answers) is not dict:
            what = "missing" if type(obj) is dict and "answers" not in obj else "not an object"
            return _dumps(_error_line(inst, f"line {lineno}: \"answers\" {what}; expected "
                                            "{\"answers\": {\"1\": 2, ...}}"))
        return _dumps(score(inst, answers, variant=variant, cutoff_set=cutoff_set).to_json())

    while True:
        lines = list(itertools.islice(lines_iter, chunk))
        if not lines:
            break
        out: list[bytes | None] = [None] * len(lines)
        hits_list: list[list[int]] = []
        where: list[int] = []
        for i, line in enumerate(lines):
            # fast path: a plain {"answers": {...}} line whose every answer is an option or null
            try:
                text = line.decode("utf-8").strip()
                obj, end = scan(text, 0)
                answers = obj["answers"]
                if end != len(text) or b"true" in line or b"false" in line:
                    raise ValueError
                hits = list(map(pairs_get, answers.items()))
                if None in hits:
                    raise ValueError
            except Exception:  # noqa: BLE001 - anything unusual takes the careful path
                out[i] = slow(i, line)
                continue
            hits_list.append(hits)
            where.append(i)
        if hits_list:
            m = len(hits_list)
            lens = np.fromiter(map(len, hits_list), dtype=np.intp, count=m)
            packed = np.fromiter(itertools.chain.from_iterable(hits_list), dtype=np.int64, count=int(lens.sum()))
            rows = np.repeat(np.arange(m), lens)
            cell = rows * n_items + (packed >> 16)
            low = packed & 0xFFFF
            X = np.full(m * n_items, np.nan)
            X[cell] = np.where(low == NULL_CODE, np.nan, low - 32768.0)
            X = X.reshape(m, n_items)
            dup = np.bincount(cell, minlength=m * n_items).reshape(m, n_items).max(axis=1) > 1
            b = score_many(inst, X, variant=variant, cutoff_set=cutoff_set)
            for r, (i, key) in enumerate(zip(where, _row_keys(b), strict=True)):
                if dup[r]:  # an item given twice ("1" and 1): the careful path reports it
                    out[i] = slow(i, lines[i])
                    continue
                s = cache.get(key)
                if s is None:
                    s = _dumps(b.result(r).to_json())
                    if len(cache) < 100_000:
                        cache[key] = s
                out[i] = s
        stdout.write(b"\n".join(out) + b"\n")  # type: ignore[arg-type]
        n_lines += len(lines)
    stdout.flush()
    return n_lines


__all__ = ["cli", "score_stream", "STATUS_CODES"]
