//! Kubernetes label and field selectors, parsed from their query-string form
//! and evaluated against JSON objects.
//!
//! The grammar and the matching rules follow `k8s.io/apimachinery`'s
//! `labels.Parse` and `fields.ParseSelector`, so a selector that kubectl or a
//! client library sends means the same thing here.

use std::fmt;

use serde_json::Value;

use crate::StoreError;

/// The operator of one [`LabelRequirement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    /// `key=value` or `key==value`: the label exists and equals the value.
    Equals,
    /// `key!=value`: the label is absent or differs from the value.
    NotEquals,
    /// `key in (a,b)`: the label exists and is one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or none of the values.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>N`: the label exists, is an integer, and is greater than N.
    GreaterThan,
    /// `key<N`: the label exists, is an integer, and is less than N.
    LessThan,
}

/// One comma-separated term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// How the label is tested.
    pub operator: LabelOperator,
    /// The operand(s); sorted and deduplicated for `In`/`NotIn`, one value
    /// for the comparison operators, none for `Exists`/`DoesNotExist`.
    pub values: Vec<String>,
}

impl LabelRequirement {
    /// Whether `labels` (an object's `metadata.labels`) satisfies this term.
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.operator {
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::Equals | LabelOperator::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::Equals => write!(f, "{}={first}", self.key),
            LabelOperator::NotEquals => write!(f, "{}!={first}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{first}", self.key),
            LabelOperator::LessThan => write!(f, "{}<{first}", self.key),
            LabelOperator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            LabelOperator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
        }
    }
}

/// A label selector: a conjunction of [`LabelRequirement`]s. The default
/// (empty) selector matches every object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses the Kubernetes query-string syntax, e.g.
    /// `app=web,tier!=db,env in (prod,staging),!legacy`.
    pub fn parse(input: &str) -> Result<Self, StoreError> {
        Parser::new(input)?.selector()
    }

    /// A selector from requirements built in code; they are validated as
    /// parsed ones are.
    pub fn from_requirements(requirements: Vec<LabelRequirement>) -> Result<Self, StoreError> {
        let requirements = requirements
            .into_iter()
            .map(|r| normalize(r.key, r.operator, r.values))
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// A selector from the structured `LabelSelector` of Kubernetes objects
    /// (`{"matchLabels": {...}, "matchExpressions": [...]}`), as found in
    /// `spec.selector` of workloads. `null` selects everything.
    pub fn from_json(selector: &Value) -> Result<Self, StoreError> {
        let bad = |m: String| StoreError::BadRequest(format!("invalid label selector: {m}"));
        if selector.is_null() {
            return Ok(LabelSelector::default());
        }
        let map = selector
            .as_object()
            .ok_or_else(|| bad("must be a map".into()))?;
        let mut requirements = Vec::new();
        if let Some(labels) = map.get("matchLabels").filter(|v| !v.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| bad("matchLabels must be a map".into()))?;
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad(format!("matchLabels[{k}] must be a string")))?;
                requirements.push(normalize(
                    k.clone(),
                    LabelOperator::Equals,
                    vec![v.to_string()],
                )?);
            }
        }
        if let Some(exprs) = map.get("matchExpressions").filter(|v| !v.is_null()) {
            let exprs = exprs
                .as_array()
                .ok_or_else(|| bad("matchExpressions must be a list".into()))?;
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("matchExpressions[].key must be a string".into()))?;
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => LabelOperator::In,
                    Some("NotIn") => LabelOperator::NotIn,
                    Some("Exists") => LabelOperator::Exists,
                    Some("DoesNotExist") => LabelOperator::DoesNotExist,
                    other => {
                        return Err(bad(format!(
                            "{:?} is not a valid label selector operator",
                            other.unwrap_or("")
                        )));
                    }
                };
                let values = match e.get("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_string).ok_or_else(|| {
                                bad("matchExpressions[].values must be strings".into())
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(bad("matchExpressions[].values must be a list".into())),
                };
                requirements.push(normalize(key.to_string(), op, values)?);
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// The requirements, all of which must hold.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `object`'s `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.matches_labels(labels)
    }

    /// Whether a label map (`None`: no labels) satisfies every requirement.
    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Checks a requirement the way `labels.NewRequirement` does, and puts set
/// values in canonical order so equal selectors compare equal.
fn normalize(
    key: String,
    operator: LabelOperator,
    mut values: Vec<String>,
) -> Result<LabelRequirement, StoreError> {
    validate_label_key(&key)?;
    match operator {
        LabelOperator::In | LabelOperator::NotIn => {
            if values.is_empty() {
                return Err(StoreError::BadRequest(format!(
                    "invalid label selector: for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                )));
            }
            values.sort();
            values.dedup();
        }
        LabelOperator::Equals | LabelOperator::NotEquals => {
            if values.len() != 1 {
                return Err(StoreError::BadRequest(format!(
                    "invalid label selector: exact-match operators need exactly one value (key {key:?})"
                )));
            }
        }
        LabelOperator::Exists | LabelOperator::DoesNotExist => {
            if !values.is_empty() {
                return Err(StoreError::BadRequest(format!(
                    "invalid label selector: values set must be empty for exists and does not exist (key {key:?})"
                )));
            }
        }
        LabelOperator::GreaterThan | LabelOperator::LessThan => {
            if values.len() != 1 || values[0].parse::<i64>().is_err() {
                return Err(StoreError::BadRequest(format!(
                    "invalid label selector: for 'Gt', 'Lt' operators, the value must be an integer (key {key:?})"
                )));
            }
            return Ok(LabelRequirement {
                key,
                operator,
                values,
            });
        }
    }
    for v in &values {
        validate_label_value(v)?;
    }
    Ok(LabelRequirement {
        key,
        operator,
        values,
    })
}

/// A label name (the part after an optional `prefix/`): at most 63
/// characters, alphanumeric at both ends, `-_.` allowed inside.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain, as label key prefixes must be.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_label_key(key: &str) -> Result<(), StoreError> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(key),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadRequest(format!(
            "invalid label selector: invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character (at most 63 characters), with an optional DNS subdomain prefix and '/'"
        )))
    }
}

fn validate_label_value(value: &str) -> Result<(), StoreError> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(StoreError::BadRequest(format!(
            "invalid label selector: invalid label value {value:?}: must be 63 characters or less and must be empty or begin and end \
             with an alphanumeric character with '-', '_', '.', and alphanumerics between"
        )))
    }
}

/// A lexical token of the label selector syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "'{s}'"),
            Token::Bang => f.write_str("'!'"),
            Token::Eq => f.write_str("'='"),
            Token::DoubleEq => f.write_str("'=='"),
            Token::NotEq => f.write_str("'!='"),
            Token::Gt => f.write_str("'>'"),
            Token::Lt => f.write_str("'<'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
            Token::End => f.write_str("end of string"),
        }
    }
}

fn tokenize(input: &str) -> Vec<Token> {
    let special = |c: char| matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>');
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if special(c) {
            chars.next();
            let next_is_eq = chars.peek() == Some(&'=');
            let tok = match c {
                '!' if next_is_eq => {
                    chars.next();
                    Token::NotEq
                }
                '!' => Token::Bang,
                '=' if next_is_eq => {
                    chars.next();
                    Token::DoubleEq
                }
                '=' => Token::Eq,
                '(' => Token::Open,
                ')' => Token::Close,
                ',' => Token::Comma,
                '<' => Token::Lt,
                _ => Token::Gt,
            };
            tokens.push(tok);
            continue;
        }
        let mut ident = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || special(c) {
                break;
            }
            ident.push(c);
            chars.next();
        }
        tokens.push(Token::Ident(ident));
    }
    tokens.push(Token::End);
    tokens
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, StoreError> {
        // Selectors arrive in URLs; an absurd length is an attack or a bug,
        // and refusing it keeps parsing cheap.
        if input.len() > 64 * 1024 {
            return Err(StoreError::BadRequest(
                "invalid label selector: longer than 65536 bytes".into(),
            ));
        }
        Ok(Parser {
            input,
            tokens: tokenize(input),
            pos: 0,
        })
    }

    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn error(&self, found: &Token, expected: &str) -> StoreError {
        StoreError::BadRequest(format!(
            "unable to parse label selector {:?}: found {found}, expected: {expected}",
            self.input
        ))
    }

    fn selector(mut self) -> Result<LabelSelector, StoreError> {
        let mut requirements = Vec::new();
        if *self.peek() == Token::End {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                Token::End => return Ok(LabelSelector { requirements }),
                Token::Comma => {
                    if !matches!(self.peek(), Token::Ident(_) | Token::Bang) {
                        let t = self.peek().clone();
                        return Err(self.error(&t, "identifier after ','"));
                    }
                }
                t => return Err(self.error(&t, "',' or end of string")),
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, StoreError> {
        let negated = *self.peek() == Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(k) => k,
            t => return Err(self.error(&t, "identifier")),
        };
        if negated {
            return match self.peek() {
                Token::End | Token::Comma => normalize(key, LabelOperator::DoesNotExist, vec![]),
                t => {
                    let t = t.clone();
                    Err(self.error(&t, "',' or end of string after '!key'"))
                }
            };
        }
        let operator = match self.peek() {
            Token::End | Token::Comma => return normalize(key, LabelOperator::Exists, vec![]),
            Token::Eq | Token::DoubleEq => LabelOperator::Equals,
            Token::NotEq => LabelOperator::NotEquals,
            Token::Gt => LabelOperator::GreaterThan,
            Token::Lt => LabelOperator::LessThan,
            Token::Ident(s) if s == "in" => LabelOperator::In,
            Token::Ident(s) if s == "notin" => LabelOperator::NotIn,
            t => {
                let t = t.clone();
                return Err(self.error(&t, "one of =, ==, !=, >, <, in, notin"));
            }
        };
        self.next();
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        normalize(key, operator, values)
    }

    fn exact_value(&mut self) -> Result<String, StoreError> {
        match self.peek() {
            // `key=` selects the empty value, as in Kubernetes.
            Token::End | Token::Comma => Ok(String::new()),
            Token::Ident(_) => match self.next() {
                Token::Ident(v) => Ok(v),
                t => Err(self.error(&t, "identifier")),
            },
            t => {
                let t = t.clone();
                Err(self.error(&t, "identifier"))
            }
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, StoreError> {
        match self.next() {
            Token::Open => {}
            t => return Err(self.error(&t, "'('")),
        }
        let mut values = Vec::new();
        // Empty items (`(a,,b)`, `(a,)`) stand for the empty value, as in
        // Kubernetes; only a wholly empty `()` is refused.
        let mut expect_item = true;
        loop {
            match self.next() {
                Token::Ident(v) if expect_item => {
                    values.push(v);
                    expect_item = false;
                }
                Token::Comma => {
                    if expect_item {
                        values.push(String::new());
                    }
                    expect_item = true;
                }
                Token::Close => {
                    if expect_item && !values.is_empty() {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                t if expect_item => return Err(self.error(&t, "',', ')' or identifier")),
                t => return Err(self.error(&t, "',' or ')'")),
            }
        }
    }
}

/// The operator of one [`FieldRequirement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOperator {
    /// `path=value` or `path==value`.
    Equals,
    /// `path!=value`.
    NotEquals,
}

/// One comma-separated term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted path into the object: `metadata.name`, `spec.nodeName`.
    pub path: String,
    /// How the field is compared.
    pub operator: FieldOperator,
    /// The value compared with (unescaped).
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, object: &Value) -> bool {
        let actual = field_value(object, &self.path);
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

/// The field at a dotted `path` rendered as a field selector compares it:
/// strings as themselves, numbers and booleans in their JSON form, and a
/// missing or null field as the empty string (as Kubernetes does).
fn field_value(object: &Value, path: &str) -> String {
    let mut cur = object;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// A field selector: a conjunction of [`FieldRequirement`]s. The default
/// (empty) selector matches every object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the Kubernetes query-string syntax, e.g.
    /// `metadata.name=web,status.phase!=Running`. `\,`, `\=` and `\\`
    /// escape those characters in values.
    pub fn parse(input: &str) -> Result<Self, StoreError> {
        if input.len() > 64 * 1024 {
            return Err(StoreError::BadRequest(
                "invalid field selector: longer than 65536 bytes".into(),
            ));
        }
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (path, operator, value) = split_field_term(term).ok_or_else(|| {
                StoreError::BadRequest(format!(
                    "invalid field selector {input:?}: can't understand {term:?} (expected path=value, path==value or path!=value)"
                ))
            })?;
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(StoreError::BadRequest(format!(
                    "invalid field selector {input:?}: invalid field path {path:?}"
                )));
            }
            let value = unescape_field_value(value.trim()).map_err(|m| {
                StoreError::BadRequest(format!("invalid field selector {input:?}: {m}"))
            })?;
            requirements.push(FieldRequirement {
                path: path.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// A selector requiring `path` to equal `value`, the common case.
    pub fn equals(path: &str, value: &str) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                path: path.into(),
                operator: FieldOperator::Equals,
                value: value.into(),
            }],
        }
    }

    /// The requirements, all of which must hold.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            let mut escaped = String::with_capacity(r.value.len());
            for c in r.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            write!(f, "{}{op}{escaped}", r.path)?;
        }
        Ok(())
    }
}

/// Splits on `sep` where it is not preceded by an escaping backslash.
fn split_unescaped(input: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&input[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&input[start..]);
    parts
}

/// Finds the first unescaped operator in a term.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], kind, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_field_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence \"\\{e}\" in {value:?}")),
                None => return Err(format!("trailing backslash in {value:?}")),
            },
            ',' | '=' => {
                return Err(format!(
                    "invalid value {value:?}: unescaped {c:?} (escape it as \\{c})"
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default", "labels": labels},
               "spec": {"nodeName": "n1", "replicas": 3, "paused": false},
               "status": {"phase": "Running"}})
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn empty_selectors_match_everything() {
        assert!(sel("").is_empty());
        assert!(sel("   ").is_empty());
        assert_eq!(sel(""), LabelSelector::default());
        assert!(sel("").matches(&json!({})));
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::default().matches(&json!(null)));
    }

    #[test]
    fn label_equality_operators() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        assert!(sel("app=web").matches(&p));
        assert!(sel("app==web").matches(&p));
        assert!(sel("app = web , tier == front").matches(&p));
        assert!(!sel("app=db").matches(&p));
        assert!(sel("app!=db").matches(&p));
        assert!(!sel("app!=web").matches(&p));
        // != matches objects without the label, as in Kubernetes.
        assert!(sel("missing!=x").matches(&p));
        assert!(!sel("missing=x").matches(&p));
        assert!(sel("app=web,tier=front").matches(&p));
        assert!(!sel("app=web,tier=back").matches(&p));
        // No labels at all.
        assert!(!sel("app=web").matches(&json!({"metadata": {}})));
        assert!(sel("app!=web").matches(&json!({})));
    }

    #[test]
    fn label_set_and_existence_operators() {
        let p = pod(json!({"env": "prod", "example.com/team": "a"}));
        assert!(sel("env in (prod, staging)").matches(&p));
        assert!(sel("env in(prod)").matches(&p));
        assert!(!sel("env in (dev)").matches(&p));
        assert!(sel("env notin (dev,qa)").matches(&p));
        assert!(!sel("env notin (prod)").matches(&p));
        assert!(sel("other notin (prod)").matches(&p));
        assert!(!sel("other in (prod)").matches(&p));
        assert!(sel("env").matches(&p));
        assert!(sel("example.com/team").matches(&p));
        assert!(!sel("!env").matches(&p));
        assert!(sel("!other").matches(&p));
        assert!(sel(" ! other ").matches(&p));
        assert!(!sel("other").matches(&p));
        assert!(sel("env,!other,env in (prod),example.com/team=a").matches(&p));
    }

    #[test]
    fn label_keywords_can_be_keys_and_values() {
        let p = pod(json!({"in": "notin"}));
        assert!(sel("in=notin").matches(&p));
        assert!(sel("in in (notin)").matches(&p));
    }

    #[test]
    fn label_numeric_comparisons() {
        let p = pod(json!({"size": "5"}));
        assert!(sel("size>3").matches(&p));
        assert!(!sel("size>5").matches(&p));
        assert!(sel("size<10").matches(&p));
        assert!(!sel("other<10").matches(&p));
        assert!(LabelSelector::parse("size>x").is_err());
    }

    #[test]
    fn label_empty_values() {
        let p = pod(json!({"a": ""}));
        assert!(sel("a=").matches(&p));
        assert!(sel("a=,b!=").matches(&p));
        assert!(sel("a in (x,)").matches(&p));
        assert!(!sel("a in (x)").matches(&p));
    }

    #[test]
    fn label_syntax_errors_are_bad_requests() {
        for bad in [
            "a in ()",
            "a in (x",
            "a in x",
            "a=b=c",
            "a b",
            ",a",
            "a,",
            "a,,b",
            "!",
            "!a=b",
            "=b",
            "a=(b)",
            "a notin",
            "a=b)",
            "-a=b",
            "a=b/c",
            "a=-b",
            "UPPER.example.com/x=y",
            "a>",
        ] {
            match LabelSelector::parse(bad) {
                Err(StoreError::BadRequest(msg)) => assert!(!msg.is_empty()),
                other => panic!("{bad:?} parsed: {other:?}"),
            }
        }
        let err = LabelSelector::parse("a in (x").unwrap_err().to_string();
        assert!(err.contains("end of string"), "{err}");
    }

    #[test]
    fn label_display_round_trips() {
        for s in [
            "a=b",
            "a!=b",
            "a in (x,y)",
            "a notin (x)",
            "a",
            "!a",
            "a>3",
            "k8s.io/app=web,!x",
        ] {
            let parsed = sel(s);
            assert_eq!(sel(&parsed.to_string()), parsed, "{s}");
        }
        assert_eq!(sel("a in (y, x, x)").to_string(), "a in (x,y)");
    }

    #[test]
    fn label_selector_from_json() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert_eq!(s, sel("app=web,env in (prod),!legacy"));
        assert!(LabelSelector::from_json(&Value::Null).unwrap().is_empty());
        assert!(
            LabelSelector::from_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
            )
            .is_err()
        );
    }

    #[test]
    fn field_selectors() {
        let p = pod(json!({}));
        let f = |s: &str| FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert!(f("metadata.name=p").matches(&p));
        assert!(f("metadata.name==p").matches(&p));
        assert!(!f("metadata.name!=p").matches(&p));
        assert!(f("metadata.namespace=default,spec.nodeName=n1").matches(&p));
        assert!(!f("metadata.namespace=default,spec.nodeName=n2").matches(&p));
        assert!(f("status.phase!=Pending").matches(&p));
        assert!(f("spec.replicas=3").matches(&p));
        assert!(f("spec.paused=false").matches(&p));
        // Missing fields compare as the empty string.
        assert!(f("spec.missing=").matches(&p));
        assert!(f("spec.missing!=x").matches(&p));
        assert!(!f("spec.missing=x").matches(&p));
        assert!(f("involvedObject.kind=").matches(&p));
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "a,b"}, "type": "Warning"});
        assert!(f("involvedObject.kind=Pod,type=Warning").matches(&ev));
        assert!(f(r"involvedObject.name=a\,b").matches(&ev));
        assert!(f(" type = Warning ").matches(&ev));
    }

    #[test]
    fn field_selector_errors_and_display() {
        for bad in ["metadata.name", "=x", "a..b=x", r"a=x\y", r"a=x\", "a=b=c"] {
            assert!(
                matches!(FieldSelector::parse(bad), Err(StoreError::BadRequest(_))),
                "{bad:?}"
            );
        }
        let s = FieldSelector::parse(r"a.b=x\,y,c!=z").unwrap();
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
        assert_eq!(s.requirements()[0].value, "x,y");
        assert_eq!(
            FieldSelector::equals("spec.nodeName", "n1"),
            FieldSelector::parse("spec.nodeName=n1").unwrap()
        );
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9._-]{0,6}[a-z0-9])?"
        }

        fn requirement() -> impl Strategy<Value = String> {
            (
                name(),
                name(),
                proptest::collection::vec(name(), 1..3),
                0..6u8,
            )
                .prop_map(|(k, v, vs, op)| match op {
                    0 => format!("{k}={v}"),
                    1 => format!("{k} != {v}"),
                    2 => format!("{k} in ({})", vs.join(", ")),
                    3 => format!("{k} notin ({})", vs.join(",")),
                    4 => k,
                    _ => format!("!{k}"),
                })
        }

        proptest! {
            #[test]
            fn label_parse_never_panics(s in "\\PC{0,40}") {
                let _ = LabelSelector::parse(&s);
                let _ = FieldSelector::parse(&s);
            }

            #[test]
            fn label_selectors_round_trip(reqs in proptest::collection::vec(requirement(), 0..5)) {
                let text = reqs.join(",");
                let parsed = LabelSelector::parse(&text).unwrap();
                prop_assert_eq!(parsed.requirements().len(), reqs.len());
                prop_assert_eq!(LabelSelector::parse(&parsed.to_string()).unwrap(), parsed);
            }
        }
    }
}
