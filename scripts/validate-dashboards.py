"""Validates the provisioned Grafana dashboards without a Grafana: every JSON file under
deploy/grafana/dashboards/ against scripts/grafana-dashboard.schema.json, then the facts a schema cannot
state, and finally that every metric its PromQL names is one tracewarden exports.

    python3 scripts/validate-dashboards.py                     # the dashboards of the repository
    python3 scripts/validate-dashboards.py FILE...             # other dashboard files
    python3 scripts/validate-dashboards.py --metrics M.json    # against a saved `tracewarden metrics --json`
    python3 scripts/validate-dashboards.py --self-test         # the validator against known-bad input

Checks, each failing with the file, the panel (title and id) and what is wrong:
- the schema: title, uid, panels, schemaVersion; every panel's type, title and gridPos; every query
  target's expr and refId; datasource references to a datasource provisioned in
  deploy/grafana/provisioning/datasources/ (its uid, and the type it is provisioned with);
- panel ids unique (rows and the panels inside collapsed rows included), refIds unique within a panel,
  x + w within the 24 columns, no two panels overlapping;
- every PromQL expression (panel targets, annotations, query variables): it parses (promql-parser, pinned
  in tests/requirements.txt: syntax, function names and argument types), uses only template variables the
  dashboard defines (or Grafana's own `$__…`), and every metric it selects (a selector's name,
  `{__name__="…"}`, `{__name__=~"…"}`) is a series tracewarden exports; a histogram's bare family name
  is not one (its series are `_bucket`, `_sum` and `_count`);
- a transformation's query filter selects at least one of its panel's queries, and a node graph's
  queries are instant table queries (the panel reads rows, not time series).

The parser knows no Grafana template variables, so each is replaced before parsing by a value valid
where it stands: a duration inside `[…]` and after `offset`, its own name inside a quoted string, a number
anywhere else (a variable standing for a metric or label name is not supported).

The exported series are tracewarden's own table of its metric families, `tracewarden metrics --json`
(`{name, type, labels, help, series}` per family), taken from the first of:
- `--metrics FILE`, a saved listing;
- `$TRACEWARDEN_BIN metrics --json`, a binary already built;
- `cargo run --quiet --locked -- metrics --json` from the repository root, which builds the debug binary
  first when the sources changed (cargo judges that, from every input of the build; a fresh clone works).
`--self-test` needs none of them: it writes its own small tables.
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import promql_parser
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
SCHEMA = Path(__file__).resolve().with_name("grafana-dashboard.schema.json")
COLUMNS = 24


# --------------------------------------------------------------------------------------------------
# The metric families tracewarden exports, as `tracewarden metrics --json` lists them

CARGO_RUN = ["cargo", "run", "--quiet", "--locked", "--", "metrics", "--json"]
TABLE_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["name", "type", "labels", "help", "series"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
            "type": {"enum": ["counter", "gauge", "histogram"]},
            "labels": {"type": "array", "items": {"type": "string"}},
            "help": {"type": "string"},
            "series": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    },
}


class MetricsError(Exception):
    pass


def metric_families(text, source):
    """{name: family} of a `tracewarden metrics --json` listing; MetricsError if the text is not one."""
    try:
        table = json.loads(text)
    except json.JSONDecodeError as e:
        raise MetricsError(f"{source}: not JSON: {e}") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(TABLE_SCHEMA).iter_errors(table))
    if error:
        raise MetricsError(f"{source}: {'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}")
    families = {}
    for family in table:
        if family["name"] in families:
            raise MetricsError(f"{source}: family {family['name']} is listed twice")
        families[family["name"]] = family
    return families


def load_families(path=None, env=None):
    """The families from `path` if given, else from `$TRACEWARDEN_BIN metrics --json`, else `cargo run`."""
    if path is not None:
        try:
            return metric_families(Path(path).read_text(), str(path))
        except OSError as e:
            raise MetricsError(f"cannot read {path}: {e}") from None
    env = os.environ if env is None else env
    binary = env.get("TRACEWARDEN_BIN")
    command = [binary, "metrics", "--json"] if binary else CARGO_RUN
    try:
        run = subprocess.run(command, cwd=None if binary else ROOT, env=env, stdout=subprocess.PIPE, text=True)
    except OSError as e:
        raise MetricsError(f"cannot run {' '.join(command)}: {e}") from None
    if run.returncode:
        raise MetricsError(f"{' '.join(command)} failed (exit status {run.returncode})")
    return metric_families(run.stdout, " ".join(command))


# --------------------------------------------------------------------------------------------------
# PromQL, read by promql-parser once Grafana's template variables are replaced

VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)(?:[:.][^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]")
PIECE = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<comment>\#[^\n]*)
      | (?P<variable>""" + VARIABLE.pattern + r""")
      | (?P<open>\[)
      | (?P<close>\])
      | [^"'`\#$\[\]]+ | .""",
    re.X | re.S,
)
OFFSET = re.compile(r"\boffset\s*-?\s*$", re.I)


def _name(variable):
    """The name of a VARIABLE match; `$1`-style label_replace references are no variables (None)."""
    name = next(g for g in variable.groups() if g)
    return None if name.isdigit() else name


def variables_in(text):
    """Template variables a string uses."""
    return {name for name in map(_name, VARIABLE.finditer(text)) if name}


def without_variables(expr):
    """The expression with each template variable replaced by a value valid where it stands: a duration
    inside `[…]` and after `offset`, its name inside a string, a number anywhere else."""
    out, depth = [], 0
    for piece in PIECE.finditer(expr):
        text = piece.group(0)
        if piece.group("string"):
            text = VARIABLE.sub(lambda v: _name(v) or v.group(0), text)
        elif piece.group("variable") and _name(VARIABLE.fullmatch(text)):
            text = "5m" if depth or OFFSET.search("".join(out)) else "1"
        elif piece.group("open"):
            depth += 1
        elif piece.group("close"):
            depth = max(depth - 1, 0)
        out.append(text)
    return "".join(out)


def promql_references(expr):
    """(metric names, `__name__` regexes) an expression selects; ValueError if it does not parse.

    A metric is named by a selector (`name{…}`) or by a `{__name__="…"}` matcher, and `{__name__=~"…"}`
    matches some (`or` alternatives of a selector included).
    """
    metrics, name_regexes = [], []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                metrics.append(node.name)
            for matchers in [node.matchers.matchers, *node.matchers.or_matchers]:
                for m in matchers:
                    if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                        metrics.append(m.value)
                    elif m.name == "__name__" and m.op == promql_parser.MatchOp.Re:
                        name_regexes.append(m.value)

    promql_parser.walk(promql_parser.parse(without_variables(expr)), visit)
    return metrics, name_regexes


def check_promql(expr, families, defined):
    """Problems of one PromQL expression, given the exported {family: family} and the defined variables."""
    undefined = [f"template variable ${name} is not defined by the dashboard"
                 for name in sorted(variables_in(expr) - defined) if not name.startswith("__")]
    try:
        metrics, name_regexes = promql_references(expr)
    except ValueError as e:
        return [f"PromQL does not parse: {e}"] + undefined
    problems = []
    series = {name for family in families.values() for name in family["series"]}
    for metric in metrics:
        if metric in series:
            continue
        if metric in families and families[metric]["type"] == "histogram":
            problems.append(f"metric {metric} is a histogram: query {metric}_bucket, _sum or _count")
        else:
            problems.append(f"metric {metric} is not exported by tracewarden")
    for regex in name_regexes:
        try:
            if not any(re.fullmatch(regex, name) for name in series):
                problems.append(f"__name__=~{regex!r} matches no metric tracewarden exports")
        except re.error as e:
            problems.append(f"__name__=~{regex!r}: {e}")
    return problems + undefined


def variable_query_promql(query):
    """The PromQL inside a Grafana Prometheus variable query (label_values, query_result, …)."""
    m = re.fullmatch(r"\s*(label_values|query_result|label_names|metrics)\s*\((.*)\)\s*", query, re.S)
    if not m:
        return [query]
    function, args = m.groups()
    if function == "query_result":
        return [args]
    if function == "label_values":
        depth, split = 0, None
        for k, c in enumerate(args):  # label_values(selector, label): the last top-level comma
            depth += c in "({[" and 1 or c in ")}]" and -1 or 0
            if c == "," and depth == 0:
                split = k
        return [args[:split]] if split is not None else []
    return []  # label_names(), metrics(regex): no metric named


# --------------------------------------------------------------------------------------------------
# The dashboards


def provisioned_datasources():
    """{uid: type} of the datasources Grafana is provisioned with."""
    out = {}
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("datasources", []):
            out[source["uid"]] = source["type"]
    return out


def load_schema(datasources):
    schema = json.loads(SCHEMA.read_text())
    schema["$defs"]["datasource"]["properties"]["uid"]["enum"] = sorted(datasources)
    return jsonschema.Draft202012Validator(schema)


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def grafana_regex(pattern):
    """A frame filter's pattern as Grafana reads it: /re/flags, else the whole refId."""
    m = re.fullmatch(r"/(.*?)/([gimsuy]*)", pattern)
    if m:
        return re.compile(m.group(1), re.I if "i" in m.group(2) else 0)
    return re.compile(f"^(?:{pattern})$")


def promql_of(dashboard):
    """(where, expression) for every PromQL expression of a schema-valid dashboard."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            for expr in variable_query_promql(query):
                yield f"variable ${variable['name']}", expr
    for annotation in dashboard.get("annotations", {}).get("list", []):
        expr = annotation.get("expr") or annotation.get("target", {}).get("expr")
        if expr:
            yield f"annotation {annotation['name']!r}", expr
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] != "row":
            for target in panel["targets"]:
                yield f"panel {panel['title']!r} (id {panel['id']}) query {target['refId']}", target["expr"]


def validate_dashboard(dashboard, validator, datasources, families):
    """Problems of one dashboard (a parsed JSON document) and the number of expressions checked."""
    problems = []

    def where(path):
        """'panel "title" (id n): rest/of/path' for a JSON path inside a panel, else the path."""
        node, label = dashboard, "/".join(map(str, path)) or "(top)"
        for k, key in enumerate(path):
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                break
            if k > 0 and path[k - 1] == "panels" and isinstance(node, dict):
                rest = "/".join(map(str, path[k + 1:]))
                label = f"panel {node.get('title', '?')!r} (id {node.get('id', '?')})" + (f": {rest}" if rest else "")
        return label

    for error in sorted(validator.iter_errors(dashboard), key=lambda e: list(map(str, e.absolute_path))):
        problems.append(f"schema: {where(list(error.absolute_path))}: {error.message}")
    if problems:
        return problems, 0

    panels = list(all_panels(dashboard["panels"]))
    ids = {}
    for panel in panels:
        name = f"panel {panel['title']!r} (id {panel['id']})"
        if panel["id"] in ids:
            problems.append(f"{name}: id {panel['id']} is also {ids[panel['id']]!r}'s")
        ids.setdefault(panel["id"], panel["title"])
        g = panel["gridPos"]
        if g["x"] + g["w"] > COLUMNS:
            problems.append(f"{name}: gridPos x {g['x']} + w {g['w']} goes past the {COLUMNS} columns")
    laid_out = [p for p in dashboard["panels"]]
    for row in dashboard["panels"]:
        if row["type"] == "row" and not row.get("collapsed"):
            laid_out += row.get("panels", [])
    for a_index, a in enumerate(laid_out):
        for b in laid_out[a_index + 1:]:
            ga, gb = a["gridPos"], b["gridPos"]
            if (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                    and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]):
                problems.append(f"panel {a['title']!r} (id {a['id']}) overlaps panel {b['title']!r} (id {b['id']})")

    def check_datasource(ref, name):
        if ref and datasources.get(ref["uid"]) != ref["type"]:
            problems.append(f"{name}: datasource {ref['uid']!r} is provisioned with type "
                            f"{datasources.get(ref['uid'])!r}, not {ref['type']!r}")

    variables = dashboard.get("templating", {}).get("list", [])
    for variable in variables:
        check_datasource(variable.get("datasource"), f"variable ${variable['name']}")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if not annotation.get("builtIn"):
            check_datasource(annotation.get("datasource"), f"annotation {annotation['name']!r}")
    for panel in panels:
        if panel["type"] == "row":
            continue
        name = f"panel {panel['title']!r} (id {panel['id']})"
        check_datasource(panel.get("datasource"), name)
        refs = [t["refId"] for t in panel["targets"]]
        for ref in sorted({r for r in refs if refs.count(r) > 1}):
            problems.append(f"{name}: refId {ref} is used by more than one query")
        for target in panel["targets"]:
            check_datasource(target.get("datasource"), f"{name} query {target['refId']}")
            if panel["type"] == "nodeGraph" and not (target.get("instant") and target.get("format") == "table"):
                problems.append(f"{name} query {target['refId']}: a node graph needs instant table queries")
        for k, transformation in enumerate(panel.get("transformations", [])):
            pattern = transformation.get("filter", {}).get("options")
            if pattern is not None:
                try:
                    selects = [r for r in refs if grafana_regex(pattern).search(r)]
                except re.error as e:
                    selects, pattern = [], f"{pattern} ({e})"
                if not selects:
                    problems.append(f"{name}: transformation {k + 1} ({transformation['id']}) filters on "
                                    f"refId {pattern}, which selects none of {refs}")
    defined = {v["name"] for v in variables}
    expressions = list(promql_of(dashboard))
    for name, expr in expressions:
        problems += [f"{name}: {p}" for p in check_promql(expr, families, defined)]
    return problems, len(expressions)


def validate_files(paths, families):
    """Problems of the dashboard files, each prefixed with its file name; and a summary line."""
    datasources = provisioned_datasources()
    validator = load_schema(datasources)
    problems, expressions, panel_count = [], 0, 0
    for path in paths:
        try:
            dashboard = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path}: not JSON: {e}")
            continue
        found, checked = validate_dashboard(dashboard, validator, datasources, families)
        problems += [f"{Path(path).name}: {p}" for p in found]
        expressions += checked
        panel_count += sum(1 for _ in all_panels(dashboard.get("panels", [])))
    summary = (f"{len(paths)} dashboard(s), {panel_count} panels, {expressions} PromQL expressions, "
               f"{len(families)} metric families exported")
    return problems, summary


# --------------------------------------------------------------------------------------------------
# Self-test: the validator must reject what it exists to reject


def family(name, type_, labels=()):
    """One entry of a `tracewarden metrics --json` table."""
    series = [name + suffix for suffix in ("_bucket", "_sum", "_count")] if type_ == "histogram" else [name]
    return {"name": name, "type": type_, "labels": list(labels), "help": f"{name}.", "series": series}


SAMPLE_TABLE = [
    family("tracewarden_sample_requests_total", "counter", ["service"]),
    family("tracewarden_sample_latency_seconds", "histogram", ["service", "le"]),
    family("tracewarden_sample_buffered", "gauge"),
]
BAD_TABLES = [  # (table, what the error names)
    ("[", "not JSON"),
    ("{}", "is not of type 'array'"),
    ("[]", "should be non-empty"),
    (json.dumps([dict(SAMPLE_TABLE[0], type="summary")]), "'summary' is not one of"),
    (json.dumps([{k: v for k, v in SAMPLE_TABLE[0].items() if k != "series"}]), "'series' is a required property"),
    (json.dumps([dict(SAMPLE_TABLE[0], series=[])]), "0/series"),
    (json.dumps(SAMPLE_TABLE[:1] * 2), "listed twice"),
]
SUBSTITUTIONS = [  # template variables replaced where they stand
    ('rate(a{x=~"$x|${y:pipe}", z=\'[[z]]\'}[$__rate_interval] offset -${shift}) * $k # $c "',
     'rate(a{x=~"x|y", z=\'z\'}[5m] offset -5m) * 1 # $c "'),
    ('max_over_time(a[$__range:[[step]]]) @ ${__to:date:seconds} + label_replace(a, "t", "$1", "s", "(.*)")',
     'max_over_time(a[5m:5m]) @ 1 + label_replace(a, "t", "$1", "s", "(.*)")'),
]
PROMQL_CASES = [
    ('sum by (service, le) (rate(tracewarden_latency_seconds_bucket{service=~"$service", le!="+Inf"}'
     '[$__rate_interval]))', ["tracewarden_latency_seconds_bucket"]),
    ("histogram_quantile(0.99, sum without (instance) (rate(a_bucket[5m]))) > bool 0.5",
     ["a_bucket"]),
    ("a / on (service) group_left (team) b * ignoring(x) c or d unless e and f", list("abcdef")),
    ('{__name__="tracewarden_requests_total", service="x"} offset 1h', ["tracewarden_requests_total"]),
    ("max_over_time(rate(a[5m])[1h:1m] @ start())", ["a"]),
    ('count_values("v", topk(3, a)) + quantile(0.9, b) - count(c) % -1e-3 ^ 0x1F', ["a", "b", "c"]),
    ('label_replace(label_join(a, "id", ":", "service", "env"), "t", "$1", "service", "(.*)")', ["a"]),
    ("SUM BY (x) (a) # a comment naming not_a_metric, with a ' quote", ["a"]),
    ("1 - sum(rate(a[1h30m])) / sum(rate(b[5m] offset 1d))", ["a", "b"]),
    ("abs(a) + sort_desc(b) + vector(1) + time() + inf + nan", ["a", "b"]),
    ("a == bool b", ["a", "b"]),
    ("-(a) + (b{x='y'} > 1) or c{x=\"1\" or y=\"2\"}", ["a", "b", "c"]),
    # Grafana variables in every position: range, subquery, offset, string (any quote), number
    ("topk($k, sum_over_time(a{x=~'${service:regex}', y=\"[[env]]\"}[$__range:${__interval}] "
     "offset -$shift)) > $threshold * [[scale]]", ["a"]),
    ('rate(a[[[window]]]) / $__range_s', ["a"]),
]


def self_test():
    failures = []

    def expect(condition, what):
        if not condition:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the metric table: read from a file, from $TRACEWARDEN_BIN, from `cargo run`; malformed ones refused
        table = tmp / "metrics.json"
        table.write_text(json.dumps(SAMPLE_TABLE, indent=2))
        families = load_families(table)
        expect(sorted(families) == sorted(f["name"] for f in SAMPLE_TABLE), f"metric table read as {families}")
        for stub, script, env in [
            (tmp / "tracewarden", f'[ "$*" = "metrics --json" ] && cat "{table}"',
             {"TRACEWARDEN_BIN": str(tmp / "tracewarden")}),
            (tmp / "cargo", f'[ "$*" = "run --quiet --locked -- metrics --json" ] && [ "$(pwd -P)" = "{ROOT}" ] '
                            f'&& cat "{table}"',
             {"PATH": f"{tmp}{os.pathsep}{os.environ.get('PATH', '')}"}),
        ]:
            stub.write_text(f"#!/bin/sh\n{script}\n")
            stub.chmod(0o755)
            env = {**{k: v for k, v in os.environ.items() if k != "TRACEWARDEN_BIN"}, **env}
            try:
                expect(load_families(env=env) == families, f"the table from {stub.name} differs")
            except MetricsError as e:
                expect(False, f"the table from {stub.name}: {e}")
            stub.write_text("#!/bin/sh\nexit 1\n")
            try:
                load_families(env=env)
                expect(False, f"a failing {stub.name} should fail")
            except MetricsError as e:
                expect("failed (exit status 1)" in str(e), f"a failing {stub.name}: {e}")
            stub.unlink()
        for text, message in BAD_TABLES:
            try:
                metric_families(text, "table")
                expect(False, f"metric table {text!r} should be refused naming {message!r}")
            except MetricsError as e:
                expect(message in str(e), f"metric table {text!r} should be refused naming {message!r}: {e}")

    # the PromQL reader
    for expr, expected in SUBSTITUTIONS:
        expect(without_variables(expr) == expected, f"{expr!r} should read {expected!r}: {without_variables(expr)!r}")
    for expr, expected in PROMQL_CASES:
        try:
            metrics, _ = promql_references(expr)
        except ValueError as e:
            metrics = [f"error: {e} in {without_variables(expr)!r}"]
        expect(sorted(metrics) == sorted(expected), f"PromQL {expr!r}: expected {expected}, read {metrics}")
    for expr, defined in [
        (PROMQL_CASES[-2][0], {"k", "service", "env", "shift", "threshold", "scale"}),
        ('sum(rate(tracewarden_sample_latency_seconds_count{x=~"$v"}[$__rate_interval])) '
         '/ {__name__=~"tracewarden_sample_.*_total"}', {"v"}),
    ]:
        problems = check_promql(expr, {**families, "a": family("a", "gauge")}, defined)
        expect(problems == [], f"PromQL {expr!r} should pass: {problems}")
    without_buffered = {k: v for k, v in families.items() if k != "tracewarden_sample_buffered"}
    for expr, known, message in [
        ("rate(tracewarden_sample_latency_seconds[5m])", families, "is a histogram: query"),
        ("rate(tracewarden_sample_latency_seconds_bucket[5m])", {}, "is not exported"),
        ("tracewarden_sample_buffered", without_buffered, "metric tracewarden_sample_buffered is not exported"),
        ('{__name__="tracewarden_sample_requests"}', families, "is not exported"),
        ("histogram_quantil(0.9, tracewarden_sample_buffered)", families, "unknown function"),
        ("rate(tracewarden_sample_buffered)", families, "expected type matrix"),
        ('tracewarden_sample_buffered{x="$undefined"}', families, "template variable $undefined is not defined"),
        ('{__name__=~"tracewarden_y.*"}', families, "matches no metric"),
        ("sum(tracewarden_sample_buffered", families, "unclosed left parenthesis"),
    ]:
        problems = check_promql(expr, known, set())
        expect(any(message in p for p in problems), f"PromQL {expr!r} should fail with {message!r}: {problems}")

    # whole dashboards, against a table of the metrics they select (the real table is the real run's):
    # each passes, and temporary copies with one mistake each must fail naming it
    originals = sorted(DASHBOARDS.glob("*.json"))
    expect(originals, f"no dashboards under {DASHBOARDS}")
    for original in originals:
        dashboard = json.loads(original.read_text())
        selected = {m for _, expr in promql_of(dashboard) for m in promql_references(expr)[0]}
        histograms = {m[:-len("_bucket")] for m in selected if m.endswith("_bucket")}
        known = {f["name"]: f for f in [family(h, "histogram") for h in histograms]
                  + [family(m, "gauge") for m in selected if not any(m.startswith(h + "_") for h in histograms)]}
        problems, _ = validate_files([original], known)
        expect(problems == [], f"{original.name} as it is: {problems}")
        panels = [p for p in all_panels(dashboard["panels"]) if p["type"] != "row"]
        first = panels[0]
        metric = next(m for m in promql_references(first["targets"][0]["expr"])[0] if m.startswith("tracewarden_"))
        misspelt = metric[:14] + metric[15:]  # one letter less

        def mutate(change):
            copy_ = copy.deepcopy(dashboard)
            change(copy_, [p for p in all_panels(copy_["panels"]) if p["type"] != "row"])
            return copy_

        def set_expr(d, ps):
            ps[0]["targets"][0]["expr"] = ps[0]["targets"][0]["expr"].replace(metric, misspelt, 1)

        def unparsable(d, ps):
            ps[0]["targets"][0]["expr"] += " +"

        def widen(d, ps):
            ps[0]["gridPos"].update(x=COLUMNS - 4, w=8)

        def duplicate_id(d, ps):
            ps[-1]["id"] = ps[0]["id"]

        def other_datasource(d, ps):
            ps[0]["datasource"] = {"type": "prometheus", "uid": "not-provisioned"}

        def no_ref(d, ps):
            del ps[0]["targets"][0]["refId"]

        def no_grid(d, ps):
            del ps[0]["gridPos"]

        def overlap(d, ps):
            ps[1]["gridPos"] = dict(ps[0]["gridPos"])

        def bad_filter(d, ps):
            ps[0].setdefault("transformations", []).append(
                {"id": "organize", "filter": {"id": "byRefId", "options": "no_such_query"}, "options": {}})

        query = f"panel {first['title']!r} (id {first['id']}) query {first['targets'][0]['refId']}"
        cases = [
            (set_expr, [query, misspelt, "not exported"]),
            (unparsable, [query, "does not parse"]),
            (widen, ["goes past the 24 columns"]),
            (duplicate_id, [f"id {first['id']} is also"]),
            (other_datasource, ["not-provisioned", "is not one of"]),
            (no_ref, ["'refId' is a required property"]),
            (no_grid, ["'gridPos' is a required property"]),
            (overlap, ["overlaps"]),
            (bad_filter, ["selects none of"]),
        ]
        with tempfile.TemporaryDirectory() as tmp:
            for change, messages in cases:
                bad = Path(tmp) / f"{change.__name__}-{original.name}"
                bad.write_text(json.dumps(mutate(change), indent=2))
                problems, _ = validate_files([bad], known)
                expect(problems and all(any(m in p for p in problems) for m in messages),
                       f"{original.name} with {change.__name__}: expected a failure naming {messages}, "
                       f"got {problems or 'none'}")

    if failures:
        print("validate-dashboards.py --self-test FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(f"validate-dashboards.py --self-test: ok ({len(PROMQL_CASES)} PromQL readings, "
          f"{len(SUBSTITUTIONS)} substitutions, {len(BAD_TABLES)} malformed metric tables refused, {len(originals)} dashboard(s) passing "
          f"and 9 broken copies of each rejected)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true", help="check the validator against known-bad input")
    parser.add_argument("--metrics", type=Path, metavar="FILE",
                        help="a saved `tracewarden metrics --json` (default: $TRACEWARDEN_BIN's, else `cargo run`'s)")
    parser.add_argument("files", nargs="*", type=Path, help="dashboard files (default: every one provisioned)")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    paths = args.files or sorted(DASHBOARDS.glob("*.json"))
    if not paths:
        print(f"no dashboards under {DASHBOARDS}")
        return 1
    try:
        families = load_families(args.metrics)
    except MetricsError as e:
        print(f"cannot read tracewarden's metric families: {e}")
        return 1
    problems, summary = validate_files(paths, families)
    if problems:
        print("Grafana dashboards are invalid:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"Grafana dashboards valid: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
