//! Nomad's API JSON form of a job (`{"Job": {…}}`, PascalCase keys, durations in nanoseconds),
//! read with positions so an unknown key or a wrong type is reported at line:col. It is
//! decoded as Nomad's Go decoder (encoding/json) does: keys match exactly, then ignoring
//! case; `null` means the zero value; an unknown key is ignored — here with a warning naming
//! it, its place and the nearest known key — so that tools written for a newer Nomad keep
//! working. Keys Nomad has removed from its API ([`schema::REMOVED_API_KEYS`]) warn with the
//! reason. A value of the wrong type is still an error. (HCL jobspecs stay strict: there an
//! unknown key is an error.)

use serde_json::{Map, Value as Json};

use super::error::{
    Diagnostics, FieldPath, JobspecError, JobspecErrors, Positions, SourcePos, Warning,
};
use super::limits::{json_nesting_exceeds, Limits};
use super::schema::{self, Kind, Schema};
use super::source::Source;

/// A JSON value with the byte offset where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Spanned {
    pub at: usize,
    pub v: JValue,
}

#[derive(Debug, Clone, Default)]
pub(crate) enum JValue {
    #[default]
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Spanned>),
    /// Members in source order, each with the offset of its key.
    Obj(Vec<(String, usize, Spanned)>),
}

impl JValue {
    fn type_name(&self) -> &'static str {
        match self {
            JValue::Null => "null",
            JValue::Bool(_) => "a bool",
            JValue::Num(_) => "a number",
            JValue::Str(_) => "a string",
            JValue::Arr(_) => "an array",
            JValue::Obj(_) => "an object",
        }
    }
}

impl Spanned {
    /// The plain JSON value, dropping positions.
    pub fn to_json(&self) -> Json {
        match &self.v {
            JValue::Null => Json::Null,
            JValue::Bool(b) => Json::Bool(*b),
            JValue::Num(n) => Json::Number(n.clone()),
            JValue::Str(s) => Json::String(s.clone()),
            JValue::Arr(a) => Json::Array(a.iter().map(Spanned::to_json).collect()),
            JValue::Obj(m) => {
                Json::Object(m.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// A JSON parser that keeps offsets. Recursion is bounded by the nesting pre-check.
struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

type PResult<T> = Result<T, (usize, String)>;

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b) = self.s.get(self.i) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn value(&mut self) -> PResult<Spanned> {
        self.ws();
        let at = self.i;
        let v = match self.s.get(self.i) {
            None => return Err((at, "unexpected end of input".into())),
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let kat = self.i;
                        if self.s.get(self.i) != Some(&b'"') {
                            return Err((self.i, "expected a quoted key".into()));
                        }
                        let k = self.string()?;
                        self.ws();
                        if self.s.get(self.i) != Some(&b':') {
                            return Err((self.i, "expected ':' after the key".into()));
                        }
                        self.i += 1;
                        let v = self.value()?;
                        members.push((k, kat, v));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err((self.i, "expected ',' or '}'".into())),
                        }
                    }
                }
                JValue::Obj(members)
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err((self.i, "expected ',' or ']'".into())),
                        }
                    }
                }
                JValue::Arr(items)
            }
            Some(b'"') => JValue::Str(self.string()?),
            Some(b't') => self.word("true", JValue::Bool(true))?,
            Some(b'f') => self.word("false", JValue::Bool(false))?,
            Some(b'n') => self.word("null", JValue::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while let Some(b) = self.s.get(self.i) {
                    if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let text = &self.text[start..self.i];
                let n: serde_json::Number = text
                    .parse()
                    .map_err(|_| (start, format!("invalid number {text:?}")))?;
                JValue::Num(n)
            }
            Some(_) => return Err((at, "expected a JSON value".into())),
        };
        Ok(Spanned { at, v })
    }

    fn word(&mut self, w: &str, v: JValue) -> PResult<JValue> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err((self.i, "expected a JSON value".into()))
        }
    }

    fn string(&mut self) -> PResult<String> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err((start, "unterminated string".into()));
            };
            match b {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let esc = self.s.get(self.i + 1).copied();
                    self.i += 2;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i) == Some(&b'\\')
                                    && self.s.get(self.i + 1) == Some(&b'u')
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    let code = 0x10000
                                        + ((hi - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF);
                                    char::from_u32(code)
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err((self.i - 2, "invalid escape in string".into())),
                    }
                }
                0..=0x1f => return Err((self.i, "control character in string; escape it".into())),
                _ => {
                    // Copy one UTF-8 character.
                    let rest = &self.text[self.i..];
                    let c = rest.chars().next().unwrap_or('\u{FFFD}');
                    out.push(c);
                    self.i += c.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> PResult<u32> {
        let h = self
            .text
            .get(self.i..self.i + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or((self.i, "invalid \\u escape".to_string()))?;
        self.i += 4;
        Ok(h)
    }
}

/// Parses JSON text keeping positions.
pub(crate) fn parse_spanned(src: &Source<'_>, limits: &Limits) -> Result<Spanned, JobspecErrors> {
    if src.text.len() > limits.max_bytes {
        return Err(JobspecErrors::one(
            "",
            format!(
                "{} is {} bytes, more than the limit of {} bytes",
                src.name,
                src.text.len(),
                limits.max_bytes
            ),
        ));
    }
    let max = super::limits::json_depth_limit(limits);
    if let Some(at) = json_nesting_exceeds(src.text, max) {
        return Err(JobspecError::new(
            Some(src.pos(at)),
            "",
            format!("nesting is deeper than {max} levels"),
        )
        .into());
    }
    let mut p = Parser {
        s: src.text.as_bytes(),
        text: src.text,
        i: 0,
    };
    let v = p.value().map_err(|(at, m)| {
        JobspecErrors::from(JobspecError::new(
            Some(src.pos(at)),
            "",
            format!("invalid JSON: {m}"),
        ))
    })?;
    p.ws();
    if p.i < src.text.len() {
        return Err(JobspecError::new(
            Some(src.pos(p.i)),
            "",
            "invalid JSON: unexpected text after the job object",
        )
        .into());
    }
    Ok(v)
}

/// What surrounds the job object in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Envelope {
    /// A file: `{"Job": {…}}` or the job object alone.
    File,
    /// An API request body: the job under `"Job"`, next to the request's own keys
    /// (`EnforceIndex`, …), which the caller reads.
    Request,
}

/// Decodes the API form of a job to clean JSON (nulls dropped, canonical key names).
pub(crate) fn decode(
    src: &Source<'_>,
    limits: &Limits,
    envelope: Envelope,
) -> Result<(Json, Positions, Vec<Warning>), JobspecErrors> {
    let root = parse_spanned(src, limits)?;
    let job = match &root.v {
        JValue::Obj(members) => {
            let wrapped = members
                .iter()
                .find(|(k, _, _)| k.eq_ignore_ascii_case("Job"));
            match wrapped {
                Some((_, _, inner)) if members.len() == 1 || envelope == Envelope::Request => {
                    inner.clone()
                }
                None if envelope == Envelope::Request => {
                    return Err(JobspecError::new(
                        Some(src.pos(root.at)),
                        "",
                        "missing \"Job\" object",
                    )
                    .into())
                }
                Some((_, _, _)) => {
                    let (k, at, _) = members
                        .iter()
                        .find(|(k, _, _)| !k.eq_ignore_ascii_case("Job"))
                        .cloned()
                        .unwrap_or_default();
                    return Err(JobspecError::new(
                        Some(src.pos(at)),
                        "",
                        format!("unexpected key {k:?} next to \"Job\"; the file holds {{\"Job\": {{…}}}} or the job object alone"),
                    )
                    .into());
                }
                None => root.clone(),
            }
        }
        other => {
            return Err(JobspecError::new(
                Some(src.pos(root.at)),
                "",
                format!("a JSON job must be an object, got {}", other.type_name()),
            )
            .into())
        }
    };
    let mut w = Walker {
        src,
        diags: Diagnostics::default(),
        positions: Positions::new(),
        limits,
    };
    let out = w.object(&job, &schema::JOB, &FieldPath::root(), true);
    if w.diags.has_errors() {
        return Err(w.diags.into_errors());
    }
    Ok((out, w.positions, w.diags.warnings))
}

impl Default for Spanned {
    fn default() -> Self {
        Spanned {
            at: 0,
            v: JValue::Null,
        }
    }
}

struct Walker<'a> {
    src: &'a Source<'a>,
    diags: Diagnostics,
    positions: Positions,
    limits: &'a Limits,
}

impl Walker<'_> {
    fn pos(&self, at: usize) -> Option<SourcePos> {
        Some(self.src.pos(at))
    }

    fn object(
        &mut self,
        v: &Spanned,
        schema: &'static Schema,
        path: &FieldPath,
        is_job: bool,
    ) -> Json {
        let JValue::Obj(members) = &v.v else {
            self.diags.error(
                self.pos(v.at),
                &path.to_string(),
                format!("{} must be an object, got {}", schema.name, v.v.type_name()),
            );
            return Json::Null;
        };
        if let Some(p) = self.pos(v.at) {
            self.positions.insert(path.api_key().to_string(), p);
        }
        let mut out = Map::new();
        for (key, kat, value) in members {
            let Some(field) = schema.api_field(key) else {
                if is_job {
                    if let Some((_, why)) = schema::REMOVED_API_KEYS
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    {
                        self.diags.warn(
                            self.pos(*kat),
                            &path.field(key).to_string(),
                            format!("{key} is ignored: {why}"),
                        );
                        continue;
                    }
                }
                self.unknown_key(key, *kat, schema, path);
                continue;
            };
            if matches!(value.v, JValue::Null) {
                continue;
            }
            if out.contains_key(field.api) {
                self.diags.warn(
                    self.pos(*kat),
                    &path.field(key).to_string(),
                    format!("{key} appears twice; the last one is used"),
                );
            }
            let fpath = path.field(field.api).key(field.api);
            if let Some(p) = self.pos(value.at) {
                self.positions.insert(fpath.api_key().to_string(), p);
            }
            if let Some(j) = self.field(value, field.kind, &fpath) {
                out.insert(field.api.to_string(), j);
            }
        }
        Json::Object(out)
    }

    /// Go's decoder drops a key it has no field for, so a job written for a newer Nomad
    /// still decodes; the warning says what was dropped, in case it was a typo.
    fn unknown_key(&mut self, key: &str, at: usize, schema: &'static Schema, path: &FieldPath) {
        let names: Vec<&str> = schema.fields.iter().map(|f| f.api).collect();
        let hint = match super::suggest::closest(key, &names) {
            Some(n) => format!("; did you mean {n:?}?"),
            None => String::new(),
        };
        self.diags.warn(
            self.pos(at),
            &path.field(key).to_string(),
            format!("unknown key {key:?} in {}, ignored{hint}", schema.name),
        );
    }

    fn err(&mut self, v: &Spanned, path: &FieldPath, msg: String) -> Option<Json> {
        self.diags.error(self.pos(v.at), &path.to_string(), msg);
        None
    }

    fn field(&mut self, v: &Spanned, kind: Kind, path: &FieldPath) -> Option<Json> {
        match (kind, &v.v) {
            (Kind::Str, JValue::Str(s)) => Some(Json::String(s.clone())),
            (Kind::Bool, JValue::Bool(b)) => Some(Json::Bool(*b)),
            (Kind::Int | Kind::Dur, JValue::Num(n)) => match n.as_i64() {
                Some(i) if matches!(kind, Kind::Dur) && i < 0 => self.err(
                    v,
                    path,
                    format!("a duration must not be negative (got {i} ns)"),
                ),
                Some(i) => Some(Json::from(i)),
                None => self.err(v, path, format!("a whole number is required, got {n}")),
            },
            (Kind::StrList | Kind::IntList, JValue::Arr(items)) => {
                if items.len() > self.limits.max_list_len {
                    return self.err(
                        v,
                        path,
                        format!(
                            "has {} elements, more than the limit of {}",
                            items.len(),
                            self.limits.max_list_len
                        ),
                    );
                }
                let elem = if matches!(kind, Kind::StrList) {
                    Kind::Str
                } else {
                    Kind::Int
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.field(item, elem, &path.index(i))?);
                }
                Some(Json::Array(out))
            }
            (Kind::StrMap | Kind::StrListMap, JValue::Obj(members)) => {
                let elem = if matches!(kind, Kind::StrMap) {
                    Kind::Str
                } else {
                    Kind::StrList
                };
                let mut out = Map::new();
                for (k, _, item) in members {
                    if matches!(item.v, JValue::Null) {
                        continue;
                    }
                    if let Some(j) = self.field(item, elem, &path.field(k)) {
                        out.insert(k.clone(), j);
                    }
                }
                Some(Json::Object(out))
            }
            (Kind::FreeForm, JValue::Obj(_)) | (Kind::Opaque, _) => Some(v.to_json()),
            (Kind::Block(s), JValue::Obj(_)) => Some(self.object(v, s, path, false)),
            (Kind::Blocks(s) | Kind::Labeled(s), JValue::Arr(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if matches!(item.v, JValue::Null) {
                        continue;
                    }
                    out.push(self.object(item, s, &path.index(i).key(&i.to_string()), false));
                }
                Some(Json::Array(out))
            }
            (Kind::LabeledMap(s), JValue::Obj(members)) => {
                let mut out = Map::new();
                for (k, _, item) in members {
                    if matches!(item.v, JValue::Null) {
                        continue;
                    }
                    out.insert(
                        k.clone(),
                        self.object(item, s, &path.field(k).key(k), false),
                    );
                }
                Some(Json::Object(out))
            }
            (kind, other) => {
                let want = match kind {
                    Kind::Str => "a string",
                    Kind::Int => "a whole number",
                    Kind::Bool => "true or false",
                    Kind::Dur => "a duration in nanoseconds (a whole number)",
                    Kind::StrList => "an array of strings",
                    Kind::IntList => "an array of numbers",
                    Kind::StrMap => "an object of strings",
                    Kind::StrListMap => "an object of string arrays",
                    Kind::FreeForm | Kind::Block(_) | Kind::LabeledMap(_) => "an object",
                    Kind::Blocks(_) | Kind::Labeled(_) => "an array of objects",
                    Kind::Opaque => "any value",
                };
                let got = other.type_name();
                self.err(v, path, format!("{want} is required, got {got}"))
            }
        }
    }
}
