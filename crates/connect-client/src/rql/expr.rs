//! The RQL expression tree, its builder and its renderer.
//!
//! The tree is shared by both sides of the wire: the REST client builds and renders it, the
//! sandbox parses query strings back into it. Rendering follows what Connect's own Python client
//! produces (`in(type,(distribution))`, `and(...)`, `eq(external_id,null())`), with one
//! difference on purpose: values that the server grammar would not read back as the same text
//! are quoted, so a rendered query is never ambiguous.

use std::fmt;
use std::ops::{BitAnd, BitOr, Not};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};

/// A comparison operator taking one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `*` matches any run of characters, `?` one character; case-sensitive.
    Like,
    /// As `Like`, case-insensitive.
    Ilike,
}

impl CmpOp {
    pub const ALL: [CmpOp; 8] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Gt,
        CmpOp::Ge,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Like,
        CmpOp::Ilike,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Like => "like",
            CmpOp::Ilike => "ilike",
        }
    }

    pub fn from_name(name: &str) -> Option<CmpOp> {
        CmpOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// A membership operator taking a list of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListOp {
    In,
    Out,
}

impl ListOp {
    pub fn name(self) -> &'static str {
        match self {
            ListOp::In => "in",
            ListOp::Out => "out",
        }
    }

    pub fn from_name(name: &str) -> Option<ListOp> {
        match name {
            "in" => Some(ListOp::In),
            "out" => Some(ListOp::Out),
            _ => None,
        }
    }
}

/// A value on the right-hand side of an operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Plain text. Numbers, booleans and dates are sent as text too: the server types values by
    /// the field they are compared with.
    Text(String),
    /// `null()`: the field is null (or holds the collection's null sentinel id).
    Null,
    /// `empty()`: the field is the empty string.
    Empty,
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Text(if v { "true" } else { "false" }.to_owned())
    }
}
macro_rules! value_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Text(v.to_string()) }
        }
    )*};
}
value_from_number!(i32, i64, u32, u64, usize, f64);
impl From<NaiveDate> for Value {
    fn from(v: NaiveDate) -> Self {
        Value::Text(v.format("%Y-%m-%d").to_string())
    }
}
impl From<NaiveDateTime> for Value {
    fn from(v: NaiveDateTime) -> Self {
        Value::Text(v.format("%Y-%m-%dT%H:%M:%S").to_string())
    }
}
impl<Tz: TimeZone> From<DateTime<Tz>> for Value
where
    Tz::Offset: fmt::Display,
{
    fn from(v: DateTime<Tz>) -> Self {
        Value::Text(v.to_rfc3339())
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    Cmp {
        op: CmpOp,
        prop: String,
        value: Value,
    },
    List {
        op: ListOp,
        prop: String,
        values: Vec<Value>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    pub fn cmp(op: CmpOp, prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::Cmp {
            op,
            prop: prop.into(),
            value: value.into(),
        }
    }
    pub fn eq(prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::cmp(CmpOp::Eq, prop, value)
    }
    pub fn ne(prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::cmp(CmpOp::Ne, prop, value)
    }
    pub fn gt(prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::cmp(CmpOp::Gt, prop, value)
    }
    pub fn ge(prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::cmp(CmpOp::Ge, prop, value)
    }
    pub fn lt(prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::cmp(CmpOp::Lt, prop, value)
    }
    pub fn le(prop: impl Into<String>, value: impl Into<Value>) -> Expr {
        Expr::cmp(CmpOp::Le, prop, value)
    }
    /// `pattern` is sent as given: `*` and `?` are wildcards. Use [`escape_like`] for literal
    /// text inside a pattern.
    pub fn like(prop: impl Into<String>, pattern: impl Into<String>) -> Expr {
        Expr::cmp(CmpOp::Like, prop, Value::Text(pattern.into()))
    }
    pub fn ilike(prop: impl Into<String>, pattern: impl Into<String>) -> Expr {
        Expr::cmp(CmpOp::Ilike, prop, Value::Text(pattern.into()))
    }
    pub fn is_null(prop: impl Into<String>) -> Expr {
        Expr::cmp(CmpOp::Eq, prop, Value::Null)
    }
    pub fn not_null(prop: impl Into<String>) -> Expr {
        Expr::cmp(CmpOp::Ne, prop, Value::Null)
    }
    pub fn is_empty(prop: impl Into<String>) -> Expr {
        Expr::cmp(CmpOp::Eq, prop, Value::Empty)
    }
    pub fn in_<V: Into<Value>>(
        prop: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Expr {
        Expr::List {
            op: ListOp::In,
            prop: prop.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
    pub fn out<V: Into<Value>>(
        prop: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Expr {
        Expr::List {
            op: ListOp::Out,
            prop: prop.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// `and(...)` of the given expressions, flattening nested `and`s and dropping exact
    /// duplicates. One child is returned as itself.
    pub fn and(children: impl IntoIterator<Item = Expr>) -> Expr {
        Expr::combine(children, true)
    }

    /// `or(...)`, flattened and de-duplicated like [`Expr::and`].
    pub fn or(children: impl IntoIterator<Item = Expr>) -> Expr {
        Expr::combine(children, false)
    }

    fn combine(children: impl IntoIterator<Item = Expr>, is_and: bool) -> Expr {
        let mut flat: Vec<Expr> = Vec::new();
        for child in children {
            let nested = match child {
                Expr::And(inner) if is_and => inner,
                Expr::Or(inner) if !is_and => inner,
                other => vec![other],
            };
            for e in nested {
                if !flat.contains(&e) {
                    flat.push(e);
                }
            }
        }
        if flat.len() == 1 {
            return flat.pop().unwrap_or_else(|| Expr::And(Vec::new()));
        }
        if is_and {
            Expr::And(flat)
        } else {
            Expr::Or(flat)
        }
    }

    /// The negation of this expression in the form the server grammar accepts: `not()` there
    /// takes one comparison only, so negations of `and`/`or` are pushed inward (De Morgan) and
    /// a double negation cancels. (Connect's Python client renders `not(and(...))`, which the
    /// server's parser rejects.)
    pub fn negate(self) -> Expr {
        match self {
            Expr::Not(inner) => *inner,
            Expr::And(children) => Expr::or(children.into_iter().map(Expr::negate)),
            Expr::Or(children) => Expr::and(children.into_iter().map(Expr::negate)),
            simple => Expr::Not(Box::new(simple)),
        }
    }

    /// Renders the expression as RQL text (not percent-encoded).
    pub fn render(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        self.render_into(&mut out)?;
        Ok(out)
    }

    fn render_into(&self, out: &mut String) -> Result<(), RenderError> {
        match self {
            Expr::Cmp { op, prop, value } => {
                check_filter_prop(prop)?;
                out.push_str(op.name());
                out.push('(');
                out.push_str(prop);
                out.push(',');
                render_value(value, out)?;
                out.push(')');
            }
            Expr::List { op, prop, values } => {
                check_filter_prop(prop)?;
                if values.is_empty() {
                    return Err(RenderError::EmptyList { prop: prop.clone() });
                }
                out.push_str(op.name());
                out.push('(');
                out.push_str(prop);
                out.push_str(",(");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render_value(v, out)?;
                }
                out.push_str("))");
            }
            Expr::And(children) | Expr::Or(children) => {
                match children.as_slice() {
                    [] => return Err(RenderError::EmptyGroup),
                    // The grammar wants two or more operands.
                    [only] => return only.render_into(out),
                    _ => {}
                }
                out.push_str(if matches!(self, Expr::And(_)) {
                    "and("
                } else {
                    "or("
                });
                for (i, c) in children.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    c.render_into(out)?;
                }
                out.push(')');
            }
            Expr::Not(inner) => match inner.as_ref() {
                Expr::Cmp { .. } | Expr::List { .. } => {
                    out.push_str("not(");
                    inner.render_into(out)?;
                    out.push(')');
                }
                compound => compound.clone().negate().render_into(out)?,
            },
        }
        Ok(())
    }
}

impl BitAnd for Expr {
    type Output = Expr;
    fn bitand(self, rhs: Expr) -> Expr {
        Expr::and([self, rhs])
    }
}

impl BitOr for Expr {
    type Output = Expr;
    fn bitor(self, rhs: Expr) -> Expr {
        Expr::or([self, rhs])
    }
}

impl Not for Expr {
    type Output = Expr;
    fn not(self) -> Expr {
        self.negate()
    }
}

/// Why an expression cannot be rendered without ambiguity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "RQL property {prop:?} is not a valid name (letters, digits, '_', '-', '.'; starting with a letter)"
    )]
    BadProperty { prop: String },
    #[error(
        "RQL property {prop:?} cannot be filtered on: the server reads it as paging or free-text search"
    )]
    ReservedProperty { prop: String },
    #[error("RQL list for {prop:?} is empty; the server grammar has no empty list")]
    EmptyList { prop: String },
    #[error("RQL and()/or() needs at least one operand")]
    EmptyGroup,
    #[error(
        "RQL value {value:?} contains both quote characters; the server grammar cannot read it back"
    )]
    Unquotable { value: String },
}

/// True when `prop` is a property name the server grammar accepts: a letter, then letters,
/// digits, `_`, `-` or `.`.
pub fn is_valid_prop(prop: &str) -> bool {
    let mut chars = prop.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Names the server takes out of the filter: `limit` and `offset` page, `search` searches.
pub const RESERVED_PROPS: [&str; 3] = ["limit", "offset", "search"];

fn check_filter_prop(prop: &str) -> Result<(), RenderError> {
    if RESERVED_PROPS.contains(&prop) {
        return Err(RenderError::ReservedProperty {
            prop: prop.to_owned(),
        });
    }
    check_prop(prop)
}

fn check_prop(prop: &str) -> Result<(), RenderError> {
    if is_valid_prop(prop) {
        Ok(())
    } else {
        Err(RenderError::BadProperty {
            prop: prop.to_owned(),
        })
    }
}

/// True when `text` can be sent unquoted and is read back by the server as the same text.
/// ASCII only, so that what the server reads never depends on its Unicode tables; never `t`,
/// the grammar's tuple keyword.
pub fn is_bare_value(text: &str) -> bool {
    if text == "t" {
        return false;
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*' | '+') => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '+' | '@' | '*'))
}

fn render_value(value: &Value, out: &mut String) -> Result<(), RenderError> {
    match value {
        Value::Null => out.push_str("null()"),
        Value::Empty => out.push_str("empty()"),
        Value::Text(t) if is_bare_value(t) => out.push_str(t),
        Value::Text(t) => {
            let quote = if !t.contains('"') {
                '"'
            } else if !t.contains('\'') {
                '\''
            } else {
                return Err(RenderError::Unquotable { value: t.clone() });
            };
            out.push(quote);
            out.push_str(t);
            out.push(quote);
        }
    }
    Ok(())
}

/// Escapes `*` and `\` so that `text` matches literally inside a `like`/`ilike` pattern (the
/// server's only wildcard is `*`; `?`, `_` and `%` are literal there).
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A field in `select(...)` or `ordering(...)`: a property, possibly negated (`-items` removes
/// a field from the output; `-created` sorts descending).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub prop: String,
    pub negated: bool,
}

impl Field {
    pub fn parse(text: &str) -> Field {
        match text.strip_prefix('-') {
            Some(rest) => Field {
                prop: rest.to_owned(),
                negated: true,
            },
            None => Field {
                prop: text.strip_prefix('+').unwrap_or(text).to_owned(),
                negated: false,
            },
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("-")?;
        }
        f.write_str(&self.prop)
    }
}

/// A whole collection query: filter, `select`, `ordering` and free-text `search`. Paging
/// (`limit`, `offset`) is added by the collection that sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub filter: Option<Expr>,
    pub select: Vec<Field>,
    pub ordering: Vec<Field>,
    pub search: Option<String>,
}

impl Query {
    pub fn new() -> Query {
        Query::default()
    }

    /// Adds `expr` to the filter (AND).
    pub fn filter(mut self, expr: Expr) -> Query {
        self.filter = Some(match self.filter.take() {
            Some(existing) => existing & expr,
            None => expr,
        });
        self
    }

    pub fn select<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Query {
        self.select
            .extend(fields.into_iter().map(|f| Field::parse(f.as_ref())));
        self
    }

    pub fn order_by<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Query {
        self.ordering
            .extend(fields.into_iter().map(|f| Field::parse(f.as_ref())));
        self
    }

    pub fn search(mut self, text: impl Into<String>) -> Query {
        self.search = Some(text.into());
        self
    }

    /// The RQL terms joined by `&`, in the order Connect's Python client uses: `select`, the
    /// filter, `ordering`. Not percent-encoded and without `search` (which is a plain
    /// parameter).
    pub fn render(&self) -> Result<String, RenderError> {
        let mut terms: Vec<String> = Vec::new();
        for (name, fields) in [("select", &self.select)] {
            if !fields.is_empty() {
                terms.push(render_fields(name, fields)?);
            }
        }
        if let Some(filter) = &self.filter {
            terms.push(filter.render()?);
        }
        if !self.ordering.is_empty() {
            terms.push(render_fields("ordering", &self.ordering)?);
        }
        Ok(terms.join("&"))
    }

    /// The query string to send (without the leading `?`): RQL terms percent-encoded, then
    /// `limit`, `offset` and `search` as plain parameters.
    pub fn to_query_string(&self, limit: u64, offset: u64) -> Result<String, RenderError> {
        let mut qs = encode_query_component(&self.render()?);
        if !qs.is_empty() {
            qs.push('&');
        }
        qs.push_str(&format!("limit={limit}&offset={offset}"));
        // `search` is an RQL term on the server (`search=<value>`), so its value is rendered
        // like any other; an empty search means no search.
        if let Some(search) = self.search.as_deref().filter(|s| !s.is_empty()) {
            let mut term = String::from("search=");
            render_value(&Value::Text(search.to_owned()), &mut term)?;
            qs.push('&');
            qs.push_str(&encode_query_component(&term));
        }
        Ok(qs)
    }
}

fn render_fields(name: &str, fields: &[Field]) -> Result<String, RenderError> {
    let mut out = format!("{name}(");
    for (i, f) in fields.iter().enumerate() {
        check_prop(&f.prop)?;
        if i > 0 {
            out.push(',');
        }
        out.push_str(&f.to_string());
    }
    out.push(')');
    Ok(out)
}

/// Characters escaped in a query string. RQL punctuation (`(`, `)`, `,`, `*`, `=`, `&` between
/// terms) stays literal like Connect's clients send it; everything that a proxy or the server's
/// URL decoding could change is escaped. `&` never appears in RQL text outside a quoted value
/// except between top-level terms, so [`Query::render`] output is encoded term by term.
const QUERY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'^')
    .add(b'\'')
    .add(b'\\')
    .add(b';')
    .add(b'/')
    .add(b'?');

/// Percent-encodes RQL text for a URL query string. `&` is kept only where it separates
/// top-level terms; inside quoted values it is escaped so that no proxy splits the value.
pub fn encode_query_component(rql: &str) -> String {
    let mut out = String::with_capacity(rql.len());
    let mut quote: Option<char> = None;
    let mut buf = [0u8; 4];
    for c in rql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => {}
        }
        let escape_amp = c == '&' && (quote.is_some());
        if escape_amp || c == '=' && quote.is_some() {
            out.push_str(if c == '&' { "%26" } else { "%3D" });
            continue;
        }
        let s: &str = c.encode_utf8(&mut buf);
        out.extend(percent_encoding::utf8_percent_encode(s, QUERY_ESCAPES));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn r(e: Expr) -> String {
        e.render().expect("renders")
    }

    /// The reference's table of renderings by Connect's Python client (section 3.2).
    #[test]
    fn renders_like_the_reference_examples() {
        assert_eq!(
            r(Expr::in_("type", ["distribution"])),
            "in(type,(distribution))"
        );
        assert_eq!(
            r(Expr::in_(
                "contract.id",
                ["CRD-00000-00000-00000", "CRD-11111-22222-33333"]
            )),
            "in(contract.id,(CRD-00000-00000-00000,CRD-11111-22222-33333))"
        );
        assert_eq!(
            r(Expr::in_("type", ["distribution"]) & Expr::in_("status", ["active"])),
            "and(in(type,(distribution)),in(status,(active)))"
        );
        assert_eq!(
            r(Expr::eq("status", "ready") | Expr::eq("status", "pending")),
            "or(eq(status,ready),eq(status,pending))"
        );
        assert_eq!(
            r(
                (Expr::eq("status", "ready") | Expr::eq("status", "pending"))
                    & Expr::eq("product.id", "PRD-1")
            ),
            "and(or(eq(status,ready),eq(status,pending)),eq(product.id,PRD-1))"
        );
        // The Python client renders `not(and(eq(status,draft),eq(schema,qt)))`, which the
        // server grammar rejects (`not` takes one comparison); the same meaning, accepted:
        assert_eq!(
            r(!(Expr::eq("status", "draft") & Expr::eq("schema", "qt"))),
            "or(not(eq(status,draft)),not(eq(schema,qt)))"
        );
        assert_eq!(r(!Expr::eq("status", "draft")), "not(eq(status,draft))");
        assert_eq!(r(!!Expr::eq("status", "draft")), "eq(status,draft)");
        assert_eq!(
            r(Expr::Not(Box::new(Expr::Or(vec![
                Expr::eq("a", "1"),
                Expr::in_("b", ["2"])
            ])))),
            "and(not(eq(a,1)),not(in(b,(2))))"
        );
        assert_eq!(
            r(Expr::and([
                Expr::eq("status", "active"),
                Expr::eq("product.id", "PRD-1"),
                Expr::in_("type", ["distribution", "service"]),
                Expr::is_null("external_id"),
            ])),
            "and(eq(status,active),eq(product.id,PRD-1),in(type,(distribution,service)),eq(external_id,null()))"
        );
        assert_eq!(r(Expr::not_null("external_id")), "ne(external_id,null())");
        let at = NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        assert_eq!(
            r(Expr::ge("created.at", at)),
            "ge(created.at,2024-01-01T00:00:00)"
        );
        let to = NaiveDate::from_ymd_opt(2024, 2, 1).expect("valid date");
        assert_eq!(r(Expr::lt("period.to", to)), "lt(period.to,2024-02-01)");
        assert_eq!(r(Expr::ilike("name", "*usage*")), "ilike(name,*usage*)");
        assert_eq!(
            r(Expr::out("status", ["deleted", "closed"])),
            "out(status,(deleted,closed))"
        );
        assert_eq!(
            r(Expr::eq("status", "a") & Expr::eq("status", "a")),
            "eq(status,a)"
        );
        assert_eq!(
            r(Expr::eq("asset.external_uid", "abc")),
            "eq(asset.external_uid,abc)"
        );
    }

    #[test]
    fn quotes_values_the_grammar_would_misread() {
        assert_eq!(
            r(Expr::eq("name", "My Usage File")),
            "eq(name,\"My Usage File\")"
        );
        assert_eq!(r(Expr::eq("note", "a,b")), "eq(note,\"a,b\")");
        assert_eq!(r(Expr::eq("note", "say \"hi\"")), "eq(note,'say \"hi\"')");
        assert_eq!(r(Expr::eq("note", "null()")), "eq(note,\"null()\")");
        assert_eq!(r(Expr::eq("note", "")), "eq(note,\"\")");
        assert_eq!(r(Expr::eq("name", "Café")), "eq(name,\"Café\")");
        assert_eq!(r(Expr::eq("flag", "t")), "eq(flag,\"t\")");
        assert_eq!(
            Expr::eq("note", "both ' and \"").render(),
            Err(RenderError::Unquotable {
                value: "both ' and \"".into()
            })
        );
        assert!(matches!(
            Expr::in_::<&str>("id", []).render(),
            Err(RenderError::EmptyList { .. })
        ));
        assert!(matches!(
            Expr::eq("bad prop", "x").render(),
            Err(RenderError::BadProperty { .. })
        ));
        for reserved in RESERVED_PROPS {
            assert!(matches!(
                Expr::eq(reserved, "5").render(),
                Err(RenderError::ReservedProperty { .. })
            ));
        }
    }

    #[test]
    fn query_string_matches_the_python_client() {
        let q = Query::new()
            .select(["-items", "-params"])
            .filter(Expr::eq("status", "active"))
            .order_by(["-created"]);
        assert_eq!(
            q.to_query_string(100, 0).expect("renders"),
            "select(-items,-params)&eq(status,active)&ordering(-created)&limit=100&offset=0"
        );
        let q = Query::new().filter(Expr::eq("name", "My Usage File"));
        assert_eq!(
            q.to_query_string(100, 0).expect("renders"),
            "eq(name,%22My%20Usage%20File%22)&limit=100&offset=0"
        );
        let q = Query::new().filter(Expr::eq("note", "a&b=c"));
        assert_eq!(
            q.to_query_string(10, 20).expect("renders"),
            "eq(note,%22a%26b%3Dc%22)&limit=10&offset=20"
        );
        let q = Query::new().search("hello world");
        assert_eq!(
            q.to_query_string(0, 0).expect("renders"),
            "limit=0&offset=0&search=%22hello%20world%22"
        );
        let q = Query::new().search("");
        assert_eq!(
            q.to_query_string(0, 0).expect("renders"),
            "limit=0&offset=0"
        );
    }

    #[test]
    fn escape_like_protects_wildcards() {
        assert_eq!(escape_like("50% *off? a\\b"), "50% \\*off? a\\\\b");
    }
}
