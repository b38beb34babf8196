//! The RQL parser: a query string, as Connect's server reads it, into an [`Expr`].
//!
//! The grammar is the one of Connect's server-side RQL library (lib-rql), checked case by case
//! against it:
//! - terms: `eq|ne|gt|ge|lt|le(p,v)`, `p=v`, `p=op=v` (comparison operators only),
//!   `in|out(p,(v,...))`, `like|ilike(p,v)`, `and(t,t,...)`, `or(t,t,...)`, `not(t)` with `t`
//!   one comparison, `select(...)`, `ordering(...)`;
//! - `&` joins terms anywhere (AND); at top level `,` is AND too; inside parentheses `,` is AND
//!   and `|` or `;` is OR (not mixed in one group), `&` binding tighter;
//! - no whitespace between tokens; a value may hold spaces after its first character;
//! - values: `"..."` or `'...'` without escapes, `null()`, `empty()`, or unquoted
//!   `[\w*+\\-][\w.\s:+@*\\-]*`.
//!
//! `limit`, `offset` and `search` are ordinary comparisons in that grammar; [`parse_query`]
//! takes `limit`/`offset` out of the tree (as the server's paginator does) and leaves `search`
//! for the evaluator.

use super::expr::{CmpOp, Expr, Field, ListOp, Value};

/// A parse or structure error, with the byte position in the decoded query where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Bad filter query: {reason} at position {position}.")]
    Syntax { position: usize, reason: String },
    #[error("Bad ordering filter: query can contain only one ordering operation.")]
    TwoOrderings,
    #[error("Bad select filter: query can contain only one select operation.")]
    TwoSelects,
    #[error("Limit and offset are set incorrectly.")]
    LimitOffset,
    #[error("Bad filter query: {0}() cannot be used inside not().")]
    MisplacedTerm(&'static str),
}

/// A parsed collection query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedQuery {
    pub filter: Option<Expr>,
    pub select: Vec<Field>,
    pub ordering: Vec<Field>,
    /// The raw `limit` value; `None` when absent. Use [`ParsedQuery::limit`] to read it.
    pub limit_raw: Option<RawValue>,
    pub offset_raw: Option<RawValue>,
}

/// A value as written, with whether it was quoted (the paginator reads the raw token, so a
/// quoted number is not a number to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    pub text: String,
    pub quoted: bool,
}

impl ParsedQuery {
    /// The page size: the `limit` given when it is a non-negative integer, clamped to `max`;
    /// otherwise `default` (the server falls back silently on bad values).
    pub fn limit(&self, default: u64, max: u64) -> u64 {
        match self.limit_raw.as_ref().and_then(parse_count) {
            Some(n) => n.min(max),
            None => default.min(max),
        }
    }

    /// The offset: the `offset` given when it is a non-negative integer, otherwise 0.
    pub fn offset(&self) -> u64 {
        self.offset_raw.as_ref().and_then(parse_count).unwrap_or(0)
    }
}

fn parse_count(raw: &RawValue) -> Option<u64> {
    if raw.quoted {
        return None;
    }
    let t = raw.text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let digits: String = t.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    digits.parse().ok()
}

/// Parses a decoded query string (percent-decoding is the caller's job: the server decodes
/// the whole string first, without turning `+` into a space).
pub fn parse_query(text: &str) -> Result<ParsedQuery, ParseError> {
    let node = Parser::new(text).parse_top()?;
    let mut out = ParsedQuery::default();
    let mut seen_select = false;
    let mut seen_ordering = false;
    let filter = match node {
        None => None,
        Some(node) => lower(node, &mut out, &mut seen_select, &mut seen_ordering, false)?,
    };
    out.filter = filter;
    Ok(out)
}

/// Parses a filter expression alone (no `select`, `ordering`, `limit` or `offset` allowed).
pub fn parse_expr(text: &str) -> Result<Expr, ParseError> {
    let parsed = parse_query(text)?;
    if !parsed.select.is_empty()
        || !parsed.ordering.is_empty()
        || parsed.limit_raw.is_some()
        || parsed.offset_raw.is_some()
    {
        return Err(ParseError::Syntax {
            position: 0,
            reason: "only a filter expression was expected".into(),
        });
    }
    parsed.filter.ok_or(ParseError::Syntax {
        position: 0,
        reason: "empty expression".into(),
    })
}

/// The tree as the grammar builds it, before `select`, `ordering`, `limit` and `offset` are
/// taken out.
#[derive(Debug, Clone)]
enum Node {
    Cmp {
        op: CmpOp,
        prop: String,
        value: Value,
        quoted: bool,
    },
    List {
        op: ListOp,
        prop: String,
        values: Vec<Value>,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Select(Vec<Field>),
    Ordering(Vec<Field>),
}

fn lower(
    node: Node,
    out: &mut ParsedQuery,
    seen_select: &mut bool,
    seen_ordering: &mut bool,
    in_not: bool,
) -> Result<Option<Expr>, ParseError> {
    Ok(match node {
        Node::Cmp {
            op,
            prop,
            value,
            quoted,
        } => {
            if prop == "limit" || prop == "offset" {
                if op != CmpOp::Eq {
                    return Err(ParseError::LimitOffset);
                }
                let slot = if prop == "limit" {
                    &mut out.limit_raw
                } else {
                    &mut out.offset_raw
                };
                if slot.is_some() {
                    return Err(ParseError::LimitOffset);
                }
                let text = match &value {
                    Value::Text(t) => t.clone(),
                    Value::Null => "null()".into(),
                    Value::Empty => "empty()".into(),
                };
                *slot = Some(RawValue {
                    text,
                    quoted: quoted || !matches!(value, Value::Text(_)),
                });
                None
            } else {
                Some(Expr::Cmp { op, prop, value })
            }
        }
        Node::List { op, prop, values } => Some(Expr::List { op, prop, values }),
        Node::Select(fields) => {
            if in_not {
                return Err(ParseError::MisplacedTerm("select"));
            }
            if *seen_select {
                return Err(ParseError::TwoSelects);
            }
            *seen_select = true;
            out.select = fields;
            None
        }
        Node::Ordering(fields) => {
            if in_not {
                return Err(ParseError::MisplacedTerm("ordering"));
            }
            if *seen_ordering {
                return Err(ParseError::TwoOrderings);
            }
            *seen_ordering = true;
            out.ordering = fields;
            None
        }
        Node::Not(inner) => lower(*inner, out, seen_select, seen_ordering, true)?.map(Expr::negate),
        Node::And(children) | Node::Or(children) if children.is_empty() => None,
        Node::And(children) => {
            let mut kept = Vec::with_capacity(children.len());
            for c in children {
                if let Some(e) = lower(c, out, seen_select, seen_ordering, in_not)? {
                    kept.push(e);
                }
            }
            (!kept.is_empty()).then(|| Expr::and(kept))
        }
        Node::Or(children) => {
            let mut kept = Vec::with_capacity(children.len());
            for c in children {
                if let Some(e) = lower(c, out, seen_select, seen_ordering, in_not)? {
                    kept.push(e);
                }
            }
            (!kept.is_empty()).then(|| Expr::or(kept))
        }
    })
}

const FUNCTIONS: [&str; 15] = [
    "eq", "ne", "gt", "ge", "lt", "le", "like", "ilike", "in", "out", "and", "or", "not", "select",
    "ordering",
];

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser { text, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError::Syntax {
            position: self.pos,
            reason: reason.into(),
        })
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        match self.peek() {
            Some(got) if got == c => {
                self.bump();
                Ok(())
            }
            Some(got) => self.error(format!("expected '{c}', found '{got}'")),
            None => self.error(format!("expected '{c}', found the end")),
        }
    }

    /// `query := ε | chain ((',' | '&') chain)*`
    fn parse_top(&mut self) -> Result<Option<Node>, ParseError> {
        if self.text.is_empty() {
            return Ok(None);
        }
        let mut terms = vec![self.parse_chain()?];
        while let Some(c) = self.peek() {
            match c {
                ',' => {
                    self.bump();
                    terms.push(self.parse_chain()?);
                }
                '|' | ';' => {
                    return self.error(format!("'{c}' (or) is only allowed inside parentheses"));
                }
                _ => return self.error(format!("unexpected '{c}'")),
            }
        }
        Ok(Some(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Node::And(terms)
        }))
    }

    /// `chain := unit ('&' unit)*`
    fn parse_chain(&mut self) -> Result<Node, ParseError> {
        let mut units = vec![self.parse_unit()?];
        while self.peek() == Some('&') {
            self.bump();
            units.push(self.parse_unit()?);
        }
        Ok(if units.len() == 1 {
            units.remove(0)
        } else {
            Node::And(units)
        })
    }

    fn parse_unit(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Some('(') => self.parse_group(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                let word = self.parse_prop()?;
                if self.peek() == Some('(') && FUNCTIONS.contains(&word.as_str()) {
                    return self.parse_call(&word);
                }
                if word == "t" && self.peek() == Some('(') {
                    return self.error("tuples t(...) are not supported");
                }
                match self.peek() {
                    Some('=') => {
                        self.bump();
                        self.parse_shorthand(word)
                    }
                    _ => {
                        self.pos = start;
                        self.error("expected a term")
                    }
                }
            }
            Some(c) => self.error(format!("unexpected '{c}' where a term should start")),
            None => self.error("a term is missing"),
        }
    }

    /// `(chain (',' chain)*)`, `(chain ('|' chain)*)` or `(chain (';' chain)*)`.
    fn parse_group(&mut self) -> Result<Node, ParseError> {
        self.expect('(')?;
        let mut items = vec![self.parse_chain()?];
        let mut sep: Option<char> = None;
        loop {
            match self.peek() {
                Some(')') => {
                    self.bump();
                    break;
                }
                Some(c @ (',' | '|' | ';')) => {
                    if let Some(s) = sep
                        && s != c
                    {
                        return self.error(format!("'{s}' and '{c}' mixed in one group"));
                    }
                    sep = Some(c);
                    self.bump();
                    items.push(self.parse_chain()?);
                }
                Some(c) => return self.error(format!("unexpected '{c}' in a group")),
                None => return self.error("unclosed '('"),
            }
        }
        Ok(match (items.len(), sep) {
            (1, _) => items.remove(0),
            (_, Some(',')) => Node::And(items),
            _ => Node::Or(items),
        })
    }

    /// `p=v` or `p=op=v` after `p=` was read.
    fn parse_shorthand(&mut self, prop: String) -> Result<Node, ParseError> {
        // `p=op=v`: a comparison name followed by '='.
        let save = self.pos;
        if self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            let word = self.parse_prop()?;
            if self.peek() == Some('=') {
                let Some(op) =
                    CmpOp::from_name(&word).filter(|op| !matches!(op, CmpOp::Like | CmpOp::Ilike))
                else {
                    self.pos = save;
                    return self.error(format!("unknown operator {word:?} in p=op=v"));
                };
                self.bump();
                let (value, quoted) = self.parse_value()?;
                return Ok(Node::Cmp {
                    op,
                    prop,
                    value,
                    quoted,
                });
            }
            self.pos = save;
        }
        let (value, quoted) = self.parse_value()?;
        Ok(Node::Cmp {
            op: CmpOp::Eq,
            prop,
            value,
            quoted,
        })
    }

    fn parse_call(&mut self, name: &str) -> Result<Node, ParseError> {
        self.expect('(')?;
        let node = match name {
            "and" | "or" => {
                let mut items = vec![self.parse_chain()?];
                while self.peek() == Some(',') {
                    self.bump();
                    items.push(self.parse_chain()?);
                }
                if items.len() < 2 {
                    return self.error(format!("{name}() needs at least two terms"));
                }
                if name == "and" {
                    Node::And(items)
                } else {
                    Node::Or(items)
                }
            }
            "not" => {
                let start = self.pos;
                let inner = self.parse_chain()?;
                if !matches!(
                    inner,
                    Node::Cmp { .. } | Node::List { .. } | Node::Select(_) | Node::Ordering(_)
                ) {
                    self.pos = start;
                    return self.error("not() takes exactly one comparison");
                }
                Node::Not(Box::new(inner))
            }
            "select" | "ordering" => {
                let mut fields = Vec::new();
                if self.peek() != Some(')') {
                    fields.push(self.parse_signed_prop()?);
                    while self.peek() == Some(',') {
                        self.bump();
                        fields.push(self.parse_signed_prop()?);
                    }
                }
                if name == "select" {
                    Node::Select(fields)
                } else {
                    Node::Ordering(fields)
                }
            }
            "in" | "out" => {
                let prop = self.parse_prop()?;
                self.expect(',')?;
                self.expect('(')?;
                let mut values = vec![self.parse_value()?.0];
                while self.peek() == Some(',') {
                    self.bump();
                    values.push(self.parse_value()?.0);
                }
                self.expect(')')?;
                let op = if name == "in" {
                    ListOp::In
                } else {
                    ListOp::Out
                };
                Node::List { op, prop, values }
            }
            cmp => {
                let Some(op) = CmpOp::from_name(cmp) else {
                    return self.error(format!("unknown function {cmp}()"));
                };
                let prop = self.parse_prop()?;
                self.expect(',')?;
                let (value, quoted) = self.parse_value()?;
                Node::Cmp {
                    op,
                    prop,
                    value,
                    quoted,
                }
            }
        };
        self.expect(')')?;
        Ok(node)
    }

    /// `[a-zA-Z][\w.-]*`
    fn parse_prop(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() => {
                self.bump();
            }
            _ => return self.error("expected a property name"),
        }
        while let Some(c) = self.peek() {
            if is_word(c) || c == '.' || c == '-' {
                self.bump();
            } else {
                break;
            }
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn parse_signed_prop(&mut self) -> Result<Field, ParseError> {
        let negated = match self.peek() {
            Some('-') => {
                self.bump();
                true
            }
            Some('+') => {
                self.bump();
                false
            }
            _ => false,
        };
        Ok(Field {
            prop: self.parse_prop()?,
            negated,
        })
    }

    /// A value and whether it was quoted.
    fn parse_value(&mut self) -> Result<(Value, bool), ParseError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let start = self.pos;
                match self.text[start..].find(q) {
                    Some(len) => {
                        self.pos = start + len + 1;
                        Ok((Value::Text(self.text[start..start + len].to_owned()), true))
                    }
                    None => self.error("unclosed quote"),
                }
            }
            Some(_) if self.text[self.pos..].starts_with("null()") => {
                self.pos += 6;
                Ok((Value::Null, false))
            }
            Some(_) if self.text[self.pos..].starts_with("empty()") => {
                self.pos += 7;
                Ok((Value::Empty, false))
            }
            Some(c) if is_word(c) || matches!(c, '*' | '+' | '\\' | '-') => {
                if c == 't' && self.peek_at(1).is_none_or(|n| !is_value_char(n)) {
                    return self.error("'t' is the tuple keyword; quote it as a value");
                }
                let start = self.pos;
                self.bump();
                while self.peek().is_some_and(is_value_char) {
                    self.bump();
                }
                Ok((Value::Text(self.text[start..self.pos].to_owned()), false))
            }
            Some(c) => self.error(format!("'{c}' cannot start a value; quote the value")),
            None => self.error("a value is missing"),
        }
    }
}

/// Python's Unicode `\w`: letters, digits (all scripts) and `_`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_value_char(c: char) -> bool {
    is_word(c) || c.is_whitespace() || matches!(c, '.' | ':' | '+' | '@' | '*' | '\\' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(q: &str) -> Expr {
        parse_query(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .filter
            .unwrap_or_else(|| panic!("{q}: no filter"))
    }

    fn fails(q: &str) {
        assert!(parse_query(q).is_err(), "{q} should not parse");
    }

    #[test]
    fn comparison_forms() {
        let eq = Expr::eq("a", "b");
        for q in ["eq(a,b)", "a=b", "a=eq=b", "(a=b)", "((a=b))", "(eq(a,b))"] {
            assert_eq!(filter(q), eq, "{q}");
        }
        assert_eq!(filter("a=ne=b"), Expr::ne("a", "b"));
        assert_eq!(
            filter("ge(created.at,2024-01-01T00:00:00+00:00)"),
            Expr::ge("created.at", "2024-01-01T00:00:00+00:00")
        );
        assert_eq!(filter("like(name,*x*)"), Expr::like("name", "*x*"));
        assert_eq!(filter("in(a,(x,y))"), Expr::in_("a", ["x", "y"]));
        assert_eq!(filter("out(a,(\"x,y\"))"), Expr::out("a", ["x,y"]));
        assert_eq!(filter("eq(a,null())"), Expr::is_null("a"));
        assert_eq!(filter("eq(a,\"null()\")"), Expr::eq("a", "null()"));
        assert_eq!(filter("eq(a,empty())"), Expr::is_empty("a"));
        assert_eq!(filter("eq(a,b c)"), Expr::eq("a", "b c"));
        assert_eq!(filter("a=b "), Expr::eq("a", "b "));
        assert_eq!(filter("eq(a,'say \"hi\"')"), Expr::eq("a", "say \"hi\""));
        assert_eq!(filter("eq(a,café)"), Expr::eq("a", "café"));
        assert_eq!(filter("eq=x"), Expr::eq("eq", "x"));
        assert_eq!(filter("a=select"), Expr::eq("a", "select"));
        assert_eq!(filter("eq(a,\"t\")"), Expr::eq("a", "t"));
        assert_eq!(filter("eq(a,tx)"), Expr::eq("a", "tx"));
    }

    #[test]
    fn logical_forms() {
        let (a, b, c) = (Expr::eq("a", "1"), Expr::eq("b", "2"), Expr::eq("c", "3"));
        let and = Expr::and([a.clone(), b.clone()]);
        for q in [
            "a=1&b=2",
            "a=1,b=2",
            "and(a=1,b=2)",
            "(a=1,b=2)",
            "(a=1&b=2)",
        ] {
            assert_eq!(filter(q), and, "{q}");
        }
        let or = Expr::or([a.clone(), b.clone()]);
        for q in ["(a=1|b=2)", "(a=1;b=2)", "or(a=1,b=2)", "((a=1|b=2))"] {
            assert_eq!(filter(q), or, "{q}");
        }
        assert_eq!(filter("(a=1&b=2|c=3)"), Expr::or([and.clone(), c.clone()]));
        assert_eq!(
            filter("a=1&(b=2|c=3)"),
            Expr::and([a.clone(), Expr::or([b.clone(), c.clone()])])
        );
        assert_eq!(
            filter("a=1&b=2,c=3"),
            Expr::and([a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(filter("not(a=1)"), !a.clone());
        assert_eq!(filter("not(in(a,(x)))"), !Expr::in_("a", ["x"]));
        assert_eq!(
            filter("and(not(a=1),or(b=2,c=3))"),
            Expr::and([!a, Expr::or([b, c])])
        );
    }

    #[test]
    fn rejects_what_the_server_rejects() {
        for q in [
            "eq(a, b)",
            "eq( a,b)",
            "a =b",
            "a= b",
            "a=b & c=d",
            " a=b",
            "eq(a,b) ",
            "and(a=b, c=d)",
            "a=b|c=d",
            "a=b;c=d",
            "(a=b|c=d;e=f)",
            "(a=b,c=d|e=f)",
            "eq(a,b)|eq(c,d)",
            "a=b&",
            "&a=b",
            "a=b&&c=d",
            "a=b,",
            ",a=b",
            "()",
            "(a=b",
            "a=b)",
            "eq(a,b)eq(c,d)",
            "and(a=b)",
            "or(a=b)",
            "not(and(a=b,c=d))",
            "not(or(a=b,c=d))",
            "not(not(a=b))",
            "not((a=b|c=d))",
            "not(a=b,c=d)",
            "in(a,())",
            "eq(a,)",
            "a=",
            "a=in=(x)",
            "a=like=x",
            "a==b",
            "a=b=c",
            "limit(10)",
            "search(a,b)",
            "eq(1a,x)",
            "_a=x",
            "eq(a,b/c)",
            "eq(a,b#c)",
            "eq(a,b?c)",
            "eq(a,.b)",
            "eq(a,\"b\"c)",
            "eq(a,\"b)",
            "eq(a,t)",
            "a=t",
            "t(a=b)",
            "eq(a,b&c)",
            "eq(a,(b))",
            "ordering(a,)",
            "ordering(--a)",
            "select(\"a\")",
            "NULL()",
            "eq(a,null( ))",
        ] {
            fails(q);
        }
    }

    #[test]
    fn select_ordering_limit_offset_are_taken_out() {
        let p = parse_query(
            "select(-items,-params)&eq(status,active)&ordering(-created,name)&limit=10&offset=20",
        )
        .expect("parses");
        assert_eq!(p.filter, Some(Expr::eq("status", "active")));
        assert_eq!(
            p.select,
            vec![Field::parse("-items"), Field::parse("-params")]
        );
        assert_eq!(
            p.ordering,
            vec![Field::parse("-created"), Field::parse("name")]
        );
        assert_eq!(p.limit(100, 1000), 10);
        assert_eq!(p.offset(), 20);

        let p = parse_query("or(limit=2,name=apple)").expect("parses");
        assert_eq!(p.filter, Some(Expr::eq("name", "apple")));
        assert_eq!(p.limit(100, 1000), 2);

        for (q, limit, offset) in [
            ("limit=-1", 100, 0),
            ("limit=abc", 100, 0),
            ("limit=\"5\"", 100, 0),
            ("limit=5.5", 100, 0),
            ("limit=2000", 1000, 0),
            ("limit=+3&offset=1_0", 3, 10),
            ("offset=-3&limit=2", 2, 0),
            ("limit=0", 0, 0),
        ] {
            let p = parse_query(q).expect("parses");
            assert_eq!((p.limit(100, 1000), p.offset()), (limit, offset), "{q}");
        }
        for q in ["limit=ge=2", "limit=2&limit=3", "offset=1,offset=2"] {
            assert_eq!(parse_query(q), Err(ParseError::LimitOffset), "{q}");
        }
        assert_eq!(
            parse_query("ordering(a)&ordering(b)"),
            Err(ParseError::TwoOrderings)
        );
        assert_eq!(
            parse_query("select(a)&select(b)"),
            Err(ParseError::TwoSelects)
        );
        assert_eq!(parse_query("").expect("parses"), ParsedQuery::default());
        assert_eq!(parse_query("select()").expect("parses").select, vec![]);
    }
}
