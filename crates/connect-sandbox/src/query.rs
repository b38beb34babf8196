//! Runs a collection query the way Connect's server does: parse the percent-decoded query
//! string as RQL, filter, search, order, page and select, and answer with a bare JSON array
//! and `Content-Range: items F-L/TOTAL`.
//!
//! Semantics follow Connect's server-side RQL library (django-rql), with one deliberate
//! difference: a filter the collection does not have is a 400 instead of being ignored, so a
//! typo in a test or in the pipeline cannot silently select everything.

use std::cmp::Ordering;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value as Json;

use super::error::{ApiError, codes};
use super::filters::{CollectionDef, FilterDef, Kind};
use connect_client::rql::{CmpOp, Expr, Field, ListOp, ParseError, Value, parse_query};

/// Page size limits.
#[derive(Debug, Clone, Copy)]
pub struct PagingLimits {
    pub default_limit: u64,
    pub max_limit: u64,
}

/// One page of a collection, ready to answer.
#[derive(Debug)]
pub struct PageAnswer {
    pub items: Vec<Json>,
    pub offset: u64,
    pub total: u64,
    /// Send the `Content-Range` header (a fault can remove it).
    pub content_range: bool,
}

impl PageAnswer {
    pub fn content_range(&self) -> String {
        let n = self.items.len() as u64;
        let last = if n == 0 {
            self.offset
        } else {
            self.offset + n - 1
        };
        format!("items {}-{}/{}", self.offset, last, self.total)
    }
}

impl IntoResponse for PageAnswer {
    fn into_response(self) -> Response {
        let range = self.content_range();
        let mut resp = (StatusCode::OK, axum::Json(Json::Array(self.items))).into_response();
        if self.content_range
            && let Ok(v) = HeaderValue::from_str(&range)
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        resp
    }
}

/// A parsed and checked query for one collection.
#[derive(Debug)]
pub struct CollectionQuery<'d> {
    def: &'d CollectionDef,
    filter: Option<Expr>,
    select: Vec<Field>,
    ordering: Vec<Field>,
    limit: u64,
    offset: u64,
}

impl<'d> CollectionQuery<'d> {
    /// Parses the raw (still percent-encoded) query string.
    pub fn parse(
        def: &'d CollectionDef,
        raw_query: Option<&str>,
        limits: PagingLimits,
    ) -> Result<CollectionQuery<'d>, ApiError> {
        let raw = raw_query.unwrap_or("");
        // The server decodes the whole string first, and `+` stays `+`.
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let parsed = parse_query(&decoded).map_err(parse_error)?;
        if let Some(filter) = &parsed.filter {
            check_expr(def, filter)?;
        }
        for f in &parsed.select {
            if !def.is_selectable(&f.prop) {
                return Err(rql_parse(format!("Bad select filter: {f}.")));
            }
        }
        if parsed.ordering.len() > 5 {
            return Err(rql_parse("Bad ordering filter: max allowed number is 5."));
        }
        for f in &parsed.ordering {
            if !def.filter(&f.prop).is_some_and(|d| d.ordering) {
                return Err(rql_parse(format!("Bad ordering filter: {}.", f.prop)));
            }
        }
        let limit = parsed.limit(limits.default_limit, limits.max_limit);
        let offset = if limit == 0 { 0 } else { parsed.offset() };
        Ok(CollectionQuery {
            def,
            filter: parsed.filter,
            select: parsed.select,
            ordering: parsed.ordering,
            limit,
            offset,
        })
    }

    /// Whether `object` matches the filter.
    pub fn matches(&self, object: &Json) -> bool {
        match &self.filter {
            None => true,
            Some(f) => eval(self.def, f, object),
        }
    }

    /// Filters, orders, pages and selects `objects`.
    pub fn run(&self, objects: impl IntoIterator<Item = Json>) -> PageAnswer {
        let mut matched: Vec<Json> = objects.into_iter().filter(|o| self.matches(o)).collect();
        if !self.ordering.is_empty() {
            matched.sort_by(|a, b| self.compare(a, b));
        }
        let total = matched.len() as u64;
        let items: Vec<Json> = if self.limit == 0 || self.offset >= total {
            Vec::new()
        } else {
            matched
                .into_iter()
                .skip(self.offset as usize)
                .take(self.limit as usize)
                .map(|o| self.apply_select(o))
                .collect()
        };
        PageAnswer {
            items,
            offset: self.offset,
            total,
            content_range: true,
        }
    }

    fn compare(&self, a: &Json, b: &Json) -> Ordering {
        for field in &self.ordering {
            let Some(def) = self.def.filter(&field.prop) else {
                continue;
            };
            let va = first_value(a, &def.path);
            let vb = first_value(b, &def.path);
            let ord = compare_values(def.kind, va, vb);
            let ord = if field.negated { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    fn apply_select(&self, mut object: Json) -> Json {
        for f in self.select.iter().filter(|f| f.negated) {
            remove_path(&mut object, &f.prop);
        }
        object
    }
}

fn rql_parse(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::RQL_PARSE, message)
}

fn parse_error(e: ParseError) -> ApiError {
    rql_parse(e.to_string())
}

fn lookup_error(filter: &str, lookup: &str, value: &str) -> ApiError {
    ApiError::bad_request(
        codes::RQL_LOOKUP,
        format!(
            "RQL Lookup error: filter {filter:?} does not support lookup {lookup:?} (value {value:?})."
        ),
    )
}

fn value_error(filter: &str, lookup: &str, value: &str, why: &str) -> ApiError {
    ApiError::bad_request(
        codes::RQL_VALUE,
        format!(
            "RQL Value error: {value:?} is not a valid value for filter {filter:?} with lookup {lookup:?}: {why}."
        ),
    )
}

fn value_text(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        Value::Null => "null()",
        Value::Empty => "empty()",
    }
}

/// Checks every comparison of the filter against the collection's filter table.
fn check_expr(def: &CollectionDef, expr: &Expr) -> Result<(), ApiError> {
    match expr {
        Expr::And(children) | Expr::Or(children) => {
            children.iter().try_for_each(|c| check_expr(def, c))
        }
        Expr::Not(inner) => check_expr(def, inner),
        Expr::Cmp { op, prop, value } if prop == "search" => match op {
            CmpOp::Eq => check_search_value(value),
            other => Err(rql_parse(format!("Bad search filter: {}.", other.name()))),
        },
        Expr::List { op, prop, values } if prop == "search" => match op {
            ListOp::In => values.iter().try_for_each(check_search_value),
            ListOp::Out => Err(rql_parse("Bad search filter: ne.")),
        },
        Expr::Cmp { op, prop, value } => {
            let f = known_filter(def, prop)?;
            check_cmp(f, *op, value)
        }
        Expr::List { op, prop, values } => {
            let f = known_filter(def, prop)?;
            if !f.lookups.list {
                let text = values.iter().map(value_text).collect::<Vec<_>>().join(",");
                return Err(lookup_error(f.name, op.name(), &format!("({text})")));
            }
            let item_op = match op {
                ListOp::In => CmpOp::Eq,
                ListOp::Out => CmpOp::Ne,
            };
            values.iter().try_for_each(|v| check_value(f, item_op, v))
        }
    }
}

fn check_search_value(value: &Value) -> Result<(), ApiError> {
    match value {
        Value::Text(t) => like_pattern(&wrap_search(t))
            .map(|_| ())
            .map_err(|why| value_error("search", "eq", t, why)),
        other => Err(value_error(
            "search",
            "eq",
            value_text(other),
            "search takes text",
        )),
    }
}

fn known_filter<'d>(def: &'d CollectionDef, prop: &str) -> Result<&'d FilterDef, ApiError> {
    def.filter(prop).ok_or_else(|| {
        ApiError::bad_request(
            codes::RQL_LOOKUP,
            format!(
                "RQL Lookup error: {prop:?} is not a filter of {}.",
                def.name
            ),
        )
    })
}

fn check_cmp(f: &FilterDef, op: CmpOp, value: &Value) -> Result<(), ApiError> {
    let allowed = match op {
        CmpOp::Eq => f.lookups.eq,
        CmpOp::Ne => f.lookups.ne,
        CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le => f.lookups.order,
        CmpOp::Like | CmpOp::Ilike => f.lookups.like,
    };
    if !allowed {
        return Err(lookup_error(f.name, op.name(), value_text(value)));
    }
    check_value(f, op, value)
}

fn check_value(f: &FilterDef, op: CmpOp, value: &Value) -> Result<(), ApiError> {
    let text = match value {
        Value::Null => {
            return if f.lookups.null && matches!(op, CmpOp::Eq | CmpOp::Ne) {
                Ok(())
            } else {
                Err(lookup_error(f.name, op.name(), "null()"))
            };
        }
        Value::Empty => {
            return if f.kind == Kind::Text && matches!(op, CmpOp::Eq | CmpOp::Ne) {
                Ok(())
            } else {
                Err(lookup_error(f.name, op.name(), "empty()"))
            };
        }
        Value::Text(t) => t,
    };
    if matches!(op, CmpOp::Like | CmpOp::Ilike) {
        return like_pattern(text)
            .map(|_| ())
            .map_err(|why| value_error(f.name, op.name(), text, why));
    }
    match f.kind {
        Kind::Text => match f.choices {
            Some(choices) if !choices.contains(&text.as_str()) => Err(value_error(
                f.name,
                op.name(),
                text,
                &format!("expected one of {}", choices.join(", ")),
            )),
            _ => Ok(()),
        },
        Kind::Integer => parse_int(text)
            .map(|_| ())
            .ok_or_else(|| value_error(f.name, op.name(), text, "not an integer")),
        Kind::Boolean => match text.as_str() {
            "true" | "false" => Ok(()),
            _ => Err(value_error(
                f.name,
                op.name(),
                text,
                "expected true or false",
            )),
        },
        Kind::DateTime => parse_datetime(text)
            .map(|_| ())
            .ok_or_else(|| value_error(f.name, op.name(), text, "not a date or date-time")),
    }
}

/// Python's `int()`: optional sign, digits, single underscores between digits.
fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Dates and date-times as Connect accepts them in queries and workbooks: RFC 3339, ISO
/// without offset (read as UTC), a space instead of `T`, an unpadded hour, optional seconds
/// and fraction, or a date alone (midnight UTC).
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

/// A `like` pattern: literal runs separated by `*`. `\*` is a literal star, `\\` a literal
/// backslash; `**` is refused as the server refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LikePattern {
    /// Literal runs; a star stands between each two.
    parts: Vec<String>,
}

fn like_pattern(text: &str) -> Result<LikePattern, &'static str> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars().peekable();
    let mut prev_star = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*') | Some('\\')) => {
                let next = chars.next().unwrap_or('\\');
                if let Some(last) = parts.last_mut() {
                    last.push(next);
                }
                prev_star = false;
            }
            '*' => {
                if prev_star {
                    return Err("'**' is not a valid pattern");
                }
                parts.push(String::new());
                prev_star = true;
            }
            other => {
                if let Some(last) = parts.last_mut() {
                    last.push(other);
                }
                prev_star = false;
            }
        }
    }
    Ok(LikePattern { parts })
}

impl LikePattern {
    fn matches(&self, text: &str) -> bool {
        let n = self.parts.len();
        if n == 1 {
            return text == self.parts[0];
        }
        let first = &self.parts[0];
        let last = &self.parts[n - 1];
        if !text.starts_with(first.as_str()) {
            return false;
        }
        let mut rest = &text[first.len()..];
        if rest.len() < last.len() || !rest.ends_with(last.as_str()) {
            return false;
        }
        rest = &rest[..rest.len() - last.len()];
        for middle in &self.parts[1..n - 1] {
            match rest.find(middle.as_str()) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

/// A search term as the server applies it: `*term*`, a star added where the term has none. A
/// trailing lone backslash is a literal backslash, not an escape of the added star.
fn wrap_search(term: &str) -> String {
    let trailing_backslashes = term.chars().rev().take_while(|c| *c == '\\').count();
    let ends_with_star = term.ends_with('*') && {
        let before = &term[..term.len() - 1];
        before.chars().rev().take_while(|c| *c == '\\').count() % 2 == 0
    };
    let mut p = String::with_capacity(term.len() + 3);
    if !term.starts_with('*') {
        p.push('*');
    }
    p.push_str(term);
    if !ends_with_star {
        if trailing_backslashes % 2 == 1 {
            p.push('\\');
        }
        p.push('*');
    }
    p
}

/// All values at a dotted path; arrays along the way contribute each element.
pub fn values_at<'a>(object: &'a Json, path: &str) -> Vec<&'a Json> {
    let mut current = vec![object];
    for segment in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v {
                Json::Object(map) => {
                    if let Some(child) = map.get(segment) {
                        match child {
                            Json::Array(items) => next.extend(items.iter()),
                            other => next.push(other),
                        }
                    }
                }
                Json::Array(items) => {
                    for item in items {
                        if let Some(child) = item.get(segment) {
                            next.push(child);
                        }
                    }
                }
                _ => {}
            }
        }
        current = next;
    }
    current.retain(|v| !v.is_null());
    current
}

fn first_value<'a>(object: &'a Json, path: &str) -> Option<&'a Json> {
    values_at(object, path).into_iter().next()
}

fn remove_path(object: &mut Json, path: &str) {
    match path.split_once('.') {
        None => {
            if let Json::Object(map) = object {
                map.remove(path);
            }
        }
        Some((head, rest)) => {
            if let Some(child) = object.get_mut(head) {
                match child {
                    Json::Array(items) => items.iter_mut().for_each(|i| remove_path(i, rest)),
                    other => remove_path(other, rest),
                }
            }
        }
    }
}

fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn compare_values(kind: Kind, a: Option<&Json>, b: Option<&Json>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let (ta, tb) = (
                json_text(a).unwrap_or_default(),
                json_text(b).unwrap_or_default(),
            );
            match kind {
                Kind::Integer => parse_int(&ta).cmp(&parse_int(&tb)),
                Kind::DateTime => parse_datetime(&ta).cmp(&parse_datetime(&tb)),
                Kind::Boolean | Kind::Text => ta.cmp(&tb),
            }
        }
    }
}

/// Whether a field value equals a query value, compared as the filter's type.
fn value_equals(f: &FilterDef, field: &Json, query: &str) -> bool {
    let Some(text) = json_text(field) else {
        return false;
    };
    match f.kind {
        Kind::Text | Kind::Boolean => text == query,
        Kind::Integer => parse_int(&text).is_some() && parse_int(&text) == parse_int(query),
        Kind::DateTime => {
            parse_datetime(&text).is_some() && parse_datetime(&text) == parse_datetime(query)
        }
    }
}

fn is_null_at(f: &FilterDef, values: &[&Json]) -> bool {
    values.is_empty()
        || values
            .iter()
            .all(|v| f.null_sentinel.is_some_and(|s| v.as_str() == Some(s)))
}

fn eval(def: &CollectionDef, expr: &Expr, object: &Json) -> bool {
    match expr {
        Expr::And(children) => children.iter().all(|c| eval(def, c, object)),
        Expr::Or(children) => children.iter().any(|c| eval(def, c, object)),
        Expr::Not(inner) => !eval(def, inner, object),
        Expr::Cmp { prop, value, .. } if prop == "search" => {
            search_matches(def, value_text(value), object)
        }
        Expr::List { prop, values, .. } if prop == "search" => values
            .iter()
            .any(|v| search_matches(def, value_text(v), object)),
        Expr::Cmp { op, prop, value } => {
            let Some(f) = def.filter(prop) else {
                return false;
            };
            let values = values_at(object, &f.path);
            cmp_matches(f, *op, value, &values)
        }
        Expr::List { op, prop, values } => {
            let Some(f) = def.filter(prop) else {
                return false;
            };
            let field_values = values_at(object, &f.path);
            match op {
                ListOp::In => values
                    .iter()
                    .any(|v| cmp_matches(f, CmpOp::Eq, v, &field_values)),
                ListOp::Out => values
                    .iter()
                    .all(|v| cmp_matches(f, CmpOp::Ne, v, &field_values)),
            }
        }
    }
}

fn cmp_matches(f: &FilterDef, op: CmpOp, value: &Value, values: &[&Json]) -> bool {
    match (op, value) {
        (CmpOp::Eq, Value::Null) => is_null_at(f, values),
        (CmpOp::Ne, Value::Null) => !is_null_at(f, values),
        (CmpOp::Eq, Value::Empty) => values.iter().any(|v| v.as_str() == Some("")),
        (CmpOp::Ne, Value::Empty) => !values.iter().any(|v| v.as_str() == Some("")),
        (_, Value::Null | Value::Empty) => false,
        (CmpOp::Eq, Value::Text(q)) => values.iter().any(|v| value_equals(f, v, q)),
        // Like the server's exclude(): rows without the value match `ne` too.
        (CmpOp::Ne, Value::Text(q)) => !values.iter().any(|v| value_equals(f, v, q)),
        (CmpOp::Like | CmpOp::Ilike, Value::Text(q)) => {
            let insensitive = op == CmpOp::Ilike;
            let Ok(pattern) = like_pattern(&if insensitive {
                q.to_lowercase()
            } else {
                q.clone()
            }) else {
                return false;
            };
            values.iter().any(|v| {
                json_text(v).is_some_and(|t| {
                    pattern.matches(&if insensitive { t.to_lowercase() } else { t })
                })
            })
        }
        (CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le, Value::Text(q)) => {
            let query = Json::String(q.clone());
            values.iter().any(|v| {
                let ord = compare_values(f.kind, Some(v), Some(&query));
                match op {
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Ge => ord != Ordering::Less,
                    CmpOp::Lt => ord == Ordering::Less,
                    _ => ord != Ordering::Greater,
                }
            })
        }
    }
}

fn search_matches(def: &CollectionDef, term: &str, object: &Json) -> bool {
    if term.is_empty() {
        return true;
    }
    let Ok(pattern) = like_pattern(&wrap_search(&term.to_lowercase())) else {
        return false;
    };
    def.search_fields().any(|f| {
        values_at(object, &f.path)
            .iter()
            .any(|v| json_text(v).is_some_and(|t| pattern.matches(&t.to_lowercase())))
    })
}

#[cfg(test)]
mod tests {
    use super::super::filters::{ASSETS_DEF, USAGE_FILES_DEF};
    use super::*;
    use serde_json::json;

    const LIMITS: PagingLimits = PagingLimits {
        default_limit: 100,
        max_limit: 1000,
    };

    fn assets() -> Vec<Json> {
        vec![
            json!({"id": "AS-1", "status": "active", "external_id": "cust-1", "product": {"id": "PRD-1", "name": "Cloud Storage"},
                   "contract": {"id": "CRD-1"}, "marketplace": {"id": "MP-1", "name": "Europe"}, "items": [{"id": "I1"}],
                   "params": [{"id": "tenant", "value": "t-1"}], "events": {"created": {"at": "2024-01-10T10:00:00+00:00"}}}),
            json!({"id": "AS-2", "status": "terminated", "external_id": null, "product": {"id": "PRD-2", "name": "Compute"},
                   "contract": {"id": "CRD-00000-00000-00000"}, "marketplace": {"id": "MP-2", "name": "US"}, "items": [],
                   "params": [{"id": "tenant", "value": "t-2"}], "events": {"created": {"at": "2024-03-01T00:00:00+00:00"}}}),
            json!({"id": "AS-3", "status": "active", "external_id": "a*b", "product": {"id": "PRD-1", "name": "Cloud Storage"},
                   "contract": {"id": "CRD-2"}, "marketplace": {"id": "MP-1", "name": "Europe"}, "items": [],
                   "params": [], "events": {"created": {"at": "2024-02-01T00:00:00+00:00"}}}),
        ]
    }

    fn ids(q: &str) -> Vec<String> {
        let cq = CollectionQuery::parse(&ASSETS_DEF, Some(q), LIMITS)
            .unwrap_or_else(|e| panic!("{q}: {e:?}"));
        cq.run(assets())
            .items
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn err(q: &str) -> ApiError {
        CollectionQuery::parse(&ASSETS_DEF, Some(q), LIMITS).expect_err(q)
    }

    #[test]
    fn filters_like_connect() {
        assert_eq!(ids("eq(status,active)"), ["AS-1", "AS-3"]);
        assert_eq!(ids("in(product.id,(PRD-2,PRD-9))"), ["AS-2"]);
        assert_eq!(ids("out(product.id,(PRD-2))"), ["AS-1", "AS-3"]);
        assert_eq!(ids("eq(contract.id,null())"), ["AS-2"]);
        assert_eq!(ids("ne(contract.id,null())"), ["AS-1", "AS-3"]);
        assert_eq!(ids("eq(external_id,null())"), ["AS-2"]);
        assert_eq!(ids("ne(external_id,cust-1)"), ["AS-2", "AS-3"]);
        assert_eq!(ids("eq(params.value,t-2)"), ["AS-2"]);
        assert_eq!(ids("ilike(product.name,*STOR*)"), ["AS-1", "AS-3"]);
        assert_eq!(ids("like(product.name,*STOR*)"), Vec::<String>::new());
        assert_eq!(ids("like(external_id,a\\*b)"), ["AS-3"]);
        assert_eq!(ids("like(external_id,cust*)"), ["AS-1"]);
        assert_eq!(ids("gt(created,2024-01-31)"), ["AS-2", "AS-3"]);
        assert_eq!(ids("lt(created,2024-01-10T10:00:01Z)"), ["AS-1"]);
        assert_eq!(
            ids("(status=terminated|product.id=PRD-1)&ne(id,AS-3)"),
            ["AS-1", "AS-2"]
        );
        assert_eq!(ids("search=compute"), ["AS-2"]);
        assert_eq!(ids("ordering(-created)"), ["AS-2", "AS-3", "AS-1"]);
        assert_eq!(
            ids("ordering(marketplace.name,-created)"),
            ["AS-3", "AS-1", "AS-2"]
        );
    }

    #[test]
    fn pages_and_selects() {
        let cq = CollectionQuery::parse(
            &ASSETS_DEF,
            Some("select(-items,-params)&limit=1&offset=1"),
            LIMITS,
        )
        .expect("parses");
        let page = cq.run(assets());
        assert_eq!(page.content_range(), "items 1-1/3");
        assert!(page.items[0].get("items").is_none());
        assert!(page.items[0].get("params").is_none());
        assert!(page.items[0].get("product").is_some());

        for (q, range, n) in [
            ("limit=0", "items 0-0/3", 0),
            ("limit=0&offset=2", "items 0-0/3", 0),
            ("offset=3", "items 3-3/3", 0),
            ("offset=10&limit=5", "items 10-10/3", 0),
            ("eq(id,nope)", "items 0-0/0", 0),
            ("eq(id,nope)&offset=5", "items 5-5/0", 0),
            ("limit=2&offset=2", "items 2-2/3", 1),
            ("", "items 0-2/3", 3),
        ] {
            let page = CollectionQuery::parse(&ASSETS_DEF, Some(q), LIMITS)
                .expect("parses")
                .run(assets());
            assert_eq!(
                (page.content_range().as_str(), page.items.len()),
                (range, n),
                "{q}"
            );
        }
    }

    #[test]
    fn refuses_what_the_collection_does_not_have() {
        let e = err("eq(nosuch,1)");
        assert_eq!((e.status.as_u16(), e.code), (400, codes::RQL_LOOKUP));
        assert!(e.errors[0].contains("nosuch"), "{:?}", e.errors);
        assert_eq!(err("gt(status,active)").code, codes::RQL_LOOKUP);
        assert_eq!(err("lt(external_id,x)").code, codes::RQL_LOOKUP);
        assert_eq!(err("eq(status,activ)").code, codes::RQL_VALUE);
        assert_eq!(err("gt(created,yesterday)").code, codes::RQL_VALUE);
        assert_eq!(err("like(id,a**b)").code, codes::RQL_VALUE);
        assert_eq!(err("eq(product.name,null())").code, codes::RQL_LOOKUP);
        assert_eq!(err("ordering(id)").code, codes::RQL_PARSE);
        assert_eq!(err("select(-nosuch)").code, codes::RQL_PARSE);
        assert_eq!(err("ne(search,x)").code, codes::RQL_PARSE);
        assert_eq!(err("eq(a, b)").code, codes::RQL_PARSE);
        assert_eq!(err("limit=1&limit=2").code, codes::RQL_PARSE);
    }

    #[test]
    fn percent_decoding_keeps_plus() {
        let files = vec![
            json!({"id": "UF-1", "name": "a+b c", "status": "draft", "events": {"created": {"at": "2024-01-01T00:00:00+00:00"}}}),
        ];
        let q = CollectionQuery::parse(&USAGE_FILES_DEF, Some("eq(name,%22a+b%20c%22)"), LIMITS)
            .expect("parses");
        assert_eq!(q.run(files.clone()).items.len(), 1);
        let q = CollectionQuery::parse(
            &USAGE_FILES_DEF,
            Some("ge(created.at,2024-01-01T00:00:00+00:00)"),
            LIMITS,
        )
        .expect("parses");
        assert_eq!(q.run(files).items.len(), 1);
    }

    #[test]
    fn datetimes_in_every_written_form() {
        let at = |s: &str| parse_datetime(s).map(|d| d.to_rfc3339());
        let nine = Some("2024-04-30T09:00:00+00:00".to_owned());
        for s in [
            "2024-04-30 09:00:00",
            "2024-04-30 9:00:00",
            "2024-04-30T09:00:00",
            "2024-04-30T09:00:00Z",
            "2024-04-30T11:00:00+02:00",
            "2024-04-30 09:00",
            " 2024-04-30T09:00:00.000 ",
        ] {
            assert_eq!(at(s), nine, "{s}");
        }
        assert_eq!(
            at("2024-04-30"),
            Some("2024-04-30T00:00:00+00:00".to_owned())
        );
        assert_eq!(
            at("2024-04-30 09:00:00.25").as_deref(),
            Some("2024-04-30T09:00:00.250+00:00")
        );
        for bad in ["yesterday", "2024-02-30", "30/04/2024", ""] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn search_terms_are_wrapped_in_stars() {
        assert_eq!(wrap_search("abc"), "*abc*");
        assert_eq!(wrap_search("*abc"), "*abc*");
        assert_eq!(wrap_search("abc*"), "*abc*");
        assert_eq!(wrap_search("abc\\*"), "*abc\\**", "an escaped star is text");
        assert_eq!(
            wrap_search("a\\"),
            "*a\\\\*",
            "a trailing backslash is text"
        );
        assert_eq!(wrap_search("a\\\\"), "*a\\\\*");
        let p = like_pattern(&wrap_search("a\\")).expect("valid");
        assert!(p.matches("report a\\"));
        assert!(p.matches("a\\b"));
        assert!(!p.matches("a"));
    }

    #[test]
    fn like_patterns() {
        let p = |s: &str| like_pattern(s).expect("valid pattern");
        assert!(p("abc").matches("abc"));
        assert!(!p("abc").matches("abcd"));
        assert!(p("a*").matches("abcd"));
        assert!(p("*d").matches("abcd"));
        assert!(p("*b*").matches("abcd"));
        assert!(p("a*c*").matches("abcd"));
        assert!(!p("a*c").matches("abcd"));
        assert!(p("a*").matches("a"));
        assert!(p("\\*x").matches("*x"));
        assert!(!p("\\*x").matches("yx"));
        assert!(p("a\\\\b").matches("a\\b"));
        assert!(p("a?b").matches("a?b"));
        assert!(!p("a?b").matches("axb"));
        assert!(p("*").matches(""));
        assert!(!p("ab*ba").matches("aba"));
        assert!(like_pattern("a**").is_err());
    }
}
