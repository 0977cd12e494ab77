//! Walks a `job` block of the `hcl-edit` syntax tree against the [`schema`](super::schema) and
//! produces the job in Nomad's API shape (a JSON object with PascalCase keys), with every error
//! carrying its file:line:col and field path. Expressions are evaluated on the way through
//! ([`Evaluator`]), `dynamic` blocks are expanded, and Nomad's HCL-only shorthands (constraint
//! `distinct_hosts = true`, `port "http" {}`, job-level `task`, `vault` inheritance, task
//! `scaling "cpu"`) are turned into their API form.

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Block, BlockLabel, Body, Structure};
use hcl_edit::Span;
use serde_json::{Map, Value as Json};

use super::error::{Diagnostics, FieldPath, Positions, SourcePos};
use super::eval::{Env, EvalError, Evaluator};
use super::limits::Limits;
use super::schema::{self, Field, Kind, Schema};
use super::suggest::closest;
use super::value::Value;

/// A block as the decoder sees it: written in the file, or produced by a `dynamic` block.
struct BlockView<'b> {
    ident: String,
    ident_span: Option<Range<usize>>,
    labels: Vec<(String, Option<Range<usize>>)>,
    body: &'b Body,
    span: Option<Range<usize>>,
}

impl<'b> BlockView<'b> {
    fn of(b: &'b Block) -> Self {
        BlockView {
            ident: b.ident.as_str().to_string(),
            ident_span: b.ident.span(),
            labels: b
                .labels
                .iter()
                .map(|l| (l.as_str().to_string(), label_span(l)))
                .collect(),
            body: &b.body,
            span: b.span(),
        }
    }
}

fn label_span(l: &BlockLabel) -> Option<Range<usize>> {
    match l {
        BlockLabel::Ident(i) => i.span(),
        BlockLabel::String(s) => s.span(),
    }
}

/// What has been decoded for one field of a body so far.
enum Slot {
    One(Json, Option<SourcePos>),
    Many(Vec<Json>),
    Map(Map<String, Json>),
}

/// Fields decoded from one body, plus the HCL-only blocks handled after the body.
#[derive(Default)]
struct Acc {
    slots: BTreeMap<&'static str, Slot>,
    /// Attribute names seen, to reject a duplicate.
    seen_attrs: BTreeMap<String, Option<SourcePos>>,
    /// job/group-level `vault`, inherited by tasks that have none.
    vault: Option<(Json, Option<SourcePos>)>,
    /// job/group-level `secret` blocks, added to every task.
    secrets: Vec<Json>,
    /// job-level `task` blocks: each becomes a group of its own.
    tasks: Vec<Json>,
    /// task `scaling "cpu"|"mem"` blocks.
    scaling: Vec<Json>,
    scaling_seen: BTreeMap<String, Option<SourcePos>>,
}

/// The job-level extras, passed down so groups and tasks inherit them.
#[derive(Clone, Default)]
struct Inherited {
    vault: Option<Json>,
    secrets: Vec<Json>,
}

pub(crate) struct Decoder<'a> {
    ev: &'a Evaluator<'a>,
    limits: &'a Limits,
    pub diags: Diagnostics,
    /// Where each API key was written, for validation messages.
    pub positions: Positions,
    /// Blocks decoded so far, against the limit.
    blocks: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(ev: &'a Evaluator<'a>, limits: &'a Limits) -> Self {
        Decoder {
            ev,
            limits,
            diags: Diagnostics::default(),
            positions: Positions::new(),
            blocks: 0,
        }
    }

    fn pos(&self, span: Option<Range<usize>>) -> Option<SourcePos> {
        self.ev.src().span_pos(span)
    }

    fn remember(&mut self, path: &FieldPath, span: Option<Range<usize>>) {
        if let Some(p) = self.pos(span) {
            self.positions.insert(path.api_key().to_string(), p);
        }
    }

    fn error(&mut self, span: Option<Range<usize>>, path: &FieldPath, msg: impl Into<String>) {
        let pos = self.pos(span);
        self.diags.error(pos, &path.to_string(), msg);
    }

    fn eval_error(&mut self, e: EvalError, fallback: Option<Range<usize>>, path: &FieldPath) {
        let span = e.span.or(fallback);
        self.error(span, path, e.message);
    }

    fn eval(&mut self, expr: &Expression, env: &Env<'_>, path: &FieldPath) -> Option<Value> {
        match self.ev.eval(expr, env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.eval_error(e, expr.span(), path);
                None
            }
        }
    }

    /// Decodes `job "id" { … }` into Nomad's API job object.
    pub fn decode_job(&mut self, block: &Block) -> Json {
        let view = BlockView::of(block);
        let path = FieldPath::root();
        let Some(id) = self.single_label(&view, &path, "job") else {
            return Json::Null;
        };
        let job_path = FieldPath::root().labeled("job", &id);
        self.remember(&job_path, view.ident_span.clone());
        let (mut obj, acc) = self.decode_body(view.body, &schema::JOB, &job_path, &Env::Empty);
        self.rekey_job_tasks(acc.tasks.len());
        if !obj.contains_key("ID") {
            obj.insert("ID".into(), Json::String(id.clone()));
        }
        if !obj.contains_key("Name") {
            obj.insert("Name".into(), Json::String(id));
        }
        let inherited = Inherited {
            vault: acc.vault.map(|(v, _)| v),
            secrets: acc.secrets,
        };
        // Job-level tasks become groups of their own, ahead of the declared groups.
        let mut groups: Vec<Json> = acc
            .tasks
            .into_iter()
            .map(|task| {
                let mut g = Map::new();
                let name = task.get("Name").cloned().unwrap_or(Json::Null);
                g.insert("Name".into(), name);
                g.insert("Tasks".into(), Json::Array(vec![task]));
                Json::Object(g)
            })
            .collect();
        if let Some(Json::Array(declared)) = obj.remove("TaskGroups") {
            groups.extend(declared);
        }
        for g in &mut groups {
            normalize_group(g, &inherited);
        }
        if !groups.is_empty() {
            obj.insert("TaskGroups".into(), Json::Array(groups));
        }
        if let Some(Json::Object(p)) = obj.get_mut("Periodic") {
            if p.contains_key("Spec") || p.contains_key("Specs") {
                p.insert("SpecType".into(), Json::String("cron".into()));
            }
        }
        Json::Object(obj)
    }

    /// Job-level tasks become the first groups: shift the keys recorded for declared groups
    /// and give the tasks their final keys.
    fn rekey_job_tasks(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let old = std::mem::take(&mut self.positions);
        for (k, p) in old {
            let new_key = if let Some(rest) = k.strip_prefix("__jobtask.") {
                let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let sep = if tail.is_empty() { "" } else { "." };
                format!("TaskGroups.{idx}.Tasks.0{sep}{tail}")
            } else if let Some(rest) = k.strip_prefix("TaskGroups.") {
                let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
                match idx.parse::<usize>() {
                    Ok(i) => {
                        let sep = if tail.is_empty() { "" } else { "." };
                        format!("TaskGroups.{}{sep}{tail}", i + count)
                    }
                    Err(_) => k,
                }
            } else {
                k
            };
            self.positions.insert(new_key, p);
        }
    }

    fn single_label(
        &mut self,
        view: &BlockView<'_>,
        path: &FieldPath,
        what: &str,
    ) -> Option<String> {
        match view.labels.as_slice() {
            [(l, _)] => Some(l.clone()),
            [] => {
                self.error(
                    view.ident_span.clone(),
                    path,
                    format!("{what} block needs a name: write {what} \"name\" {{ … }}"),
                );
                None
            }
            [_, (_, span), ..] => {
                self.error(
                    span.clone(),
                    path,
                    format!("{what} block takes one label, got {}", view.labels.len()),
                );
                None
            }
        }
    }

    /// Decodes a body against a schema.
    fn decode_body(
        &mut self,
        body: &Body,
        schema: &'static Schema,
        path: &FieldPath,
        env: &Env<'_>,
    ) -> (Map<String, Json>, Acc) {
        let mut acc = Acc::default();
        let mut shorthand: Vec<(String, Value, Option<Range<usize>>)> = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    self.attribute(attr, schema, path, env, &mut acc, &mut shorthand)
                }
                Structure::Block(b) => {
                    if b.ident.as_str() == "dynamic" && schema.hcl_field("dynamic").is_none() {
                        self.dynamic(b, path, env, &mut |me, view, env2| {
                            me.block(view, schema, path, env2, &mut acc)
                        });
                    } else {
                        self.block(BlockView::of(b), schema, path, env, &mut acc);
                    }
                }
            }
        }
        let mut out = Map::new();
        for (api, slot) in std::mem::take(&mut acc.slots) {
            let v = match slot {
                Slot::One(v, _) => v,
                Slot::Many(items) => Json::Array(items),
                Slot::Map(m) => Json::Object(m),
            };
            out.insert(api.to_string(), v);
        }
        if std::ptr::eq(schema, &schema::CONSTRAINT) || std::ptr::eq(schema, &schema::AFFINITY) {
            apply_shorthand(
                &mut out,
                shorthand,
                std::ptr::eq(schema, &schema::CONSTRAINT),
            );
        }
        (out, acc)
    }

    /// Expands `dynamic "name" { for_each = …  iterator = …  labels = […]  content { … } }`,
    /// calling `each` with every generated block and the iterator bound.
    fn dynamic(
        &mut self,
        b: &Block,
        path: &FieldPath,
        env: &Env<'_>,
        each: &mut dyn FnMut(&mut Self, BlockView<'_>, &Env<'_>),
    ) {
        let Some(name) = (match b.labels.as_slice() {
            [l] => Some(l.as_str().to_string()),
            _ => None,
        }) else {
            self.error(
                b.ident.span(),
                path,
                "a dynamic block takes one label: the type of block to generate",
            );
            return;
        };
        let dpath = path.labeled("dynamic", &name);
        let mut for_each = None;
        let mut iterator = name.clone();
        let mut labels_expr = None;
        let mut content = None;
        for s in b.body.iter() {
            match s {
                Structure::Attribute(a) => match a.key.as_str() {
                    "for_each" => for_each = Some(&a.value),
                    "iterator" => match &a.value {
                        Expression::Variable(v) => iterator = v.as_str().to_string(),
                        other => self.error(
                            other.span(),
                            &dpath.field("iterator"),
                            "iterator must be a bare name, like iterator = port",
                        ),
                    },
                    "labels" => labels_expr = Some(&a.value),
                    other => self.error(
                        a.key.span(),
                        &dpath,
                        format!("unknown argument {other:?} in a dynamic block; use for_each, iterator, labels and a content block"),
                    ),
                },
                Structure::Block(cb) if cb.ident.as_str() == "content" => {
                    if content.is_some() {
                        self.error(cb.ident.span(), &dpath, "a dynamic block takes one content block");
                    }
                    content = Some(&cb.body);
                }
                Structure::Block(other) => self.error(
                    other.ident.span(),
                    &dpath,
                    format!("unexpected block {:?} in a dynamic block; put the generated block's body in content {{ … }}", other.ident.as_str()),
                ),
            }
        }
        let (Some(for_each), Some(content)) = (for_each, content) else {
            self.error(
                b.ident.span(),
                &dpath,
                "a dynamic block needs for_each and a content block",
            );
            return;
        };
        let Some(coll) = self.eval(for_each, env, &dpath.field("for_each")) else {
            return;
        };
        let items: Vec<(Value, Value)> = match coll {
            Value::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::int(i as i64), v))
                .collect(),
            Value::Object(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
            Value::Null => Vec::new(),
            other => {
                self.error(
                    for_each.span(),
                    &dpath.field("for_each"),
                    format!("for_each needs a list or a map, got {}", other.describe()),
                );
                return;
            }
        };
        for (key, value) in items {
            let mut it = BTreeMap::new();
            it.insert("key".to_string(), key);
            it.insert("value".to_string(), value);
            let it = Value::Object(it);
            let env2 = Env::Bind {
                name: &iterator,
                value: &it,
                parent: env,
            };
            let mut labels = Vec::new();
            if let Some(le) = labels_expr {
                match self.eval(le, &env2, &dpath.field("labels")) {
                    Some(Value::List(ls)) => {
                        for l in ls {
                            match l.to_str() {
                                Ok(s) => labels.push((s, le.span())),
                                Err(m) => self.error(le.span(), &dpath.field("labels"), m),
                            }
                        }
                    }
                    Some(other) => self.error(
                        le.span(),
                        &dpath.field("labels"),
                        format!("labels must be a list of strings, got {}", other.describe()),
                    ),
                    None => {}
                }
            }
            let view = BlockView {
                ident: name.clone(),
                ident_span: b.ident.span(),
                labels,
                body: content,
                span: b.span(),
            };
            each(self, view, &env2);
        }
    }

    fn unknown(
        &mut self,
        span: Option<Range<usize>>,
        path: &FieldPath,
        schema: &Schema,
        name: &str,
        what: &str,
    ) {
        let names = schema.hcl_names();
        let mut msg = format!("unknown {what} {name:?} in {}", schema.name);
        if let Some(s) = closest(name, &names) {
            msg.push_str(&format!("; did you mean {s:?}?"));
        } else if !names.is_empty() {
            msg.push_str(&format!("; valid ones are: {}", names.join(", ")));
        }
        self.error(span, path, msg);
    }

    fn attribute(
        &mut self,
        attr: &Attribute,
        schema: &'static Schema,
        path: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
        shorthand: &mut Vec<(String, Value, Option<Range<usize>>)>,
    ) {
        let key = attr.key.as_str();
        let fpath = path.field(key);
        let here = self.pos(attr.key.span());
        if let Some(first) = acc.seen_attrs.get(key) {
            let at = first
                .as_ref()
                .map(|p| format!(" (first set at line {})", p.line))
                .unwrap_or_default();
            self.error(
                attr.key.span(),
                &fpath,
                format!("{key} is set twice{at}; keep one"),
            );
            return;
        }
        acc.seen_attrs.insert(key.to_string(), here);
        let is_constraint = std::ptr::eq(schema, &schema::CONSTRAINT);
        let is_affinity = std::ptr::eq(schema, &schema::AFFINITY);
        if (is_constraint && CONSTRAINT_SHORTHANDS.contains(&key))
            || (is_affinity && AFFINITY_SHORTHANDS.contains(&key))
        {
            if let Some(v) = self.eval(&attr.value, env, &fpath) {
                shorthand.push((key.to_string(), v, attr.value.span()));
            }
            return;
        }
        let Some(field) = schema.hcl_field(key) else {
            if std::ptr::eq(schema, &schema::JOB) {
                if let Some((_, why)) = schema::REMOVED_HCL_KEYS.iter().find(|(k, _)| *k == key) {
                    let pos = self.pos(attr.key.span());
                    self.diags
                        .warn(pos, &fpath.to_string(), format!("{key} is ignored: {why}"));
                    return;
                }
            }
            if key == "dynamic" || schema_has_block_named(schema, key) {
                self.error(
                    attr.key.span(),
                    &fpath,
                    format!("{key} is a block; write {key} {{ … }} instead of {key} = …"),
                );
            } else {
                self.unknown(attr.key.span(), path, schema, key, "argument");
            }
            return;
        };
        match field.kind {
            Kind::Block(_)
            | Kind::Blocks(_)
            | Kind::Labeled(_)
            | Kind::LabeledMap(_)
            | Kind::FreeForm
            | Kind::Opaque => {
                self.error(
                    attr.key.span(),
                    &fpath,
                    format!("{key} is a block; write {key} {{ … }} instead of {key} = …"),
                );
            }
            _ => {
                let Some(v) = self.eval(&attr.value, env, &fpath) else {
                    return;
                };
                if v.is_null() {
                    return; // null means "not set", as in HCL
                }
                if let Some(j) = self.convert(&v, field, &fpath, attr.value.span()) {
                    self.remember(&fpath.key(field.api), attr.value.span());
                    acc.slots
                        .insert(field.api, Slot::One(j, self.pos(attr.key.span())));
                }
            }
        }
    }

    /// A list whose every element `element` converts, no longer than the list limit.
    fn list_of(
        &self,
        v: &Value,
        what: &str,
        element: impl Fn(&Value) -> Result<Json, String>,
    ) -> Result<Json, String> {
        match v {
            Value::List(items) if items.len() > self.limits.max_list_len => Err(format!(
                "has {} elements, more than the limit of {}",
                items.len(),
                self.limits.max_list_len
            )),
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| element(x).map_err(|m| format!("element {i}: {m}")))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            other => Err(format!(
                "a list of {what} is required, got {}",
                other.describe()
            )),
        }
    }

    /// Converts an evaluated attribute to the JSON its field holds, with HCL's implicit
    /// conversions ("500" for a number, 840 for a string).
    fn convert(
        &mut self,
        v: &Value,
        field: &Field,
        path: &FieldPath,
        span: Option<Range<usize>>,
    ) -> Option<Json> {
        let res: Result<Json, String> = match field.kind {
            Kind::Str => v.to_str().map(Json::String),
            Kind::Int => v.to_i64().map(Json::from),
            Kind::Bool => v.to_bool().map(Json::Bool),
            Kind::Dur => duration_nanos(v).map(Json::from),
            Kind::StrList => self.list_of(v, "strings", |x| x.to_str().map(Json::String)),
            Kind::IntList => self.list_of(v, "numbers", |x| x.to_i64().map(Json::from)),
            Kind::StrMap => match v {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, x)| {
                        x.to_str()
                            .map(|s| (k.clone(), Json::String(s)))
                            .map_err(|e| format!("key {k:?}: {e}"))
                    })
                    .collect::<Result<Map<_, _>, _>>()
                    .map(Json::Object),
                other => Err(format!(
                    "a map of strings is required, got {}",
                    other.describe()
                )),
            },
            _ => Err("internal error: not an attribute kind".to_string()),
        };
        match res {
            Ok(j) => Some(j),
            Err(m) => {
                self.error(span, path, m);
                None
            }
        }
    }

    fn block(
        &mut self,
        view: BlockView<'_>,
        schema: &'static Schema,
        path: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
    ) {
        self.blocks += 1;
        if self.blocks > self.limits.max_blocks {
            if self.blocks == self.limits.max_blocks + 1 {
                self.error(
                    view.ident_span.clone(),
                    path,
                    format!(
                        "the jobspec has more than {} blocks; split it into several jobs",
                        self.limits.max_blocks
                    ),
                );
            }
            return;
        }
        if self.hcl_only_block(&view, schema, path, env, acc) {
            return;
        }
        let ident = view.ident.as_str();
        let Some(field) = schema.hcl_field(ident) else {
            self.unknown(view.ident_span.clone(), path, schema, ident, "block");
            return;
        };
        let bpath = path.field(ident).key(field.api);
        match field.kind {
            Kind::Block(sub) => self.single_block(&view, sub, field.api, &bpath, env, acc),
            Kind::Blocks(sub) => {
                if !self.no_labels(&view, &bpath) {
                    return;
                }
                let n = match acc.slots.get(field.api) {
                    Some(Slot::Many(v)) => v.len(),
                    _ => 0,
                };
                let ipath = bpath.index(n).key(&n.to_string());
                self.remember(&ipath, view.ident_span.clone());
                let (m, _) = self.decode_body(view.body, sub, &ipath, env);
                push_many(acc, field.api, Json::Object(m));
            }
            Kind::Labeled(sub) | Kind::LabeledMap(sub) => {
                self.labeled_block(&view, field, sub, path, env, acc);
            }
            Kind::FreeForm | Kind::Opaque => self.free_block(&view, field, &bpath, env, acc),
            Kind::StrMap | Kind::StrListMap => {
                if acc.slots.contains_key(field.api) {
                    self.error(
                        view.ident_span.clone(),
                        &bpath,
                        format!("{ident} is defined twice; keep one"),
                    );
                    return;
                }
                if !self.no_labels(&view, &bpath) {
                    return;
                }
                self.remember(&bpath, view.ident_span.clone());
                let lists = matches!(field.kind, Kind::StrListMap);
                let m = self.string_map(view.body, &bpath, env, lists);
                let at = self.pos(view.ident_span.clone());
                acc.slots.insert(field.api, Slot::One(Json::Object(m), at));
            }
            _ => {
                self.error(
                    view.ident_span.clone(),
                    &bpath,
                    format!("{ident} is an argument, not a block; write {ident} = …"),
                );
            }
        }
    }

    /// The blocks HCL has and the API's schema does not: job/group `vault` and `secret`
    /// (inherited by tasks), a job-level `task` (a group of its own), task `scaling`.
    /// Returns whether `view` was one of them.
    fn hcl_only_block(
        &mut self,
        view: &BlockView<'_>,
        schema: &'static Schema,
        path: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
    ) -> bool {
        let ident = view.ident.as_str();
        let is_job = std::ptr::eq(schema, &schema::JOB);
        let is_group = std::ptr::eq(schema, &schema::GROUP);
        let is_task = std::ptr::eq(schema, &schema::TASK);
        if (is_job || is_group) && ident == "vault" {
            let bpath = path.field("vault");
            if let Some((_, first)) = &acc.vault {
                self.refuse_second(view, &bpath, first);
            } else if self.no_labels(view, &bpath) {
                let (m, _) = self.decode_body(view.body, &schema::VAULT, &bpath, env);
                acc.vault = Some((Json::Object(m), self.pos(view.ident_span.clone())));
            }
        } else if (is_job || is_group) && ident == "secret" {
            if let Some(name) = self.single_label(view, path, "secret") {
                let bpath = path.labeled("secret", &name);
                let (mut m, _) = self.decode_body(view.body, &schema::SECRET, &bpath, env);
                m.insert("Name".into(), Json::String(name));
                acc.secrets.push(Json::Object(m));
            }
        } else if is_job && ident == "task" {
            if let Some(name) = self.single_label(view, path, "task") {
                let tpath = path
                    .labeled("task", &name)
                    .key("__jobtask")
                    .key(&acc.tasks.len().to_string());
                self.remember(&tpath, view.ident_span.clone());
                let t = self.decode_task(view, &name, &tpath, env);
                acc.tasks.push(t);
            }
        } else if is_task && ident == "scaling" {
            self.task_scaling(view, path, env, acc);
        } else {
            return false;
        }
        true
    }

    /// A second block where only one is allowed: an error pointing at the first.
    fn refuse_second(&mut self, view: &BlockView<'_>, path: &FieldPath, first: &Option<SourcePos>) {
        let at = first
            .as_ref()
            .map(|p| format!(" (the first is at line {})", p.line))
            .unwrap_or_default();
        self.error(
            view.ident_span.clone(),
            path,
            format!("only one {} block is allowed here{at}", view.ident),
        );
    }

    /// A block that may appear once (`Kind::Block`); group `scaling` has its own rules.
    fn single_block(
        &mut self,
        view: &BlockView<'_>,
        sub: &'static Schema,
        api: &'static str,
        bpath: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
    ) {
        if let Some(Slot::One(_, first)) = acc.slots.get(api) {
            self.refuse_second(view, bpath, first);
            return;
        }
        let scaling = std::ptr::eq(sub, &schema::SCALING);
        if let Some((l, span)) = view.labels.first().filter(|_| scaling) {
            // Group scaling: no label, `max` required, horizontal only.
            self.error(span.clone(), bpath, format!("the group scaling block takes no label (got {l:?}); labels \"cpu\"/\"mem\" are for task scaling"));
            return;
        }
        if !self.no_labels(view, bpath) {
            return;
        }
        self.remember(bpath, view.ident_span.clone());
        let (mut m, _) = self.decode_body(view.body, sub, bpath, env);
        if scaling {
            self.check_group_scaling(&mut m, view, bpath);
        }
        let at = self.pos(view.ident_span.clone());
        acc.slots.insert(api, Slot::One(Json::Object(m), at));
    }

    /// A labeled block: kept in a list (`group "web"`) or a map by label (`volume "data"`).
    fn labeled_block(
        &mut self,
        view: &BlockView<'_>,
        field: &Field,
        sub: &'static Schema,
        path: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
    ) {
        let ident = view.ident.as_str();
        let Some(label) = self.single_label(view, path, sub.name) else {
            return;
        };
        let is_port = std::ptr::eq(sub, &schema::PORT);
        if is_port && label.is_empty() {
            self.error(
                view.ident_span.clone(),
                &path.field(ident).key(field.api),
                "a port needs a non-empty label, like port \"http\" {}",
            );
            return;
        }
        let in_map = matches!(field.kind, Kind::LabeledMap(_));
        let lpath = path.labeled(ident, &label).key(field.api);
        let lpath = if in_map {
            lpath.key(&label)
        } else if is_port {
            // Ports move between the static and dynamic lists later: key them by label.
            path.labeled(ident, &label).key("Port").key(&label)
        } else {
            let n = match acc.slots.get(field.api) {
                Some(Slot::Many(v)) => v.len(),
                _ => 0,
            };
            lpath.key(&n.to_string())
        };
        self.remember(&lpath, view.ident_span.clone());
        let obj = if std::ptr::eq(sub, &schema::TASK) {
            self.decode_task(view, &label, &lpath, env)
        } else if std::ptr::eq(sub, &schema::GROUP) {
            self.decode_group(view, &label, &lpath, env)
        } else {
            let (mut m, _) = self.decode_body(view.body, sub, &lpath, env);
            if let Some(lf) = sub.label {
                m.insert(lf.to_string(), Json::String(label.clone()));
            }
            Json::Object(m)
        };
        if !in_map {
            push_many(acc, field.api, obj);
            return;
        }
        let slot = acc
            .slots
            .entry(field.api)
            .or_insert_with(|| Slot::Map(Map::new()));
        if let Slot::Map(m) = slot {
            if m.contains_key(&label) {
                self.error(
                    view.ident_span.clone(),
                    &lpath,
                    format!("{ident} {label:?} is defined twice; names must be unique"),
                );
                return;
            }
            m.insert(label, obj);
        }
    }

    /// A block whose body is kept as written: `config`-like free-form maps (once only) and
    /// opaque blocks.
    fn free_block(
        &mut self,
        view: &BlockView<'_>,
        field: &Field,
        bpath: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
    ) {
        let free_form = matches!(field.kind, Kind::FreeForm);
        if let Some(Slot::One(_, first)) = acc.slots.get(field.api).filter(|_| free_form) {
            self.refuse_second(view, bpath, first);
            return;
        }
        if !self.no_labels(view, bpath) {
            return;
        }
        let m = if free_form {
            self.remember(bpath, view.ident_span.clone());
            self.free_form(view.body, bpath, env, 0)
        } else {
            self.opaque(view.body, bpath, env, 0)
        };
        let at = self.pos(view.ident_span.clone());
        acc.slots.insert(field.api, Slot::One(Json::Object(m), at));
    }

    fn no_labels(&mut self, view: &BlockView<'_>, path: &FieldPath) -> bool {
        if let Some((l, span)) = view.labels.first() {
            self.error(
                span.clone(),
                path,
                format!("the {} block takes no label (got {l:?})", view.ident),
            );
            return false;
        }
        true
    }

    fn decode_group(
        &mut self,
        view: &BlockView<'_>,
        name: &str,
        path: &FieldPath,
        env: &Env<'_>,
    ) -> Json {
        let (mut m, acc) = self.decode_body(view.body, &schema::GROUP, path, env);
        m.insert("Name".into(), Json::String(name.to_string()));
        // Group-level vault and secrets pass to the group's tasks.
        let inherited = Inherited {
            vault: acc.vault.map(|(v, _)| v),
            secrets: acc.secrets,
        };
        let mut g = Json::Object(m);
        normalize_group(&mut g, &inherited);
        g
    }

    fn decode_task(
        &mut self,
        view: &BlockView<'_>,
        name: &str,
        path: &FieldPath,
        env: &Env<'_>,
    ) -> Json {
        let (mut m, acc) = self.decode_body(view.body, &schema::TASK, path, env);
        m.insert("Name".into(), Json::String(name.to_string()));
        if !acc.scaling.is_empty() {
            m.insert("ScalingPolicies".into(), Json::Array(acc.scaling));
        }
        Json::Object(m)
    }

    fn task_scaling(
        &mut self,
        view: &BlockView<'_>,
        path: &FieldPath,
        env: &Env<'_>,
        acc: &mut Acc,
    ) {
        let spath = path.field("scaling");
        let label = match view.labels.as_slice() {
            [(l, _)] => l.to_lowercase(),
            [] => {
                self.error(
                    view.ident_span.clone(),
                    &spath,
                    "a task scaling block needs a label: scaling \"cpu\" or scaling \"mem\"",
                );
                return;
            }
            [_, (_, span), ..] => {
                self.error(
                    span.clone(),
                    &spath,
                    "a task scaling block takes one label: \"cpu\" or \"mem\"",
                );
                return;
            }
        };
        let policy_type = match label.as_str() {
            "cpu" => "vertical_cpu",
            "mem" => "vertical_mem",
            other => {
                self.error(
                    view.labels[0].1.clone(),
                    &spath,
                    format!("scaling policy name must be \"cpu\" or \"mem\" (got {other:?})"),
                );
                return;
            }
        };
        let lpath = path.labeled("scaling", &label);
        if let Some(first) = acc.scaling_seen.get(&label) {
            let at = first
                .as_ref()
                .map(|p| format!(" (the first is at line {})", p.line))
                .unwrap_or_default();
            self.error(
                view.ident_span.clone(),
                &lpath,
                format!("only one scaling {label:?} block is allowed per task{at}"),
            );
            return;
        }
        acc.scaling_seen
            .insert(label.clone(), self.pos(view.ident_span.clone()));
        let lpath = lpath
            .key("ScalingPolicies")
            .key(&acc.scaling.len().to_string());
        self.remember(&lpath, view.ident_span.clone());
        let (mut m, _) = self.decode_body(view.body, &schema::SCALING, &lpath, env);
        match m.get("Type").and_then(Json::as_str) {
            None => {
                m.insert("Type".into(), Json::String(policy_type.into()));
            }
            Some(t) if t == policy_type => {}
            Some(t) => {
                let t = t.to_string();
                self.error(
                    view.ident_span.clone(),
                    &lpath.field("type"),
                    format!("scaling {label:?} must have type {policy_type:?} (got {t:?})"),
                );
                return;
            }
        }
        acc.scaling.push(Json::Object(m));
    }

    fn check_group_scaling(
        &mut self,
        m: &mut Map<String, Json>,
        view: &BlockView<'_>,
        path: &FieldPath,
    ) {
        match m.get("Type").and_then(Json::as_str) {
            None => {
                m.insert("Type".into(), Json::String("horizontal".into()));
            }
            Some("horizontal") => {}
            Some(t) => {
                let t = t.to_string();
                self.error(view.ident_span.clone(), &path.field("type"), format!("a group scaling policy must have type \"horizontal\" (got {t:?}); vertical_cpu/vertical_mem belong in a task's scaling \"cpu\"/\"mem\" block"));
            }
        }
        if !m.contains_key("Max") {
            self.error(
                view.ident_span.clone(),
                &path.field("max"),
                "the group scaling block needs max (the largest count the autoscaler may set)",
            );
        }
    }

    /// `meta { k = "v" }`, `options {}`, `header { X = ["a"] }`: attributes only.
    fn string_map(
        &mut self,
        body: &Body,
        path: &FieldPath,
        env: &Env<'_>,
        lists: bool,
    ) -> Map<String, Json> {
        let mut out = Map::new();
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    let kpath = path.field(k);
                    if out.contains_key(k) {
                        self.error(a.key.span(), &kpath, format!("{k} is set twice; keep one"));
                        continue;
                    }
                    let Some(v) = self.eval(&a.value, env, &kpath) else {
                        continue;
                    };
                    let conv = if lists {
                        match &v {
                            Value::List(items) => items
                                .iter()
                                .map(|x| x.to_str().map(Json::String))
                                .collect::<Result<Vec<_>, _>>()
                                .map(Json::Array),
                            other => Err(format!(
                                "a list of strings is required, got {}; write {k} = [\"…\"]",
                                other.describe()
                            )),
                        }
                    } else {
                        v.to_str().map(Json::String)
                    };
                    match conv {
                        Ok(j) => {
                            out.insert(k.to_string(), j);
                        }
                        Err(m) => self.error(a.value.span(), &kpath, m),
                    }
                }
                Structure::Block(b) => {
                    self.error(
                        b.ident.span(),
                        path,
                        format!(
                            "{} takes only arguments (key = value), not a block {:?}",
                            path,
                            b.ident.as_str()
                        ),
                    );
                }
            }
        }
        out
    }

    /// Free-form data decoded as Nomad's HCL1 parser did, so drivers see the same structure:
    /// an attribute holding an object literal becomes a one-element list; blocks become lists
    /// of objects, labels becoming nested single-key objects.
    fn free_form(
        &mut self,
        body: &Body,
        path: &FieldPath,
        env: &Env<'_>,
        depth: usize,
    ) -> Map<String, Json> {
        let mut out = Map::new();
        if depth > self.limits.max_depth {
            self.error(
                None,
                path,
                format!(
                    "free-form data is nested deeper than {} levels",
                    self.limits.max_depth
                ),
            );
            return out;
        }
        let mut attr_names: BTreeMap<String, ()> = BTreeMap::new();
        let mut block_items: Vec<(String, Json, Option<Range<usize>>)> = Vec::new();
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    let kpath = path.field(k);
                    if attr_names.insert(k.to_string(), ()).is_some() {
                        self.error(a.key.span(), &kpath, format!("{k} is set twice; keep one"));
                        continue;
                    }
                    let Some(v) = self.eval(&a.value, env, &kpath) else {
                        continue;
                    };
                    match v.to_json() {
                        Ok(mut j) => {
                            if matches!(a.value, Expression::Object(_)) {
                                j = Json::Array(vec![j]);
                            }
                            out.insert(k.to_string(), j);
                        }
                        Err(m) => self.error(a.value.span(), &kpath, m),
                    }
                }
                Structure::Block(b) if b.ident.as_str() == "dynamic" => {
                    let mut generated = Vec::new();
                    self.dynamic(b, path, env, &mut |me, view, env2| {
                        let bpath = path.field(&view.ident);
                        let inner = me.free_form(view.body, &bpath, env2, depth + 1);
                        let labels: Vec<String> =
                            view.labels.iter().map(|(l, _)| l.clone()).collect();
                        generated.push((
                            view.ident.clone(),
                            wrap_labels(inner, &labels),
                            view.span.clone(),
                        ));
                    });
                    block_items.extend(generated);
                }
                Structure::Block(b) => {
                    self.blocks += 1;
                    if self.blocks > self.limits.max_blocks {
                        continue;
                    }
                    let bpath = path.field(b.ident.as_str());
                    let inner = self.free_form(&b.body, &bpath, env, depth + 1);
                    let labels: Vec<String> =
                        b.labels.iter().map(|l| l.as_str().to_string()).collect();
                    block_items.push((
                        b.ident.as_str().to_string(),
                        wrap_labels(inner, &labels),
                        b.ident.span(),
                    ));
                }
            }
        }
        for (name, obj, span) in block_items {
            if attr_names.contains_key(&name) {
                self.error(
                    span,
                    &path.field(&name),
                    format!("{name} is both an argument and a block; keep one form"),
                );
                continue;
            }
            if let Json::Array(items) = out.entry(name).or_insert_with(|| Json::Array(Vec::new())) {
                items.push(obj);
            }
        }
        out
    }

    /// Data noded stores without interpreting (the Consul gateway tree): HCL names become
    /// API names, repeated or labeled blocks become lists or maps.
    fn opaque(
        &mut self,
        body: &Body,
        path: &FieldPath,
        env: &Env<'_>,
        depth: usize,
    ) -> Map<String, Json> {
        let mut out = Map::new();
        if depth > self.limits.max_depth {
            self.error(
                None,
                path,
                format!("nested deeper than {} levels", self.limits.max_depth),
            );
            return out;
        }
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    let kpath = path.field(k);
                    let Some(v) = self.eval(&a.value, env, &kpath) else {
                        continue;
                    };
                    match v.to_json() {
                        Ok(j) => {
                            out.insert(pascal_case(k), j);
                        }
                        Err(m) => self.error(a.value.span(), &kpath, m),
                    }
                }
                Structure::Block(b) => {
                    let name = b.ident.as_str();
                    let bpath = path.field(name);
                    let inner = Json::Object(self.opaque(&b.body, &bpath, env, depth + 1));
                    let key = pascal_case(name);
                    match b.labels.first() {
                        Some(label) => {
                            let entry = out.entry(key).or_insert_with(|| Json::Object(Map::new()));
                            if let Json::Object(m) = entry {
                                m.insert(label.as_str().to_string(), inner);
                            }
                        }
                        None if OPAQUE_LIST_BLOCKS.contains(&name) => {
                            if let Json::Array(items) =
                                out.entry(key).or_insert_with(|| Json::Array(Vec::new()))
                            {
                                items.push(inner);
                            }
                        }
                        None => {
                            out.insert(key, inner);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Blocks of the gateway tree that Nomad's API holds as lists.
const OPAQUE_LIST_BLOCKS: &[&str] = &["listener", "service"];

const CONSTRAINT_SHORTHANDS: &[&str] = &[
    "distinct_hosts",
    "distinct_property",
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "is_set",
    "is_not_set",
];

const AFFINITY_SHORTHANDS: &[&str] = &[
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
];

/// Turns `version = "~> 1.2"` and friends into operator + value, as Nomad's decoder does.
fn apply_shorthand(
    out: &mut Map<String, Json>,
    shorthand: Vec<(String, Value, Option<Range<usize>>)>,
    constraint: bool,
) {
    for (key, v, _) in shorthand {
        let text = match &v {
            Value::Bool(b) => b.to_string(),
            other => other.to_str().unwrap_or_default(),
        };
        match key.as_str() {
            "distinct_hosts" => {
                out.insert("Operand".into(), Json::String(key));
                out.insert("RTarget".into(), Json::String(text));
            }
            "distinct_property" | "is_set" | "is_not_set" => {
                if text.is_empty() {
                    continue;
                }
                out.insert("Operand".into(), Json::String(key));
                out.insert("LTarget".into(), Json::String(text));
            }
            _ => {
                if text.is_empty() {
                    continue;
                }
                out.insert("Operand".into(), Json::String(key));
                out.insert("RTarget".into(), Json::String(text));
            }
        }
    }
    let _ = constraint;
    if out
        .get("Operand")
        .and_then(Json::as_str)
        .unwrap_or("")
        .is_empty()
    {
        out.insert("Operand".into(), Json::String("=".into()));
    }
}

fn wrap_labels(inner: Map<String, Json>, labels: &[String]) -> Json {
    let mut v = Json::Object(inner);
    for l in labels.iter().rev() {
        let mut m = Map::new();
        m.insert(l.clone(), Json::Array(vec![v]));
        v = Json::Object(m);
    }
    v
}

fn push_many(acc: &mut Acc, api: &'static str, v: Json) {
    if let Slot::Many(items) = acc
        .slots
        .entry(api)
        .or_insert_with(|| Slot::Many(Vec::new()))
    {
        items.push(v);
    }
}

fn schema_has_block_named(schema: &Schema, name: &str) -> bool {
    schema.hcl_field(name).is_some_and(|f| {
        matches!(
            f.kind,
            Kind::Block(_)
                | Kind::Blocks(_)
                | Kind::Labeled(_)
                | Kind::LabeledMap(_)
                | Kind::FreeForm
                | Kind::Opaque
        )
    })
}

/// Durations: a Go duration string, or a number of nanoseconds.
fn duration_nanos(v: &Value) -> Result<i64, String> {
    match v {
        Value::String(s) => model::duration::parse_go(s)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .map_err(|e| format!("{e}; write a duration like \"30s\", \"5m\" or \"1h30m\"")),
        Value::Number(_) => {
            let n = v.to_i64()?;
            if n < 0 {
                Err(format!("a duration must not be negative (got {n})"))
            } else {
                Ok(n)
            }
        }
        other => Err(format!(
            "a duration like \"30s\" is required, got {}",
            other.describe()
        )),
    }
}

/// `snake_case` → `PascalCase`, upper-casing the acronyms Nomad's API spells that way.
pub(crate) fn pascal_case(s: &str) -> String {
    const ACRONYMS: &[&str] = &[
        "id", "tls", "sds", "dns", "ip", "cidr", "url", "ttl", "sni", "ca", "uid", "tcp", "http",
        "grpc",
    ];
    s.split('_')
        .map(|part| {
            if ACRONYMS.contains(&part) {
                part.to_uppercase()
            } else {
                let mut c = part.chars();
                match c.next() {
                    Some(first) => first.to_uppercase().chain(c).collect(),
                    None => String::new(),
                }
            }
        })
        .collect()
}

/// Applies Nomad's HCL normalization to a decoded group: vault and secrets inherited from the
/// job and group, ports split into static and dynamic, the default identity moved apart.
fn normalize_group(group: &mut Json, inherited: &Inherited) {
    let Json::Object(g) = group else { return };
    if let Some(Json::Array(nets)) = g.get_mut("Networks") {
        nets.iter_mut().for_each(split_ports);
    }
    let Some(Json::Array(tasks)) = g.get_mut("Tasks") else {
        return;
    };
    for task in tasks {
        let Json::Object(t) = task else { continue };
        if let Some(Json::Object(r)) = t.get_mut("Resources") {
            if let Some(Json::Array(nets)) = r.get_mut("Networks") {
                nets.iter_mut().for_each(split_ports);
            }
        }
        if !t.contains_key("Vault") {
            if let Some(v) = &inherited.vault {
                t.insert("Vault".into(), v.clone());
            }
        }
        if !inherited.secrets.is_empty() {
            let entry = t
                .entry("Secrets")
                .or_insert_with(|| Json::Array(Vec::new()));
            if let Json::Array(s) = entry {
                s.extend(inherited.secrets.iter().cloned());
            }
        }
        if let Some(Json::Array(ids)) = t.get_mut("Identities") {
            let default = ids.iter().position(|i| {
                let name = i.get("Name").and_then(Json::as_str).unwrap_or("");
                name.is_empty() || name == "default"
            });
            if let Some(idx) = default {
                let id = ids.remove(idx);
                let empty = ids.is_empty();
                if empty {
                    t.remove("Identities");
                }
                t.insert("Identity".into(), id);
            }
        }
    }
}

/// Ports written as `port "x" { static = N }` are reserved; the rest dynamic.
fn split_ports(net: &mut Json) {
    let Json::Object(n) = net else { return };
    let Some(Json::Array(dynamic)) = n.remove("DynamicPorts") else {
        return;
    };
    let (reserved, dynamic): (Vec<Json>, Vec<Json>) = dynamic
        .into_iter()
        .partition(|p| p.get("Value").and_then(Json::as_i64).unwrap_or(0) > 0);
    if !reserved.is_empty() {
        let entry = n
            .entry("ReservedPorts")
            .or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(r) = entry {
            r.extend(reserved);
        }
    }
    if !dynamic.is_empty() {
        n.insert("DynamicPorts".into(), Json::Array(dynamic));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_spells_acronyms_like_nomad() {
        assert_eq!(pascal_case("connect_timeout"), "ConnectTimeout");
        assert_eq!(pascal_case("tls"), "TLS");
        assert_eq!(pascal_case("ca_file"), "CAFile");
    }
}
