//! Property tests: any query the client renders, once percent-encoded for the URL and decoded
//! as the server decodes it, parses back into the very same query; and a query the grammar
//! cannot carry is refused when rendered, never sent ambiguous.

use connect_client::rql::{
    CmpOp, Expr, Field, ListOp, Query, RESERVED_PROPS, RenderError, Value, encode_query_component,
    parse_expr, parse_query,
};
use proptest::prelude::*;

/// Property names, the reserved `limit`, `offset` and `search` among them now and then.
fn prop_name() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => "[a-zA-Z][a-zA-Z0-9_.-]{0,10}",
        1 => proptest::sample::select(RESERVED_PROPS.to_vec()).prop_map(str::to_owned),
    ]
}

/// Names for `select(...)` and `ordering(...)`, where the reserved ones are plain names.
fn field_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_.-]{0,10}"
}

/// Text with every character class that matters to the grammar and to URL encoding.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('0', '9'),
            1 => proptest::sample::select(vec![
                ' ', '"', '\'', ',', '(', ')', '&', '|', ';', '=', '*', '+', '%', '#', '?', '/',
                '\\', ':', '@', '.', '-', '_', 'é', '日', '\t', '<', '>', '[', ']', '{', '}', '^',
                '~', '!', '$', '`',
            ]),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => text().prop_map(Value::Text),
        1 => Just(Value::Null),
        1 => Just(Value::Empty),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (
            proptest::sample::select(CmpOp::ALL.to_vec()),
            prop_name(),
            value()
        )
            .prop_map(|(op, prop, value)| Expr::Cmp { op, prop, value }),
        (
            proptest::sample::select(vec![ListOp::In, ListOp::Out]),
            prop_name(),
            proptest::collection::vec(value(), 1..4)
        )
            .prop_map(|(op, prop, values)| Expr::List { op, prop, values }),
    ]
}

/// Expressions built with the builder's own combinators, as client code builds them.
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::and),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::or),
            inner.prop_map(|e| !e),
        ]
    })
}

fn has_reserved_prop(e: &Expr) -> bool {
    match e {
        Expr::Cmp { prop, .. } | Expr::List { prop, .. } => RESERVED_PROPS.contains(&prop.as_str()),
        Expr::And(c) | Expr::Or(c) => c.iter().any(has_reserved_prop),
        Expr::Not(inner) => has_reserved_prop(inner),
    }
}

fn has_both_quotes(e: &Expr) -> bool {
    let both = |v: &Value| matches!(v, Value::Text(t) if t.contains('"') && t.contains('\''));
    match e {
        Expr::Cmp { value, .. } => both(value),
        Expr::List { values, .. } => values.iter().any(both),
        Expr::And(c) | Expr::Or(c) => c.iter().any(has_both_quotes),
        Expr::Not(inner) => has_both_quotes(inner),
    }
}

/// What the server reads: the percent-decoded string, `+` kept.
fn server_decode(wire: &str) -> String {
    percent_encoding::percent_decode_str(wire)
        .decode_utf8()
        .expect("our encoding is UTF-8")
        .into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rendered_expressions_parse_back_identically(e in expr()) {
        match e.render() {
            Ok(rql) => {
                let wire = encode_query_component(&rql);
                prop_assert!(!wire.contains(' ') && !wire.contains('"') && !wire.contains('#'), "{}", wire);
                let parsed = parse_expr(&server_decode(&wire));
                prop_assert_eq!(parsed.as_ref(), Ok(&e), "rendered {}", rql);
            }
            Err(RenderError::Unquotable { .. }) => prop_assert!(has_both_quotes(&e)),
            Err(RenderError::ReservedProperty { .. }) => prop_assert!(has_reserved_prop(&e)),
            Err(other) => prop_assert!(false, "unexpected render error {}", other),
        }
    }

    #[test]
    fn whole_queries_parse_back_identically(
        filter in proptest::option::of(expr()),
        select in proptest::collection::vec((field_name(), any::<bool>()), 0..3),
        ordering in proptest::collection::vec((field_name(), any::<bool>()), 0..3),
        search in proptest::option::of(text()),
        limit in 0u64..2000,
        offset in 0u64..100_000,
    ) {
        let mut q = Query::new();
        if let Some(f) = filter.clone() {
            q = q.filter(f);
        }
        q.select = select.iter().map(|(p, neg)| Field { prop: p.clone(), negated: *neg }).collect();
        q.ordering = ordering.iter().map(|(p, neg)| Field { prop: p.clone(), negated: *neg }).collect();
        q.search = search.clone();
        let wire = match q.to_query_string(limit, offset) {
            Ok(w) => w,
            Err(RenderError::Unquotable { .. } | RenderError::ReservedProperty { .. }) => return Ok(()),
            Err(other) => return Err(TestCaseError::fail(other.to_string())),
        };
        let parsed = parse_query(&server_decode(&wire)).map_err(|e| TestCaseError::fail(format!("{wire}: {e}")))?;
        let mut want = filter;
        if let Some(s) = search.filter(|s| !s.is_empty()) {
            let term = Expr::eq("search", s);
            want = Some(match want {
                Some(f) => Expr::and([f, term]),
                None => term,
            });
        }
        prop_assert_eq!(&parsed.filter, &want, "{}", wire);
        prop_assert_eq!(&parsed.select, &q.select);
        prop_assert_eq!(&parsed.ordering, &q.ordering);
        prop_assert_eq!(parsed.limit(100, u64::MAX), limit);
        prop_assert_eq!(parsed.offset(), offset);
    }

    /// Whatever the text, the parser answers (a tree or an error) and never panics.
    #[test]
    fn the_parser_never_panics(s in "\\PC{0,40}") {
        let _ = parse_query(&s);
    }
}

#[test]
fn the_reference_examples_parse_to_what_built_them() {
    for (rql, e) in [
        (
            "in(type,(distribution))",
            Expr::in_("type", ["distribution"]),
        ),
        (
            "and(in(type,(distribution)),in(status,(active)))",
            Expr::in_("type", ["distribution"]) & Expr::in_("status", ["active"]),
        ),
        (
            "and(or(eq(status,ready),eq(status,pending)),eq(product.id,PRD-1))",
            (Expr::eq("status", "ready") | Expr::eq("status", "pending"))
                & Expr::eq("product.id", "PRD-1"),
        ),
        ("ne(external_id,null())", Expr::not_null("external_id")),
        (
            "ge(created.at,2024-01-01T00:00:00)",
            Expr::ge("created.at", "2024-01-01T00:00:00"),
        ),
        ("ilike(name,*usage*)", Expr::ilike("name", "*usage*")),
        (
            "out(status,(deleted,closed))",
            Expr::out("status", ["deleted", "closed"]),
        ),
    ] {
        assert_eq!(parse_expr(rql), Ok(e.clone()), "{rql}");
        assert_eq!(e.render().as_deref(), Ok(rql));
    }
}
