"""`bench table` never shows a wrong number: every cell of every layout checked against records.csv in every format,
skipped runs named, crafted records.csv / manifest.json refused in one line, decimals per metric, --bootstrap 0, and
hostile labels escaped in Markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.metrics import layouts  # noqa: F401  (registers the paper's layouts)
from bench.tables import LAYOUTS, Column, csv_escape, latex_escape, md_escape, read_records
from bench.types import RECORD_COLUMNS

FORMATS = ("md", "csv", "latex")
#: decimals the tables must show, written out here independently of bench.tables
DECIMALS = {"threshold_far": 3, "ssim": 3, "lpips": 3, "psnr": 2}


def _table(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["table", *args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


# -- crafted runs ------------------------------------------------------------------------------------------------------
class _Values:
    """Every record gets a value no other record has, even after rounding: a cell showing another record's number
    (another recogniser's, another threshold's) cannot pass."""

    def __init__(self) -> None:
        self.k = 0

    def __call__(self, metric: str) -> tuple[float, float, float]:
        self.k += 1
        if DECIMALS.get(metric, 1) == 1:
            v = 0.7 * self.k + 0.0123  # a percentage: shown 0.7 k
        else:
            v = 0.1 + 0.0137 * self.k + 0.00012
        return v, v - 0.25 * (1 + self.k % 3), v + 0.3


RECOGNIZERS = {"sface": ("cosine", (0.3, 0.363)), "dlib": ("l2", (0.4, 0.6)), "adaface": ("cosine", (0.3,))}


def _records(dataset: str, method: str, vals: _Values, white_box: str = "") -> list[dict]:
    rows = []

    def add(metric, model="", threshold=None, hib=False, value=None):
        v, lo, hi = vals(metric)
        if value is not None:
            v, lo, hi = value, value, value
        rows.append({"dataset": dataset, "method": method, "variant": method, "metric": metric, "model": model,
                     "threshold": threshold, "value": v, "ci_low": lo, "ci_high": hi, "n": 20,
                     "higher_is_better": hib, "white_box": bool(white_box) and model.split("@")[0] == white_box})

    for rec, (_, ts) in RECOGNIZERS.items():
        for t in ts:
            for metric in ("reid", "ids", "ids_rank1", "far_originals"):
                add(metric, rec, t)
            add("tar_originals", rec, t, hib=True)
        if rec != "adaface":
            for far in ("far1e-2", "far1e-3"):
                label = f"{rec}@{far}"
                t = vals("threshold_far")[0]
                add("threshold_far", label, t, value=t)
                for metric in ("reid", "ids", "ids_rank1"):
                    add(metric, label, t)
    for attr in ("expression", "ethnicity", "gender", "age", "makeup"):
        add(f"attr_{attr}", "attrnet", None, True)
    add("attribute", "expression+ethnicity+gender+age+makeup", None, True)
    add("lpips", "alex")
    add("ssim", "", None, True)
    add("psnr", "", None, True)
    add("detection", "yunet", None, True)
    return rows


def _write_run(root: Path, rows: list[dict], *, list_hash: str = "h" * 64, status: str = "complete",
               method_args: dict | None = None, name: str | None = None) -> Path:
    ds, method = rows[0]["dataset"], rows[0]["method"]
    run = root / ds / method / (name or f"{abs(hash((ds, method, str(method_args)))) % 10**12:012d}")
    run.mkdir(parents=True)
    pd.DataFrame(rows, columns=RECORD_COLUMNS).to_csv(run / "records.csv", index=False)
    manifest = {"status": status, "image_list_hash": list_hash, "resolved": {"dataset": ds},
                "config": {"method_args": method_args or {}}}
    if method_args:  # what the runner records: Method.row_label (the `folder` method leaves out label and root)
        shown = {k: v for k, v in method_args.items() if k not in ("label", "root")}
        base = method_args.get("label") or rows[0]["variant"]
        manifest["row_label"] = base + (" [" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + "]"
                                        if shown else "")
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two datasets x two methods, three recognisers (SFace is white-box for `ours`), every value distinct."""
    vals = _Values()
    for ds in ("celeba", "lfw"):
        for method in ("ours", "blur"):
            _write_run(tmp_path, _records(ds, method, vals, white_box="sface" if method == "ours" else ""),
                       list_hash=ds * 8)
    return tmp_path


# -- parsing the three formats back ------------------------------------------------------------------------------------
def _parse_md(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
    unescape = [[html.unescape(re.sub(r"\\(.)", r"\1", c)) for c in row] for row in split]
    return unescape[0], unescape[2:]


def _parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("#")]
    return rows[0], rows[1:]


def _parse_latex(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (dataset, method, cells...), with \\textbf removed and the dagger as †."""
    lines = text.splitlines()
    head = lines.index(r"\midrule") - 1
    header = [c.strip() for c in re.split(r"(?<!\\)&", lines[head].removesuffix(r" \\"))]
    rows, dataset = [], ""
    for ln in lines[head + 2:lines.index(r"\bottomrule")]:
        ds = re.fullmatch(r"\\multicolumn\{\d+\}\{l\}\{\\textit\{(.*)\}\} \\\\", ln)
        if ds:
            dataset = ds.group(1)
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)&", ln.removesuffix(r" \\"))]
        cells = [re.sub(r"\\textbf\{([^{}]*)\}", r"\1", c) for c in cells]
        rows.append([dataset] + [c.replace(r"$^\dagger$", "†") for c in cells])
    return header, rows


def _parse(fmt: str, text: str) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """(headers of the value columns, {(dataset, method): cells})."""
    header, rows = {"md": _parse_md, "csv": _parse_csv, "latex": _parse_latex}[fmt](text)
    if fmt == "latex":
        return header[1:], {(r[0], r[1]): r[2:] for r in rows}
    if header[0] == "dataset":
        return header[2:], {(r[0], r[1]): r[2:] for r in rows}
    return header[1:], {("", r[0]): r[1:] for r in rows}


# -- expectations computed from records.csv with plain pandas ----------------------------------------------------------
def _expected_cell(records: list[dict], c: Column, ci: bool) -> str:
    """The cell of column ``c`` for one run's records (rows of its records.csv read by pandas)."""
    texts = []
    for metric in (c.metric, c.pair) if c.pair else (c.metric,):
        sel = [r for r in records if r["metric"] == metric]
        if c.model is not None or c.exact:
            sel = [r for r in sel if (r["model"] if isinstance(r["model"], str) else "") == (c.model or "")]
        if c.threshold is not None:
            sel = [r for r in sel if abs(r["threshold"] - c.threshold) < 1e-9]
        elif c.exact:
            sel = [r for r in sel if math.isnan(r["threshold"])]
        assert len(sel) <= 1
        if not sel:
            texts.append("-")
            continue
        r = sel[0]
        d = DECIMALS.get(metric, 1)
        text = f"{r['value']:.{d}f}" + ("†" if str(r["white_box"]) == "True" else "")
        if ci and not math.isnan(r["ci_low"]):
            text += f" [{r['ci_low']:.{d}f}, {r['ci_high']:.{d}f}]"
        texts.append(text)
    if all(t == "-" for t in texts):
        return "-"
    return f"({texts[0]}, {texts[1]})" if c.pair else texts[0]


def _arrow(records: list[dict], c: Column) -> str:
    """The header arrow(s) of ``c``: one per number of the cell, merged when they agree."""
    arrows = []
    for metric in (c.metric, c.pair) if c.pair else (c.metric,):
        dirs = {str(r["higher_is_better"]) for r in records if r["metric"] == metric
                and (c.model is None or r["model"] == c.model or (c.model == "" and not isinstance(r["model"], str)))}
        if dirs:
            assert len(dirs) == 1
            arrows.append("↑" if dirs == {"True"} else "↓")
    return arrows[0] if len(set(arrows)) == 1 else "".join(arrows)


def _check_every_cell(root: Path, layout: str, fmt: str, ci: bool) -> int:
    """Render ``layout`` of the runs under ``root`` with `bench table` and compare each cell with its record."""
    frames = {p.parent: pd.read_csv(p) for p in sorted(root.rglob("records.csv"))}
    per_run = {run: df.to_dict("records") for run, df in frames.items()}
    allrec = pd.concat(frames.values(), ignore_index=True)
    everything = allrec.to_dict("records")
    columns: list[Column] = []
    for c in LAYOUTS[layout](allrec.assign(model=allrec.model.fillna(""))):
        if c.key not in {k.key for k in columns} and any(
                _expected_cell(r, c, False) != "-" for r in per_run.values()):
            columns.append(c)
    code, out, err = _table(str(root), "--layout", layout, "--format", fmt, *(["--ci"] if ci else []))
    if not columns:
        assert code == 2 and "no records for layout" in err
        return 0
    assert code == 0, err
    headers, rows = _parse(fmt, out)
    assert len(headers) == len(columns), (headers, [c.label for c in columns])
    many = allrec.dataset.nunique() > 1 or fmt == "csv"
    assert len(rows) == len(per_run)
    checked = 0
    for records in per_run.values():
        key = (records[0]["dataset"] if many else "", records[0]["variant"])
        assert key in rows, (key, list(rows))
        for c, h, cell in zip(columns, headers, rows[key]):
            assert (latex_escape(c.label) in h) if fmt == "latex" else (c.label in h and c.group in h), (h, c)
            assert h.endswith(latex_escape(_arrow(everything, c)) if fmt == "latex" else _arrow(everything, c)), h
            assert cell == _expected_cell(records, c, ci), (layout, fmt, key, h)
            checked += 1
    return checked


@pytest.mark.parametrize("ci", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_cell_of_every_layout_matches_records(runs, fmt, ci):
    assert {"auto", "privacy", "privacy-far", "adaface", "utility", "summary"} <= set(LAYOUTS)
    total = 0
    for layout in sorted(LAYOUTS):
        total += _check_every_cell(runs, layout, fmt, ci)
    assert total > 4 * 100  # 4 rows; auto alone has 51 columns


def test_privacy_far_columns_are_told_apart_by_recognizer(runs):
    """The issue's case: the FAR labels repeat across recognisers; each recogniser keeps its own numbers."""
    for fmt in FORMATS:
        code, out, _ = _table(str(runs / "celeba"), "--layout", "privacy-far", "--format", fmt)
        assert code == 0
        headers, rows = _parse(fmt, out)
        cells = rows[next(iter(rows))]
        assert len(headers) == 4 and len(set(cells)) == 4, (headers, cells)
        assert "Series" not in out and "dtype" not in out


@pytest.mark.slow
@pytest.mark.weights
def test_real_runs_with_two_recognizers(tmp_path):
    """The issue's repro on the demo faces: noise and blur, SFace and dlib; every layout against records.csv."""
    from bench.config import RunConfig
    from bench.runner import evaluate

    for method in ("noise", "blur"):
        r = evaluate(RunConfig(method=method, dataset="demo", out=str(tmp_path), metrics=("ssim", "reid"),
                               recognizers=("sface", "dlib"), n_bootstrap=50), progress=False)
        if set(r.records.model) < {"sface", "dlib"}:
            pytest.skip("SFace or dlib weights missing (make setup)")
    far = pd.concat([pd.read_csv(p) for p in tmp_path.rglob("records.csv")])
    far = far[(far.metric == "ids") & far.model.str.endswith("@far1e-2")]
    assert far.groupby("model").value.first().nunique() == 2  # the two recognisers' values differ
    for layout in sorted(LAYOUTS):
        for fmt in FORMATS:
            _check_every_cell(tmp_path, layout, fmt, ci=fmt == "csv")


# -- item 2: runs left out are named -----------------------------------------------------------------------------------
def _small(dataset: str = "demo", method: str = "blur") -> list[dict]:
    return [r for r in _records(dataset, method, _Values()) if r["metric"] in ("ssim", "psnr")]


def test_unfinished_and_failed_runs_are_named_and_skipped(tmp_path):
    good = _write_run(tmp_path, _small(method="blur"))
    running = _write_run(tmp_path, _small(method="noise"), status="running")  # stale records of an older run
    no_records = _write_run(tmp_path, _small(method="pixelate"))
    (no_records / "records.csv").unlink()
    empty = _write_run(tmp_path, _small(method="mask"))
    (empty / "records.csv").write_bytes(b"")
    header_only = _write_run(tmp_path, _small(method="identity"))
    (header_only / "records.csv").write_text(",".join(RECORD_COLUMNS) + "\n")

    code, out, err = _table(str(tmp_path))
    assert code == 0, err
    assert "blur" in out and not any(m in out for m in ("noise", "pixelate", "mask", "identity"))
    lines = err.splitlines()
    assert len(lines) == 4, err
    for run, why in ((running, "status 'running'"), (no_records, "no records.csv"), (empty, "records.csv is empty"),
                     (header_only, "records.csv has no rows")):
        assert any(ln.startswith(f"skipped {run}: ") and why in ln for ln in lines), (run, err)
    assert str(good) not in err

    # nothing left: non-zero exit, every skipped run named
    for p in (good / "records.csv", good / "manifest.json"):
        p.unlink()
    good.rmdir()
    code, out, err = _table(str(tmp_path))
    assert code == 2 and out == ""
    assert "nothing to tabulate" in err and all(str(r) in err for r in (running, no_records, empty, header_only))
    code, out, err = _table(str(running))
    assert code == 2 and err.count("\n") == 1 and str(running) in err and "status 'running'" in err


def test_one_run_given_as_its_records_file(tmp_path):
    run = _write_run(tmp_path, _small())
    code, out, _ = _table(str(run / "records.csv"))
    assert code == 0 and "blur" in out


# -- item 3: crafted files give one line and exit code 2 ---------------------------------------------------------------
def _good_csv() -> str:
    return pd.DataFrame(_small(), columns=RECORD_COLUMNS).to_csv(index=False)


def _edit(text: str, col: str, value: str, row: int = 0) -> str:
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    df.loc[row, col] = value
    return df.to_csv(index=False)


CRAFTED_RECORDS = {
    "direction maybe": (lambda t: _edit(t, "higher_is_better", "maybe"), ["row 1", "higher_is_better", "'maybe'"]),
    "white_box yes": (lambda t: _edit(t, "white_box", "yes", 1), ["row 2", "white_box", "'yes'"]),
    "value text": (lambda t: _edit(t, "value", "abc"), ["value", "'abc'", "not a number"]),
    "value underscore": (lambda t: _edit(t, "value", "1_000"), ["value", "'1_000'", "not a number"]),
    "n empty": (lambda t: _edit(t, "n", ""), ["column n", "empty"]),
    "n negative": (lambda t: _edit(t, "n", "-3"), ["column n", "'-3'", "count"]),
    "n fraction": (lambda t: _edit(t, "n", "2.5"), ["column n", "'2.5'", "count"]),
    "threshold inf": (lambda t: _edit(t, "threshold", "inf"), ["threshold", "'inf'", "finite"]),
    "ci_low text": (lambda t: _edit(t, "ci_low", "low"), ["ci_low", "'low'"]),
    "ci half": (lambda t: _edit(t, "ci_high", ""), ["row 1", "ci_low/ci_high"]),
    "empty metric": (lambda t: _edit(t, "metric", " "), ["column metric", "empty"]),
    "unknown column": (lambda t: t.replace("white_box", "whitebox", 1), ["unknown column", "'whitebox'"]),
    "missing column": (lambda t: pd.read_csv(io.StringIO(t)).drop(columns="value").to_csv(index=False),
                       ["missing column", "value"]),
    "ragged row": (lambda t: t + "demo,blur,blur,ssim,,,1,1,1,8,True,False,extra\n", ["not a readable records CSV"]),
    "binary": (lambda t: "\x00\xff\xfe garbage", ["records.csv"]),
    "duplicate record": (lambda t: t + t.splitlines()[1] + "\n", ["rows 1, 3", "'ssim'", "one value per metric"]),
    "two datasets": (lambda t: _edit(t, "dataset", "lfw", 1), ["several datasets"]),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_RECORDS))
def test_crafted_records_are_refused_in_one_line(tmp_path, case):
    edit, needles = CRAFTED_RECORDS[case]
    run = _write_run(tmp_path, _small())
    path = run / "records.csv"
    text = edit(_good_csv())
    if case == "binary":
        path.write_bytes(b"\x00\xff\xfe\x80 garbage\n\xff,\x00\n")
    else:
        path.write_text(text)
    code, out, err = _table(str(tmp_path))
    assert code == 2 and out == "", (out, err)
    assert err.startswith(f"error: {path}") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


CRAFTED_MANIFESTS = {
    "invalid json": ("{status: complete", "invalid JSON"),
    "empty": ("", "empty file"),
    "list": ("[1, 2]", "a JSON array"),
    "null": ("null", "a JSON null"),
    "no status": (json.dumps({"image_list_hash": "h", "resolved": {"dataset": "demo"}}), "missing key 'status'"),
    "no hash": (json.dumps({"status": "complete", "resolved": {"dataset": "demo"}}), "'image_list_hash'"),
    "no dataset": (json.dumps({"status": "complete", "image_list_hash": "h", "resolved": {}}), "'resolved.dataset'"),
    "resolved list": (json.dumps({"status": "complete", "image_list_hash": "h", "resolved": []}), "JSON array"),
    "args list": (json.dumps({"status": "complete", "image_list_hash": "h", "resolved": {"dataset": "demo"},
                              "config": {"method_args": ["x"]}}), "method_args"),
    "odd status": (json.dumps({"status": "done?", "image_list_hash": "h", "resolved": {"dataset": "demo"}}),
                   "unknown status 'done?'"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_MANIFESTS))
def test_crafted_manifests_are_refused_in_one_line(tmp_path, case):
    text, needle = CRAFTED_MANIFESTS[case]
    run = _write_run(tmp_path, _small())
    (run / "manifest.json").write_text(text)
    code, out, err = _table(str(run))
    assert code == 2 and out == "", (out, err)
    assert err.startswith(f"error: {run / 'manifest.json'}: ") and err.count("\n") == 1, err
    assert needle in err, err


def test_records_without_the_white_box_column_still_load(tmp_path):
    run = _write_run(tmp_path, _small())
    df = pd.read_csv(run / "records.csv").drop(columns="white_box")
    df.to_csv(run / "records.csv", index=False)
    code, out, err = _table(str(run), "--format", "csv")
    assert code == 0, err
    assert "†" not in out and out.splitlines()[1].startswith("demo,blur,")
    assert read_records(run / "records.csv")["white_box"].tolist() == [False, False]


# -- item 4: decimals per metric, exact thresholds in labels -----------------------------------------------------------
def test_decimals_per_metric_and_exact_threshold_labels(tmp_path):
    base = {"dataset": "demo", "method": "noise", "variant": "noise", "ci_low": None, "ci_high": None, "n": 8,
            "white_box": False}
    rows = [
        {**base, "metric": "threshold_far", "model": "sface@far1e-2", "threshold": 0.265802, "value": 0.265802,
         "higher_is_better": False},
        {**base, "metric": "reid", "model": "sface@far1e-2", "threshold": 0.265802, "value": 87.5,
         "higher_is_better": False},
        {**base, "metric": "reid", "model": "sface", "threshold": 0.3625, "value": 62.5, "higher_is_better": False},
        {**base, "metric": "ids", "model": "sface", "threshold": 0.3625, "value": 12.54, "higher_is_better": False},
        {**base, "metric": "psnr", "model": "", "threshold": None, "value": 31.2345, "higher_is_better": True},
        {**base, "metric": "ssim", "model": "", "threshold": None, "value": 0.58281, "higher_is_better": True},
        {**base, "metric": "lpips", "model": "alex", "threshold": None, "value": 0.12345, "higher_is_better": False},
    ]
    run = _write_run(tmp_path, rows)
    code, out, err = _table(str(run), "--format", "csv")
    assert code == 0, err
    header, (row,) = _parse_csv(out)
    cells = dict(zip(header, row))
    assert cells["threshold_far sface@far1e-2@0.265802 ↓"] == "0.266"  # was 0.3
    assert cells["reid sface@far1e-2@0.265802 ↓"] == "87.5"
    assert cells["reid sface@0.3625 ↓"] == "62.5" and cells["ids sface@0.3625 ↓"] == "12.5"
    assert cells["PSNR ↑"] == "31.23" and cells["SSIM ↑"] == "0.583" and cells["LPIPS alex ↓"] == "0.123"
    code, out, _ = _table(str(run), "--layout", "privacy")
    assert code == 0 and "cos≥0.3625" in out.splitlines()[0]


# -- item 5: --bootstrap 0 ---------------------------------------------------------------------------------------------
def test_records_without_intervals_render_in_every_format(tmp_path):
    rows = _small()
    for r in rows:
        r["ci_low"] = r["ci_high"] = None
    run = _write_run(tmp_path, rows)
    assert all(line.split(",")[7:9] == ["", ""] for line in (run / "records.csv").read_text().splitlines()[1:])
    for fmt in FORMATS:
        code, out, err = _table(str(run), "--format", fmt, "--ci")
        assert code == 0, err
        assert "nan" not in out.lower() and "[" not in out
        _, parsed = _parse(fmt, out)
        (cells,) = parsed.values()
        assert cells == [f"{rows[0]['value']:.3f}", f"{rows[1]['value']:.2f}"]


@pytest.mark.slow
def test_bootstrap_0_runs_every_default_metric_and_tabulates(tmp_path):
    """`bench run --bootstrap 0` with every default metric that is available: no crash after the compute, empty
    ci_low/ci_high cells in records.csv (not "nan"), and `bench table --ci` renders them in every format."""
    res = CliRunner().invoke(cli, ["run", "-m", "blur", "-d", "demo", "--bootstrap", "0", "--out", str(tmp_path),
                                   "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.rglob("records.csv")
    rows = list(csv.DictReader(path.open()))
    assert {"ssim", "psnr"} <= {r["metric"] for r in rows}
    assert all(r["ci_low"] == "" and r["ci_high"] == "" for r in rows)
    assert all(r["value"] not in ("", "nan") for r in rows)
    for fmt in FORMATS:
        code, out, err = _table(str(tmp_path), "--format", fmt, "--ci")
        assert code == 0, err
        assert "nan" not in out.lower() and " [" not in out


# -- item 6: hostile labels --------------------------------------------------------------------------------------------
HOSTILE = {
    "html": "<img src=x onerror=alert(1)>",
    "pipe": "a|b",
    "newline": "line1\nline2\r\n",
    "formula": '=HYPERLINK("http://x","y")',
    "plus": "+1+2",
    "minus": "-2+3",
    "at": "@SUM(A1)",
    "latex": r"\ $ % & _ # ^ ~ { }",
    "markdown": "![p](http://e/p.png) [l](javascript:alert(1)) `c` *e* ~~s~~",
}
#: LaTeX escapes read back (independent of bench.tables)
_LATEX_BACK = {r"\textbackslash{}": "\\", r"\textasciicircum{}": "^", r"\textasciitilde{}": "~", r"\textless{}": "<",
               r"\textgreater{}": ">", r"\textbar{}": "|", r"\$": "$", r"\%": "%", r"\&": "&", r"\_": "_", r"\#": "#",
               r"\{": "{", r"\}": "}", r"$\geq$": "≥", r"$\leq$": "≤", r"$\uparrow$": "↑", r"$\downarrow$": "↓"}


def _latex_back(cell: str) -> str:
    pattern = "|".join(map(re.escape, _LATEX_BACK))
    rest = re.sub(pattern, "", cell)
    assert not set(rest) & set("\\$%&_#^~{}"), (cell, rest)  # nothing special left unescaped
    return re.sub(pattern, lambda m: _LATEX_BACK[m.group()], cell)


def _hostile_runs(root: Path, h: str) -> tuple[str, list[str]]:
    """A run whose dataset, folder label, method option and recogniser are all ``h``, beside a plain run: (the
    hostile run's row label, the two run folders)."""
    runs = []
    for dataset, method, label, args in ((h, "folder", h, {"opt": h, "label": h}), ("celeba", "blur", "blur", {})):
        rows = []
        for metric, model, t, v in (("threshold_far", f"{h}@far1e-2", 0.25, 0.25), ("reid", h, 0.3, 50.0), ("ids", h, 0.3, 10.0), ("reid", f"{h}@far1e-2", 0.25, 60.0),
                                    ("ids", f"{h}@far1e-2", 0.25, 20.0), ("ssim", "", None, -0.5)):
            rows.append({"dataset": dataset, "method": method, "variant": label, "metric": metric, "model": model,
                         "threshold": t, "value": v, "ci_low": None, "ci_high": None, "n": 8,
                         "higher_is_better": metric == "ssim", "white_box": False})
        runs.append(str(_write_run(root, rows, method_args=args, list_hash=dataset, name=method)))
    return f"{h} [opt={h}]", runs  # the row label: the folder label and the options that tell rows apart


def _one_line(s: str) -> str:
    return re.sub(r"[\x00-\x1f]+", " ", s)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_labels_in_markdown_render_inert(tmp_path, case):
    markdown_it = pytest.importorskip("markdown_it")
    h = HOSTILE[case]
    label, runs = _hostile_runs(tmp_path, h)
    for layout in ("auto", "privacy-far"):
        code, out, err = _table(*runs, "--layout", layout)
        assert code == 0, err
        page = markdown_it.MarkdownIt("commonmark").enable("table").render(out)
        for tag in ("<img", "<a ", "<code", "<em", "<strong", "<s>", "<del", "<script"):
            assert tag not in page, (tag, page)
        rows = re.findall(r"<tr>(.*?)</tr>", page, re.DOTALL)
        heads = [html.unescape(c) for c in re.findall(r"<th[^>]*>(.*?)</th>", rows[0], re.DOTALL)]
        cells = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.DOTALL)] for r in rows[1:]]
        assert len(cells) == 2 and all(len(r) == len(heads) for r in cells), page
        assert heads[:2] == ["dataset", "method"]
        assert [r[:2] for r in cells] == [[_one_line(h).strip(), _one_line(label).strip()], ["celeba", "blur"]]
        assert cells[0][2:] == cells[1][2:] or layout == "auto"  # the same numbers in both runs
        assert all(_one_line(h).strip() in x for x in heads[2:] if "SSIM" not in x), heads


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_labels_in_csv_are_not_formulas(tmp_path, case):
    h = HOSTILE[case]
    label, runs = _hostile_runs(tmp_path, h)

    def expected(s: str) -> str:
        s = _one_line(s)
        return "'" + s if s[:1] in ("=", "+", "-", "@") else s

    for layout in ("auto", "privacy-far"):
        code, out, err = _table(*runs, "--layout", layout, "--format", "csv")
        assert code == 0, err
        header, rows = _parse_csv(out)
        assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
        assert rows[0][:2] == [expected(h), expected(label)] and rows[1][:2] == ["celeba", "blur"]
        if layout == "privacy-far":
            assert header[2] == expected(f"{h} FAR 1e-2 ↓") and rows[0][2] == "(60.0, 20.0)"
        else:
            assert rows[0][header.index("SSIM ↑")] == "-0.500"  # a negative number stays a number
        for cell in header + rows[0]:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")) and (cell == "-0.500" or cell[:1] != "-"), cell


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_labels_in_latex_are_escaped(tmp_path, case):
    h = HOSTILE[case]
    label, runs = _hostile_runs(tmp_path, h)
    for layout in ("auto", "privacy-far"):
        code, out, err = _table(*runs, "--layout", layout, "--format", "latex")
        assert code == 0, err
        lines = out.splitlines()
        body = lines[lines.index(r"\midrule") + 1:lines.index(r"\bottomrule")]
        assert len(body) == 4, body  # two dataset lines, two rows: no label broke a line
        datasets = [ln for ln in body if ln.startswith(r"\multicolumn")]
        ncol = len(re.split(r"(?<!\\)&", body[1]))
        prefix = rf"\multicolumn{{{ncol}}}{{l}}{{\textit{{"
        assert datasets[0].startswith(prefix) and datasets[0].endswith(r"}} \\")
        assert _latex_back(datasets[0][len(prefix):-len(r"}} \\")]) == _one_line(h)
        rows = [ln for ln in body if not ln.startswith(r"\multicolumn")]
        ncells = {len(re.split(r"(?<!\\)&", ln)) for ln in rows}
        assert len(ncells) == 1, rows
        assert _latex_back(re.split(r"(?<!\\)&", rows[0])[0].strip()) == _one_line(label).strip()
        head = [c.strip() for c in re.split(r"(?<!\\)&", lines[lines.index(r"\midrule") - 1].removesuffix(r" \\"))]
        assert len(head) in ncells and all(_latex_back(c) for c in head)
        if layout == "privacy-far":
            group = lines[lines.index(r"\toprule") + 1].removesuffix(r" \\").split("&", 1)[1].strip()
            assert _latex_back(group) == _one_line(h).strip()


def test_escape_functions():
    assert md_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md_escape("a|b\nc") == r"a\|b c" and md_escape("blur [sigma=12]") == "blur [sigma=12]"
    assert csv_escape("-0.5") == "-0.5" and csv_escape("-") == "-" and csv_escape("1e-3") == "1e-3"
    assert csv_escape("=1+2") == "'=1+2" and csv_escape("-2+3") == "'-2+3" and csv_escape("@x") == "'@x"
    assert latex_escape(r"\ $ % & _ # ^ ~ { }") == (r"\textbackslash{} \$ \% \& \_ \# \textasciicircum{} "
                                                    r"\textasciitilde{} \{ \}")


def test_latex_bolds_every_displayed_best_and_nothing_alone(tmp_path):
    """Bold is a claim: it marks every value that is shown as the best (ties after rounding), only where two or more
    rows compete, and the arrow follows the records even when a run lacks the metric."""
    base = {"dataset": "demo", "model": "sface", "threshold": 0.3, "ci_low": None, "ci_high": None, "n": 8,
            "higher_is_better": False, "white_box": False}
    runs = []
    for method, reid, ids in (("a", 12.34, 40.0), ("b", 12.31, 30.0), ("c", 50.0, None)):
        rows = [{**base, "method": method, "variant": method, "metric": "reid", "value": reid}]
        if ids is not None:
            rows.append({**base, "method": method, "variant": method, "metric": "ids", "value": ids})
        runs.append(str(_write_run(tmp_path, rows)))
    code, out, err = _table(*runs, "--format", "latex")
    assert code == 0, err
    lines = out.splitlines()
    assert r"ids sface@0.3 $\downarrow$" in out  # c has no ids record: the arrow comes from a and b
    assert r"a & \textbf{12.3} & 40.0 \\" in lines and r"b & \textbf{12.3} & \textbf{30.0} \\" in lines
    assert r"c & 50.0 & - \\" in lines
    code, out, _ = _table(runs[2], "--format", "latex")
    assert code == 0 and r"\textbf" not in out


def test_a_white_box_number_is_never_bold(tmp_path):
    """A method scored by the recogniser it optimised against would win the column: its † value is never the best,
    in LaTeX and in the HTML report's tables, and the best black-box value of the column is bold instead."""
    from bench.report.tablehtml import html_table

    base = {"dataset": "demo", "model": "sface", "threshold": 0.3, "ci_low": None, "ci_high": None, "n": 8,
            "higher_is_better": False, "metric": "reid"}
    runs = []
    for method, reid, wb in (("ours", 0.0, True), ("blur", 60.0, False), ("pixelate", 20.0, False)):
        runs.append(str(_write_run(tmp_path, [{**base, "method": method, "variant": method, "value": reid,
                                               "white_box": wb}])))
    code, out, err = _table(*runs, "--format", "latex")
    assert code == 0, err
    lines = out.splitlines()
    assert r"ours & 0.0$^\dagger$ \\" in lines and r"pixelate & \textbf{20.0} \\" in lines
    assert r"blur & 60.0 \\" in lines
    records = pd.concat([pd.read_csv(Path(r) / "records.csv").assign(run=r) for r in runs])
    table = html_table(records, "auto")
    bold = {method: [b for cell in cells for _, b in cell] for _, body in table.blocks for method, cells in body}
    assert bold == {"ours": [False], "blur": [False], "pixelate": [True]}
