"""Validates the provisioned Grafana dashboards without a Grafana: every JSON file under
deploy/grafana/dashboards/ against scripts/grafana-dashboard.schema.json, then the facts a schema cannot
state, and finally that every metric its PromQL names is one tracewarden exports.

    python3 scripts/validate-dashboards.py              # the dashboards of the repository
    python3 scripts/validate-dashboards.py FILE...      # other dashboard files
    python3 scripts/validate-dashboards.py --self-test  # the validator against known-bad input

Checks, each failing with the file, the panel (title and id) and what is wrong:
- the schema: title, uid, panels, schemaVersion; every panel's type, title and gridPos; every query
  target's expr and refId; datasource references to a datasource provisioned in
  deploy/grafana/provisioning/datasources/ (its uid, and the type it is provisioned with);
- panel ids unique (rows and the panels inside collapsed rows included), refIds unique within a panel,
  x + w within the 24 columns, no two panels overlapping;
- every PromQL expression (panel targets, annotations, query variables): it tokenizes, calls only PromQL
  functions, uses only template variables the dashboard defines (or Grafana's own `$__…`), and every
  metric name it references is a series tracewarden exports;
- a transformation's query filter selects at least one of its panel's queries, and a node graph's
  queries are instant table queries (the panel reads rows, not time series).

The exported series are read from the Rust sources: a metric family is a string literal
`"tracewarden_…"` registered with its help text (`"name", "help"` as the Prometheus client and the
collectors pass them, or `name: "…"` beside `help:` in a family spec). A histogram family exports
`_bucket`, `_sum` and `_count` and not its bare name; a counter its `_total` name; a gauge its name. Other
`tracewarden_` literals (Kafka topic names, test expectations, comments) are not metrics, and neither is
anything in `#[cfg(test)]` code.
"""
import argparse
import copy
import json
import re
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
SCHEMA = Path(__file__).resolve().with_name("grafana-dashboard.schema.json")
SOURCES = ROOT / "src"
COLUMNS = 24

METRIC_NAME = re.compile(r"tracewarden_[a-zA-Z0-9_:]+")


# --------------------------------------------------------------------------------------------------
# The metric families tracewarden exports, from the Rust sources


def rust_tokens(text):
    """(kind, value) tokens of Rust source: str, char, lifetime, ident, num, punct; no comments."""
    token = re.compile(
        r"""(?P<raw>b?r(?P<hashes>\#*)")
          | (?P<str>b?"(?P<body>(?:\\.|[^"\\])*)")
          | (?P<char>b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^'\\\n])')
          | (?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)
          | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
          | (?P<num>[0-9][0-9A-Za-z_]*)""",
        re.X | re.S,
    )
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            m = token.match(text, i)
            if not m:
                out.append(("punct", text[i]))
                i += 1
            elif m.group("raw"):
                close = '"' + m.group("hashes")
                end = text.find(close, m.end())
                end = n if end < 0 else end
                out.append(("str", text[m.end():end]))
                i = end + len(close)
            else:
                kind = m.lastgroup if m.lastgroup != "body" else "str"
                out.append((kind, m.group("body") if kind == "str" else m.group(0)))
                i = m.end()
    return out


def _matching(tokens, start, open_, close):
    """Index of the token closing the bracket opened at `start`."""
    depth = 0
    for k in range(start, len(tokens)):
        if tokens[k] == ("punct", open_):
            depth += 1
        elif tokens[k] == ("punct", close):
            depth -= 1
            if depth == 0:
                return k
    return len(tokens) - 1


def _without_test_items(tokens):
    """The tokens with every `#[cfg(test)]` item left out, and the names of `#[cfg(test)] mod x;`."""
    cfg_test = [("punct", "#"), ("punct", "["), ("ident", "cfg"), ("punct", "("), ("ident", "test"),
                ("punct", ")"), ("punct", "]")]
    out, test_modules, i = [], [], 0
    while i < len(tokens):
        if tokens[i:i + len(cfg_test)] != cfg_test:
            out.append(tokens[i])
            i += 1
            continue
        i += len(cfg_test)
        while i < len(tokens) and tokens[i] == ("punct", "#"):  # further attributes of the item
            i = _matching(tokens, i + 1, "[", "]") + 1
        start = i
        while i < len(tokens) and tokens[i] not in (("punct", ";"), ("punct", "{")):
            if tokens[i] == ("punct", "("):
                i = _matching(tokens, i, "(", ")")
            i += 1
        item = [v for _, v in tokens[start:i]]
        if i < len(tokens) and tokens[i] == ("punct", "{"):
            i = _matching(tokens, i, "{", "}")
        elif len(item) >= 2 and item[-2] == "mod":
            test_modules.append(item[-1])
        i += 1
    return out, test_modules


def _enclosing_call(tokens, k):
    """The path of the call whose arguments hold token k (`Opts::new`, `counter_vec`), or ''."""
    depth = 0
    for j in range(k - 1, -1, -1):
        if tokens[j] == ("punct", ")"):
            depth += 1
        elif tokens[j] == ("punct", "("):
            if depth == 0:
                path = []
                j -= 1
                while j >= 0 and (tokens[j][0] == "ident" or tokens[j][1] in (":", "!")):
                    path.insert(0, tokens[j][1])
                    j -= 1
                return "".join(path)
            depth -= 1
        elif tokens[j][1] in (";", "{", "}"):
            return ""
    return ""


def _kind_from_words(text):
    text = text.lower()
    for kind in ("histogram", "summary", "counter"):
        if kind in text:
            return kind
    return "other"


def families_in(tokens):
    """{family: kind} for the metric families registered in a token stream (test items already out)."""
    found = {}
    for k, (kind, value) in enumerate(tokens):
        if kind != "str" or not METRIC_NAME.fullmatch(value):
            continue
        nxt = tokens[k + 1:k + 3]
        if len(nxt) == 2 and nxt[0] == ("punct", ",") and nxt[1][0] == "str":
            # ("name", "help", ...): a registration; the call says the kind when it can
            found[value] = _kind_from_words(_enclosing_call(tokens, k))
        elif k >= 2 and tokens[k - 1] == ("punct", ":") and tokens[k - 2] == ("ident", "name"):
            # name: "…" in a struct literal: a family spec when the same literal has a help
            depth, words, has_help = 0, [], False
            for kind2, value2 in tokens[k + 1:]:
                if value2 in ("{", "(", "[") and kind2 == "punct":
                    depth += 1
                elif value2 in ("}", ")", "]") and kind2 == "punct":
                    if depth == 0:
                        break
                    depth -= 1
                elif kind2 == "ident":
                    words.append(value2)
                    has_help |= value2 == "help" and depth == 0
            if has_help:
                found[value] = _kind_from_words(" ".join(words))
    return found


def exported_families(sources=SOURCES):
    """{family: kind} of every metric family tracewarden registers, test code excluded."""
    files = sorted(sources.rglob("*.rs"))
    streams, excluded = {}, set()
    for path in files:
        tokens, test_modules = _without_test_items(rust_tokens(path.read_text(encoding="utf-8")))
        streams[path] = tokens
        module_dir = path.parent if path.name in ("mod.rs", "lib.rs", "main.rs") else path.parent / path.stem
        for name in test_modules:
            excluded.add(module_dir / f"{name}.rs")
            excluded.add(module_dir / name)
    families = {}
    for path, tokens in streams.items():
        if any(path == e or e in path.parents for e in excluded):
            continue
        families.update(families_in(tokens))
    return families


def exported_series(families):
    """The series names Prometheus stores for the families, each mapped to its family."""
    series = {}
    for family, kind in families.items():
        if kind == "histogram":
            names = [family + "_bucket", family + "_sum", family + "_count"]
        elif kind == "summary":
            names = [family, family + "_sum", family + "_count"]
        elif kind == "counter" and not family.endswith("_total"):
            names = [family, family + "_total"]  # the OpenMetrics exposition adds _total
        else:
            names = [family]
        for name in names:
            series[name] = family
    return series


# --------------------------------------------------------------------------------------------------
# PromQL: just enough of a tokenizer to tell metric names from everything else

AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
               "topk", "quantile", "limitk", "limit_ratio"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
FUNCTIONS = set("""
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
    clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
    double_exponential_smoothing end exp floor histogram_avg histogram_count histogram_fraction
    histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase
    info irate label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time
    min_over_time minute month pi predict_linear present_over_time quantile_over_time rad rate resets
    round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt start stddev_over_time
    stdvar_over_time sum_over_time tan tanh time timestamp vector year
""".split())

PROMQL_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<var>\$\{[^}]*\}|\$[A-Za-z0-9_]+|\[\[[A-Za-z0-9_]+(?::[^\]]*)?\]\])
      | (?P<number>0[xX][0-9a-fA-F]+
          |(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?:(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>==|!=|=~|!~|<=|>=|[-+*/%^<>=,(){}\[\]@:])""",
    re.X,
)
VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)(?:[:.][^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]")


class PromQLError(Exception):
    pass


def promql_tokens(expr):
    out, i = [], 0
    while i < len(expr):
        m = PROMQL_TOKEN.match(expr, i)
        if not m:
            raise PromQLError(f"cannot read PromQL at {expr[i:i + 20]!r}")
        if m.lastgroup not in ("ws", "comment"):
            out.append((m.lastgroup, m.group(0)))
        i = m.end()
    return out


def _close(tokens, i, open_, close):
    depth = 0
    for k in range(i, len(tokens)):
        if tokens[k] == ("op", open_):
            depth += 1
        elif tokens[k] == ("op", close):
            depth -= 1
            if depth == 0:
                return k
    raise PromQLError(f"unbalanced {open_!r}")


def _unquote(literal):
    if literal[0] == "`":
        return literal[1:-1]
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def promql_references(expr):
    """(metric names, `__name__` regexes, function names) an expression references.

    Identifiers followed by `(` are functions (or aggregations), the ones inside `{…}` are label names,
    inside `by`/`without`/`on`/`ignoring`/`group_left`/`group_right (…)` label names too, inside `[…]`
    durations and Grafana variables; strings, numbers and keywords are nothing; what is left names a
    metric. `{__name__="…"}` names one as well, and `{__name__=~"…"}` matches some.
    """
    tokens = promql_tokens(expr)
    stack = []
    for kind, value in tokens:
        if kind == "op" and value in "({[":
            stack.append({"(": ")", "{": "}", "[": "]"}[value])
        elif kind == "op" and value in ")}]":
            if not stack or stack.pop() != value:
                raise PromQLError(f"unbalanced {value!r}")
    if stack:
        raise PromQLError(f"unbalanced: {stack[-1]!r} missing")
    metrics, name_regexes, functions = [], [], []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if (kind, value) == ("op", "{"):
            end = _close(tokens, i, "{", "}")
            inner = tokens[i + 1:end]
            for k in range(len(inner) - 2):
                if inner[k] == ("ident", "__name__") and inner[k + 2][0] == "string":
                    if inner[k + 1] == ("op", "="):
                        metrics.append(_unquote(inner[k + 2][1]))
                    elif inner[k + 1] == ("op", "=~"):
                        name_regexes.append(_unquote(inner[k + 2][1]))
            i = end + 1
        elif (kind, value) == ("op", "["):
            i = _close(tokens, i, "[", "]") + 1
        elif kind == "ident":
            word = value.lower()
            if word in GROUPING:
                i = _close(tokens, i + 1, "(", ")") + 1 if nxt == ("op", "(") else i + 1
            elif word in AGGREGATORS or word in KEYWORDS:
                i += 1
            elif nxt == ("op", "("):
                functions.append(value)
                i += 1
            else:
                metrics.append(value)
                i += 1
        else:
            i += 1
    return metrics, name_regexes, functions


def variables_in(text):
    """Template variables a string uses; `$1`-style label_replace references are not variables."""
    names = set()
    for m in VARIABLE.finditer(text):
        name = next(g for g in m.groups() if g)
        if not name.isdigit():
            names.add(name)
    return names


def check_promql(expr, series, defined):
    """Problems of one PromQL expression."""
    problems = []
    try:
        metrics, name_regexes, functions = promql_references(expr)
    except PromQLError as e:
        return [str(e)]
    for function in functions:
        if function not in FUNCTIONS:
            problems.append(f"unknown PromQL function {function}()")
    for metric in metrics:
        if metric not in series:
            if metric.startswith("tracewarden_") and metric in {f for f in series.values()}:
                problems.append(f"metric {metric} is a histogram: query {metric}_bucket, _sum or _count")
            else:
                problems.append(f"metric {metric} is not exported by tracewarden")
    for regex in name_regexes:
        try:
            if not any(re.fullmatch(regex, name) for name in series):
                problems.append(f"__name__=~{regex!r} matches no metric tracewarden exports")
        except re.error as e:
            problems.append(f"__name__=~{regex!r}: {e}")
    for name in sorted(variables_in(expr) - defined):
        if not name.startswith("__"):
            problems.append(f"template variable ${name} is not defined by the dashboard")
    return problems


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


def validate_dashboard(dashboard, validator, datasources, series):
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
    defined = {v["name"] for v in variables}
    checked = 0
    for variable in variables:
        name = f"variable ${variable['name']}"
        check_datasource(variable.get("datasource"), name)
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            for expr in variable_query_promql(query):
                checked += 1
                problems += [f"{name}: {p}" for p in check_promql(expr, series, defined)]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        name = f"annotation {annotation['name']!r}"
        if not annotation.get("builtIn"):
            check_datasource(annotation.get("datasource"), name)
        expr = annotation.get("expr") or annotation.get("target", {}).get("expr")
        if expr:
            checked += 1
            problems += [f"{name}: {p}" for p in check_promql(expr, series, defined)]
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
            checked += 1
            problems += [f"{name} query {target['refId']}: {p}"
                         for p in check_promql(target["expr"], series, defined)]
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
    return problems, checked


def validate_files(paths, families):
    """Problems of the dashboard files, each prefixed with its file name; and a summary line."""
    datasources = provisioned_datasources()
    validator = load_schema(datasources)
    series = exported_series(families)
    problems, expressions, panel_count = [], 0, 0
    for path in paths:
        try:
            dashboard = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path}: not JSON: {e}")
            continue
        found, checked = validate_dashboard(dashboard, validator, datasources, series)
        problems += [f"{Path(path).name}: {p}" for p in found]
        expressions += checked
        panel_count += sum(1 for _ in all_panels(dashboard.get("panels", [])))
    summary = (f"{len(paths)} dashboard(s), {panel_count} panels, {expressions} PromQL expressions, "
               f"{len(families)} metric families exported")
    return problems, summary


# --------------------------------------------------------------------------------------------------
# Self-test: the validator must reject what it exists to reject


SAMPLE_RUST = r'''
//! Docs mention `"tracewarden_in_a_comment_total", "help"` in a comment.
const FAMILIES: [FamilySpec; 2] = [
    FamilySpec { name: "tracewarden_sample_requests_total", help: "Requests.", kind: MetricType::COUNTER },
    FamilySpec { name: "tracewarden_sample_latency_seconds", help: "Latency.", kind: MetricType::HISTOGRAM },
];
fn topic() -> String { "tracewarden_sample_topic".into() }
fn new(r: &Registry) {
    let g = gauge(r, "tracewarden_sample_buffered", "Buffered.");
    let c = IntCounterVec::new(Opts::new("tracewarden_sample_events", "Events."), &["kind"]);
    let h = Histogram::with_opts(HistogramOpts::new("tracewarden_sample_wait_seconds", "Wait."));
    let s = r#"tracewarden_sample_raw_total", "not a registration"#;
    let q = '"';
}
#[cfg(test)]
#[allow(dead_code)]
mod tests {
    fn t() { let c = counter(r, "tracewarden_sample_test_only_total", "Only in tests."); }
}
#[cfg(test)]
mod more_tests;
'''
SAMPLE_FAMILIES = {
    "tracewarden_sample_requests_total": "counter",
    "tracewarden_sample_latency_seconds": "histogram",
    "tracewarden_sample_buffered": "other",
    "tracewarden_sample_events": "other",
    "tracewarden_sample_wait_seconds": "histogram",
}
PROMQL_CASES = [
    ('sum by (service, le) (rate(tracewarden_latency_seconds_bucket{service=~"$service", le!="+Inf"}'
     '[$__rate_interval]))', ["tracewarden_latency_seconds_bucket"]),
    ("histogram_quantile(0.99, sum without (instance) (rate(a_bucket[5m]))) > bool 0.5",
     ["a_bucket"]),
    ("a / on (service) group_left (team) b * ignoring(x) c or d unless e and f", list("abcdef")),
    ('{__name__="tracewarden_requests_total", service="x"} offset 1h', ["tracewarden_requests_total"]),
    ("max_over_time(rate(a[5m])[1h:1m]) @ start()", ["a"]),
    ('count_values("v", topk(3, a)) + quantile(0.9, b) - count(c) % -1e-3 ^ 0x1F', ["a", "b", "c"]),
    ('label_replace(label_join(a, "id", ":", "service", "env"), "t", "$1", "service", "(.*)")', ["a"]),
    ("SUM BY (x) (a) # a comment naming not_a_metric", ["a"]),
    ("1 - sum(rate(a[1h30m])) / sum(rate(b[5m] offset 1d))", ["a", "b"]),
    ("abs(a) + sort_desc(b) + vector(1) + time() + inf + nan", ["a", "b"]),
    ("a == bool b", ["a", "b"]),
]


def self_test():
    failures = []

    def expect(condition, what):
        if not condition:
            failures.append(what)

    # the Rust scanner
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "sample" / "more_tests").mkdir(parents=True)
        (src / "sample.rs").write_text(SAMPLE_RUST)
        (src / "sample" / "more_tests.rs").write_text('fn f() { gauge(r, "tracewarden_sample_in_test_file", "h"); }')
        (src / "sample" / "more_tests" / "deeper.rs").write_text('fn f() { gauge(r, "tracewarden_sample_deeper", "h"); }')
        found = exported_families(src)
    expect(found == SAMPLE_FAMILIES, f"Rust scanner: expected {SAMPLE_FAMILIES}, found {found}")
    series = exported_series(found)
    expect("tracewarden_sample_latency_seconds_bucket" in series and "tracewarden_sample_latency_seconds" not in series,
           "a histogram family exports _bucket/_sum/_count, not its bare name")
    real = exported_families()
    expect(len(real) >= 10 and "histogram" in real.values(),
           f"the sources of tracewarden should register metric families, histograms among them: {real}")

    # the PromQL reader
    for expr, expected in PROMQL_CASES:
        try:
            metrics, regexes, _ = promql_references(expr)
        except PromQLError as e:
            metrics = [f"error: {e}"]
        expect(sorted(metrics) == sorted(expected), f"PromQL {expr!r}: expected {expected}, read {metrics}")
    sample_series = {"a": "a", "tracewarden_x_bucket": "tracewarden_x", "tracewarden_x_count": "tracewarden_x"}
    for expr, message in [
        ("rate(tracewarden_x[5m])", "is a histogram"),
        ("rate(b[5m])", "metric b is not exported"),
        ("histogram_quantil(0.9, a)", "unknown PromQL function histogram_quantil()"),
        ('a{x="$undefined"}', "template variable $undefined is not defined"),
        ('{__name__=~"tracewarden_y.*"}', "matches no metric"),
        ("sum(a", "unbalanced"),
    ]:
        problems = check_promql(expr, sample_series, set())
        expect(any(message in p for p in problems), f"PromQL {expr!r} should fail with {message!r}: {problems}")
    expect(check_promql('sum(rate(a{x=~"$v"}[$__rate_interval]))', sample_series, {"v"}) == [],
           "a good expression passes")

    # whole dashboards: temporary copies, each with one mistake, must fail naming it
    originals = sorted(DASHBOARDS.glob("*.json"))
    expect(originals, f"no dashboards under {DASHBOARDS}")
    for original in originals:
        dashboard = json.loads(original.read_text())
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

        cases = [
            (set_expr, [f"panel {first['title']!r} (id {first['id']}) query", misspelt, "not exported"]),
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
                problems, _ = validate_files([bad], real)
                expect(problems and all(any(m in p for p in problems) for m in messages),
                       f"{original.name} with {change.__name__}: expected a failure naming {messages}, "
                       f"got {problems or 'none'}")

    if failures:
        print("validate-dashboards.py --self-test FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(f"validate-dashboards.py --self-test: ok ({len(PROMQL_CASES)} PromQL readings, "
          f"the Rust scanner, 8 broken copies of each of {len(originals)} dashboard(s) rejected)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true", help="check the validator against known-bad input")
    parser.add_argument("files", nargs="*", type=Path, help="dashboard files (default: every one provisioned)")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    paths = args.files or sorted(DASHBOARDS.glob("*.json"))
    if not paths:
        print(f"no dashboards under {DASHBOARDS}")
        return 1
    problems, summary = validate_files(paths, exported_families())
    if problems:
        print("Grafana dashboards are invalid:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"Grafana dashboards valid: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
