//! RQL, the query language of Connect's collections, on both sides of the wire.
//!
//! [`Expr`] and [`Query`] are built and rendered by the client ([`expr`]); the sandbox parses
//! query strings back into the same types ([`parse`]). Sharing the tree is what lets the tests
//! check that every rendered query reads back as itself.

pub mod expr;
pub mod parse;

pub use expr::{
    CmpOp, Expr, Field, ListOp, Query, RESERVED_PROPS, RenderError, Value, encode_query_component,
    escape_like, is_bare_value, is_valid_prop,
};
pub use parse::{ParseError, ParsedQuery, parse_expr, parse_query};
