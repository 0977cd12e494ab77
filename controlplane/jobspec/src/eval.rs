//! Evaluates HCL expressions straight from the `hcl-edit` syntax tree, so every error points at
//! the sub-expression it concerns.
//!
//! Scope rules follow Nomad's jobspec2: `var.NAME` and `local.NAME` are the job's input
//! variables and locals; for-expression and `dynamic` iterators are bound around their bodies;
//! any other root name (`attr`, `node`, `meta`, `NOMAD_PORT_http`, `secret`, …) is a runtime
//! interpolation and evaluates to its own source text wrapped in `${…}`, to be resolved on the
//! client later. Locals are evaluated lazily, on first use, which makes them order-free and
//! lets a cycle be reported with the names in it.
//!
//! Every step and every value built is charged to a budget, so a hostile expression (a huge
//! `range`, nested `for`s) fails with a clear error instead of running for minutes.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::expr::{
    BinaryOp, BinaryOperator, Expression, ForExpr, FuncCall, ObjectKey, Traversal,
    TraversalOperator, UnaryOp, UnaryOperator,
};
use hcl_edit::template::{Directive, Element, ForDirective, IfDirective, Strip, Template};
use hcl_edit::Span;

use super::funcs::{self, FuncCtx};
use super::source::Source;
use super::value::{values_equal, Number, Value};

/// How many evaluation steps and built values one jobspec may cost in total.
pub(crate) const EVAL_BUDGET: u64 = 2_000_000;

/// An evaluation failure, at the sub-expression that caused it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl EvalError {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        EvalError {
            span,
            message: message.into(),
        }
    }
}

type EResult<T> = Result<T, EvalError>;

/// Names bound by enclosing `for` expressions, `%{ for }` directives and `dynamic` blocks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Env<'e> {
    Empty,
    Bind {
        name: &'e str,
        value: &'e Value,
        parent: &'e Env<'e>,
    },
}

impl<'e> Env<'e> {
    fn lookup(&self, wanted: &str) -> Option<&'e Value> {
        let mut env = *self;
        loop {
            match env {
                Env::Empty => return None,
                Env::Bind {
                    name,
                    value,
                    parent,
                } => {
                    if name == wanted {
                        return Some(value);
                    }
                    env = *parent;
                }
            }
        }
    }
}

#[derive(Debug)]
enum LocalSlot<'a> {
    Pending(&'a Expression),
    Evaluating,
    Done(Value),
    Failed,
}

/// Evaluates expressions of one source file.
#[derive(Debug)]
pub(crate) struct Evaluator<'a> {
    src: &'a Source<'a>,
    vars: BTreeMap<String, Value>,
    locals: RefCell<BTreeMap<String, LocalSlot<'a>>>,
    /// The locals currently being evaluated, outermost first, to name a cycle.
    local_stack: RefCell<Vec<String>>,
    fctx: FuncCtx,
    budget: Cell<u64>,
}

impl<'a> Evaluator<'a> {
    pub fn new(src: &'a Source<'a>, fctx: FuncCtx) -> Self {
        Evaluator {
            src,
            vars: BTreeMap::new(),
            locals: RefCell::new(BTreeMap::new()),
            local_stack: RefCell::new(Vec::new()),
            fctx,
            budget: Cell::new(EVAL_BUDGET),
        }
    }

    pub fn set_vars(&mut self, vars: BTreeMap<String, Value>) {
        self.vars = vars;
    }

    /// Declares a local; it is evaluated when first used (or by [`Self::force_locals`]).
    /// Returns false if the name is already declared.
    pub fn declare_local(&self, name: &str, expr: &'a Expression) -> bool {
        let mut locals = self.locals.borrow_mut();
        if locals.contains_key(name) {
            return false;
        }
        locals.insert(name.to_string(), LocalSlot::Pending(expr));
        true
    }

    /// Evaluates every local, so errors in unused ones are reported too.
    pub fn force_locals(&self) -> Vec<(String, EvalError)> {
        let names: Vec<String> = self.locals.borrow().keys().cloned().collect();
        let mut errors = Vec::new();
        for name in names {
            if let Err(e) = self.local(&name, None) {
                errors.push((name, e));
            }
        }
        errors
    }

    pub fn src(&self) -> &'a Source<'a> {
        self.src
    }

    fn charge(&self, units: u64, span: Option<Range<usize>>) -> EResult<()> {
        let left = self.budget.get();
        if units > left {
            self.budget.set(0);
            return Err(EvalError::new(
                span,
                format!(
                    "the jobspec's expressions are too expensive to evaluate (more than {EVAL_BUDGET} steps); simplify them"
                ),
            ));
        }
        self.budget.set(left - units);
        Ok(())
    }

    fn local(&self, name: &str, span: Option<Range<usize>>) -> EResult<Value> {
        let expr = {
            let mut locals = self.locals.borrow_mut();
            match locals.get_mut(name) {
                None => {
                    return Err(EvalError::new(
                        span,
                        format!("there is no local named {name:?}; declare it in a locals block"),
                    ))
                }
                Some(LocalSlot::Done(v)) => return Ok(v.clone()),
                Some(LocalSlot::Failed) => {
                    return Err(EvalError::new(
                        span,
                        format!("local.{name} could not be evaluated (see its own error)"),
                    ))
                }
                Some(LocalSlot::Evaluating) => {
                    let stack = self.local_stack.borrow();
                    let start = stack.iter().position(|n| n == name).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..]
                        .iter()
                        .map(|n| format!("local.{n}"))
                        .collect();
                    cycle.push(format!("local.{name}"));
                    return Err(EvalError::new(
                        span,
                        format!(
                            "locals refer to each other in a cycle: {}; break the cycle",
                            cycle.join(" → ")
                        ),
                    ));
                }
                Some(slot) => {
                    let LocalSlot::Pending(expr) = std::mem::replace(slot, LocalSlot::Evaluating)
                    else {
                        return Err(EvalError::new(span, "internal error: bad local state"));
                    };
                    expr
                }
            }
        };
        self.local_stack.borrow_mut().push(name.to_string());
        let result = self.eval(expr, &Env::Empty);
        self.local_stack.borrow_mut().pop();
        let mut locals = self.locals.borrow_mut();
        match result {
            Ok(v) => {
                locals.insert(name.to_string(), LocalSlot::Done(v.clone()));
                Ok(v)
            }
            Err(e) => {
                locals.insert(name.to_string(), LocalSlot::Failed);
                Err(e)
            }
        }
    }

    /// Evaluates an expression.
    pub fn eval(&self, expr: &Expression, env: &Env<'_>) -> EResult<Value> {
        self.charge(1, expr.span())?;
        match expr {
            Expression::Null(_) => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b.value())),
            Expression::Number(n) => {
                let n = n.value();
                if let Some(i) = n.as_i64() {
                    Ok(Value::int(i))
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.is_finite() {
                        Ok(Value::Number(Number::from_f64(f)))
                    } else {
                        Err(EvalError::new(expr.span(), "number out of range"))
                    }
                }
            }
            Expression::String(s) => Ok(Value::String(s.value().clone())),
            Expression::Array(items) => {
                self.charge(items.len() as u64, expr.span())?;
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    out.push(self.eval(item, env)?);
                }
                Ok(Value::List(out))
            }
            Expression::Object(obj) => {
                let mut out = BTreeMap::new();
                for (key, value) in obj.iter() {
                    let k = match key {
                        ObjectKey::Ident(id) => id.as_str().to_string(),
                        ObjectKey::Expression(e) => self
                            .eval(e, env)?
                            .to_str()
                            .map_err(|m| EvalError::new(e.span(), format!("object key: {m}")))?,
                    };
                    let v = self.eval(value.expr(), env)?;
                    out.insert(k, v);
                }
                Ok(Value::Object(out))
            }
            Expression::StringTemplate(t) => {
                let mut out = String::new();
                self.template(t, env, &mut out)?;
                Ok(Value::String(out))
            }
            Expression::HeredocTemplate(h) => {
                let mut out = String::new();
                self.template(&h.template, env, &mut out)?;
                Ok(Value::String(out))
            }
            Expression::Parenthesis(p) => self.eval(p.inner(), env),
            Expression::Variable(id) => self.variable(id.as_str(), expr, env),
            Expression::Conditional(c) => {
                let cond = self.eval(&c.cond_expr, env)?;
                let cond = cond
                    .to_bool()
                    .map_err(|m| EvalError::new(c.cond_expr.span(), format!("condition: {m}")))?;
                if cond {
                    self.eval(&c.true_expr, env)
                } else {
                    self.eval(&c.false_expr, env)
                }
            }
            Expression::FuncCall(call) => self.call(call, expr, env),
            Expression::Traversal(t) => self.traversal(t, expr, env),
            Expression::UnaryOp(op) => self.unary(op, env),
            Expression::BinaryOp(op) => self.binary_op(op, expr, env),
            Expression::ForExpr(f) => self.for_expr(f, env),
        }
    }

    fn unary(&self, op: &UnaryOp, env: &Env<'_>) -> EResult<Value> {
        let v = self.eval(&op.expr, env)?;
        match op.operator.value() {
            UnaryOperator::Neg => {
                let n = v
                    .to_number()
                    .map_err(|m| EvalError::new(op.expr.span(), format!("negation: {m}")))?;
                Ok(Value::Number(match n {
                    Number::Int(i) => i
                        .checked_neg()
                        .map(Number::Int)
                        .unwrap_or(Number::Float(-(i as f64))),
                    Number::Float(f) => Number::Float(-f),
                }))
            }
            UnaryOperator::Not => {
                let b = v
                    .to_bool()
                    .map_err(|m| EvalError::new(op.expr.span(), format!("logical not: {m}")))?;
                Ok(Value::Bool(!b))
            }
        }
    }

    fn binary_op(&self, op: &BinaryOp, expr: &Expression, env: &Env<'_>) -> EResult<Value> {
        let op_kind = *op.operator.value();
        // `&&` and `||` short-circuit like HCL's.
        let lhs = self.eval(&op.lhs_expr, env)?;
        if matches!(op_kind, BinaryOperator::And | BinaryOperator::Or) {
            let l = lhs.to_bool().map_err(|m| {
                EvalError::new(op.lhs_expr.span(), format!("{}: {m}", op_kind.as_str()))
            })?;
            if (op_kind == BinaryOperator::And && !l) || (op_kind == BinaryOperator::Or && l) {
                return Ok(Value::Bool(l));
            }
            let r = self.eval(&op.rhs_expr, env)?.to_bool().map_err(|m| {
                EvalError::new(op.rhs_expr.span(), format!("{}: {m}", op_kind.as_str()))
            })?;
            return Ok(Value::Bool(r));
        }
        let rhs = self.eval(&op.rhs_expr, env)?;
        binary(op_kind, &lhs, &rhs).map_err(|m| EvalError::new(expr.span(), m))
    }

    fn variable(&self, name: &str, expr: &Expression, env: &Env<'_>) -> EResult<Value> {
        if let Some(v) = env.lookup(name) {
            return Ok(v.clone());
        }
        match name {
            "var" => Ok(Value::Object(self.vars.clone())),
            "local" => {
                let names: Vec<String> = self.locals.borrow().keys().cloned().collect();
                let mut out = BTreeMap::new();
                for n in names {
                    out.insert(n.clone(), self.local(&n, expr.span())?);
                }
                Ok(Value::Object(out))
            }
            _ => Ok(self.runtime_literal(expr)),
        }
    }

    /// `${attr.kernel.name}` and friends: kept as their own text for the client to resolve.
    /// Whitespace outside quotes is dropped, so `${ attr.x }` and `attr .x` read the same.
    fn runtime_literal(&self, expr: &Expression) -> Value {
        let raw = expr.span().map(|s| self.src.slice(&s)).unwrap_or_default();
        let mut text = String::with_capacity(raw.len());
        let mut quoted = false;
        let mut escaped = false;
        for c in raw.chars() {
            if quoted {
                text.push(c);
                match (c, escaped) {
                    ('\\', false) => escaped = true,
                    ('"', false) => quoted = false,
                    _ => escaped = false,
                }
            } else if c == '"' {
                quoted = true;
                text.push(c);
            } else if !c.is_whitespace() {
                text.push(c);
            }
        }
        Value::String(format!("${{{text}}}"))
    }

    fn traversal(&self, t: &Traversal, whole: &Expression, env: &Env<'_>) -> EResult<Value> {
        let mut ops = t.operators.iter().map(|o| o.value()).peekable();
        let mut current = match &t.expr {
            Expression::Variable(id) if env.lookup(id.as_str()).is_none() => match id.as_str() {
                root @ ("var" | "local") => match ops.next() {
                    Some(TraversalOperator::GetAttr(name)) => {
                        if root == "local" {
                            self.local(name.as_str(), whole.span())?
                        } else {
                            self.vars.get(name.as_str()).cloned().ok_or_else(|| {
                                    EvalError::new(
                                        whole.span(),
                                        format!(
                                            "there is no variable named {:?}; declare it with a variable \"{}\" block",
                                            name.as_str(),
                                            name.as_str()
                                        ),
                                    )
                                })?
                        }
                    }
                    Some(TraversalOperator::Index(e)) => {
                        let key = self
                            .eval(e, env)?
                            .to_str()
                            .map_err(|m| EvalError::new(e.span(), format!("index: {m}")))?;
                        if root == "local" {
                            self.local(&key, whole.span())?
                        } else {
                            self.vars.get(&key).cloned().ok_or_else(|| {
                                EvalError::new(
                                    whole.span(),
                                    format!("there is no variable named {key:?}"),
                                )
                            })?
                        }
                    }
                    _ => self.variable(root, &t.expr, env)?,
                },
                _ => return Ok(self.runtime_literal(whole)),
            },
            other => self.eval(other, env)?,
        };
        while let Some(op) = ops.next() {
            match op {
                TraversalOperator::GetAttr(name) => {
                    current = get_attr(&current, name.as_str())
                        .map_err(|m| EvalError::new(whole.span(), m))?;
                }
                TraversalOperator::Index(e) => {
                    let key = self.eval(e, env)?;
                    current = index(&current, &key).map_err(|m| EvalError::new(e.span(), m))?;
                }
                TraversalOperator::LegacyIndex(i) => {
                    let key =
                        Value::Number(Number::Int(i64::try_from(*i.value()).unwrap_or(i64::MAX)));
                    current = index(&current, &key).map_err(|m| EvalError::new(whole.span(), m))?;
                }
                TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                    let full = matches!(op, TraversalOperator::FullSplat(_));
                    let items = match current {
                        Value::Null => Vec::new(),
                        Value::List(items) => items,
                        other => vec![other],
                    };
                    // The operators the splat applies to each element.
                    let mut each: Vec<&TraversalOperator> = Vec::new();
                    while let Some(next) = ops.peek() {
                        let belongs = full || matches!(next, TraversalOperator::GetAttr(_));
                        if !belongs {
                            break;
                        }
                        each.push(next);
                        ops.next();
                    }
                    self.charge(items.len() as u64, whole.span())?;
                    let mut out = Vec::with_capacity(items.len());
                    for mut item in items {
                        for op in &each {
                            item = match op {
                                TraversalOperator::GetAttr(name) => get_attr(&item, name.as_str())
                                    .map_err(|m| EvalError::new(whole.span(), m))?,
                                TraversalOperator::Index(e) => {
                                    let key = self.eval(e, env)?;
                                    index(&item, &key).map_err(|m| EvalError::new(e.span(), m))?
                                }
                                TraversalOperator::LegacyIndex(i) => index(
                                    &item,
                                    &Value::int(i64::try_from(*i.value()).unwrap_or(i64::MAX)),
                                )
                                .map_err(|m| EvalError::new(whole.span(), m))?,
                                // A nested splat flattens nothing further.
                                TraversalOperator::AttrSplat(_)
                                | TraversalOperator::FullSplat(_) => item,
                            };
                        }
                        out.push(item);
                    }
                    current = Value::List(out);
                }
            }
        }
        Ok(current)
    }

    fn call(&self, call: &FuncCall, whole: &Expression, env: &Env<'_>) -> EResult<Value> {
        let name = call.name.name.as_str();
        if call.name.is_namespaced() {
            return Err(EvalError::new(
                whole.span(),
                format!("namespaced function {name:?} is not supported; use a built-in function"),
            ));
        }
        // Special forms: their arguments are not all evaluated up front.
        match name {
            "try" => {
                let mut last = None;
                for a in call.args.iter() {
                    match self.eval(a, env) {
                        Ok(v) => return Ok(v),
                        Err(e) => last = Some(e),
                    }
                }
                return Err(last.unwrap_or_else(|| {
                    EvalError::new(whole.span(), "try() needs at least one argument")
                }));
            }
            "can" => {
                let args: Vec<&Expression> = call.args.iter().collect();
                let [a] = args.as_slice() else {
                    return Err(EvalError::new(
                        whole.span(),
                        "can() takes exactly one argument",
                    ));
                };
                return Ok(Value::Bool(self.eval(a, env).is_ok()));
            }
            "convert" => {
                let args: Vec<&Expression> = call.args.iter().collect();
                let [v, t] = args.as_slice() else {
                    return Err(EvalError::new(
                        whole.span(),
                        "convert() takes a value and a type",
                    ));
                };
                let ty = super::types::parse_type(t).map_err(|m| EvalError::new(t.span(), m))?;
                let v = self.eval(v, env)?;
                return super::types::convert(v, &ty)
                    .map_err(|m| EvalError::new(whole.span(), format!("convert(): {m}")));
            }
            _ => {}
        }
        let mut args = Vec::with_capacity(call.args.len());
        for a in call.args.iter() {
            args.push(self.eval(a, env)?);
        }
        if call.args.expand_final() {
            match args.pop() {
                Some(Value::List(rest)) => args.extend(rest),
                Some(other) => {
                    return Err(EvalError::new(
                        whole.span(),
                        format!(
                            "the argument before \"...\" in {name}() must be a list, got {}",
                            other.describe()
                        ),
                    ))
                }
                None => {}
            }
        }
        match funcs::call(name, &self.fctx, args) {
            None => Err(EvalError::new(
                call.name.name.span().or(whole.span()),
                match funcs::suggest(name) {
                    Some(near) => format!("there is no function named {name:?}; did you mean {near:?}?"),
                    None => format!("there is no function named {name:?}; see the jobspec docs for the functions available"),
                },
            )),
            Some(Ok(v)) => {
                self.charge(v.weight(), whole.span())?;
                Ok(v)
            }
            Some(Err(m)) => Err(EvalError::new(whole.span(), format!("{name}(): {m}"))),
        }
    }

    fn for_expr(&self, f: &ForExpr, env: &Env<'_>) -> EResult<Value> {
        let coll = self.eval(&f.intro.collection_expr, env)?;
        let pairs: Vec<(Value, Value)> = match coll {
            Value::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::int(i as i64), v))
                .collect(),
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| (Value::String(k), v))
                .collect(),
            other => {
                return Err(EvalError::new(
                    f.intro.collection_expr.span(),
                    format!(
                        "a for expression needs a list or an object, got {}",
                        other.describe()
                    ),
                ))
            }
        };
        self.charge(pairs.len() as u64, f.intro.collection_expr.span())?;
        let key_name = f.intro.key_var.as_ref().map(|k| k.as_str());
        let value_name = f.intro.value_var.as_str();
        let mut list_out = Vec::new();
        let mut obj_out: BTreeMap<String, Value> = BTreeMap::new();
        let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (k, v) in pairs {
            let inner_key;
            let with_value;
            let env2 = match key_name {
                Some(kn) => {
                    inner_key = Env::Bind {
                        name: kn,
                        value: &k,
                        parent: env,
                    };
                    Env::Bind {
                        name: value_name,
                        value: &v,
                        parent: &inner_key,
                    }
                }
                None => {
                    with_value = Env::Bind {
                        name: value_name,
                        value: &v,
                        parent: env,
                    };
                    with_value
                }
            };
            if let Some(cond) = &f.cond {
                let keep = self
                    .eval(&cond.expr, &env2)?
                    .to_bool()
                    .map_err(|m| EvalError::new(cond.expr.span(), format!("for condition: {m}")))?;
                if !keep {
                    continue;
                }
            }
            let value = self.eval(&f.value_expr, &env2)?;
            match &f.key_expr {
                None => list_out.push(value),
                Some(key_expr) => {
                    let key = self
                        .eval(key_expr, &env2)?
                        .to_str()
                        .map_err(|m| EvalError::new(key_expr.span(), format!("for key: {m}")))?;
                    if f.grouping {
                        groups.entry(key).or_default().push(value);
                    } else {
                        match obj_out.entry(key) {
                            std::collections::btree_map::Entry::Occupied(e) => {
                                return Err(EvalError::new(
                                    key_expr.span(),
                                    format!("duplicate key {:?} in for expression; add \"...\" after the value to group them", e.key()),
                                ));
                            }
                            std::collections::btree_map::Entry::Vacant(e) => {
                                e.insert(value);
                            }
                        }
                    }
                }
            }
        }
        Ok(match &f.key_expr {
            None => Value::List(list_out),
            Some(_) if f.grouping => Value::Object(
                groups
                    .into_iter()
                    .map(|(k, v)| (k, Value::List(v)))
                    .collect(),
            ),
            Some(_) => Value::Object(obj_out),
        })
    }

    /// Evaluates a template into `out`. Strip markers (`~`) remove all whitespace from the
    /// adjacent literal, as HCL does.
    fn template(&self, t: &Template, env: &Env<'_>, out: &mut String) -> EResult<()> {
        self.template_stripped(t, env, out, Strip::None, Strip::None)
    }

    fn template_stripped(
        &self,
        t: &Template,
        env: &Env<'_>,
        out: &mut String,
        outer_before: Strip,
        outer_after: Strip,
    ) -> EResult<()> {
        let elems: Vec<&Element> = t.iter().collect();
        for (i, elem) in elems.iter().enumerate() {
            match elem {
                Element::Literal(lit) => {
                    let before = if i == 0 {
                        outer_before
                    } else {
                        strip_of(elems[i - 1]).1
                    };
                    let after = match elems.get(i + 1) {
                        Some(next) => strip_of(next).0,
                        None => outer_after,
                    };
                    let mut s: &str = lit.value();
                    if before.strip_end() {
                        s = s.trim_start();
                    }
                    if after.strip_start() {
                        s = s.trim_end();
                    }
                    out.push_str(s);
                }
                Element::Interpolation(interp) => {
                    let v = self.eval(&interp.expr, env)?;
                    match v {
                        Value::String(s) => out.push_str(&s),
                        Value::Number(_) | Value::Bool(_) => out.push_str(&v.to_string()),
                        other => {
                            return Err(EvalError::new(
                                interp.expr.span(),
                                format!(
                                    "cannot put {} into a string; convert it first (jsonencode, join, …)",
                                    other.describe()
                                ),
                            ))
                        }
                    }
                }
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(ifd) => self.if_directive(ifd, env, out)?,
                    Directive::For(ford) => self.for_directive(ford, env, out)?,
                },
            }
        }
        Ok(())
    }

    /// `%{ if }`: the chosen branch, with the strip markers around it.
    fn if_directive(&self, ifd: &IfDirective, env: &Env<'_>, out: &mut String) -> EResult<()> {
        let c = self
            .eval(&ifd.if_expr.cond_expr, env)?
            .to_bool()
            .map_err(|m| EvalError::new(ifd.if_expr.cond_expr.span(), format!("%{{if}}: {m}")))?;
        if c {
            let after = match &ifd.else_expr {
                Some(e) => e.strip,
                None => ifd.endif_expr.strip,
            };
            self.template_stripped(&ifd.if_expr.template, env, out, ifd.if_expr.strip, after)?;
        } else if let Some(e) = &ifd.else_expr {
            self.template_stripped(&e.template, env, out, e.strip, ifd.endif_expr.strip)?;
        }
        Ok(())
    }

    /// `%{ for }`: the body once per element, each charged to the budget as it grows.
    fn for_directive(&self, ford: &ForDirective, env: &Env<'_>, out: &mut String) -> EResult<()> {
        let fe = &ford.for_expr;
        let coll = self.eval(&fe.collection_expr, env)?;
        let pairs: Vec<(Value, Value)> = match coll {
            Value::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::int(i as i64), v))
                .collect(),
            Value::Object(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
            other => {
                return Err(EvalError::new(
                    fe.collection_expr.span(),
                    format!(
                        "%{{for}} needs a list or an object, got {}",
                        other.describe()
                    ),
                ))
            }
        };
        self.charge(pairs.len() as u64, fe.collection_expr.span())?;
        for (k, v) in &pairs {
            let kb;
            let env2 = match &fe.key_var {
                Some(kn) => {
                    kb = Env::Bind {
                        name: kn.as_str(),
                        value: k,
                        parent: env,
                    };
                    Env::Bind {
                        name: fe.value_var.as_str(),
                        value: v,
                        parent: &kb,
                    }
                }
                None => Env::Bind {
                    name: fe.value_var.as_str(),
                    value: v,
                    parent: env,
                },
            };
            self.template_stripped(&fe.template, &env2, out, fe.strip, ford.endfor_expr.strip)?;
            self.charge((out.len() as u64) / 4096, fe.collection_expr.span())?;
        }
        Ok(())
    }
}

/// The strip markers of an element: (towards the previous literal, towards the next one).
fn strip_of(e: &Element) -> (Strip, Strip) {
    match e {
        Element::Literal(_) => (Strip::None, Strip::None),
        Element::Interpolation(i) => (i.strip, i.strip),
        Element::Directive(d) => match d.as_ref() {
            Directive::If(ifd) => (ifd.if_expr.strip, ifd.endif_expr.strip),
            Directive::For(f) => (f.for_expr.strip, f.endfor_expr.strip),
        },
    }
}

fn get_attr(v: &Value, name: &str) -> Result<Value, String> {
    match v {
        Value::Object(map) => map.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = map.keys().map(String::as_str).take(10).collect();
            format!(
                "there is no attribute {name:?} (has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        }),
        Value::Null => Err(format!("cannot read attribute {name:?} of null")),
        other => Err(format!(
            "cannot read attribute {name:?} of {}",
            other.describe()
        )),
    }
}

fn index(v: &Value, key: &Value) -> Result<Value, String> {
    match v {
        Value::List(items) => {
            let i = key.to_i64().map_err(|m| format!("list index: {m}"))?;
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i).cloned())
                .ok_or_else(|| {
                    format!(
                        "index {i} is out of range for a list of {} elements",
                        items.len()
                    )
                })
        }
        Value::Object(map) => {
            let k = key.to_str().map_err(|m| format!("object key: {m}"))?;
            map.get(&k)
                .cloned()
                .ok_or_else(|| format!("there is no key {k:?} in the object"))
        }
        Value::Null => Err("cannot index null".to_string()),
        other => Err(format!("cannot index {}", other.describe())),
    }
}

pub(crate) fn binary(op: BinaryOperator, l: &Value, r: &Value) -> Result<Value, String> {
    use BinaryOperator as B;
    match op {
        B::Eq => Ok(Value::Bool(values_equal(l, r))),
        B::NotEq => Ok(Value::Bool(!values_equal(l, r))),
        B::And | B::Or => {
            let (a, b) = (l.to_bool()?, r.to_bool()?);
            Ok(Value::Bool(if op == B::And { a && b } else { a || b }))
        }
        _ => {
            let a = l
                .to_number()
                .map_err(|m| format!("left side of {}: {m}", op.as_str()))?;
            let b = r
                .to_number()
                .map_err(|m| format!("right side of {}: {m}", op.as_str()))?;
            match op {
                B::Less => Ok(Value::Bool(a.as_f64() < b.as_f64())),
                B::LessEq => Ok(Value::Bool(a.as_f64() <= b.as_f64())),
                B::Greater => Ok(Value::Bool(a.as_f64() > b.as_f64())),
                B::GreaterEq => Ok(Value::Bool(a.as_f64() >= b.as_f64())),
                _ => arith(op, a, b).map(Value::Number),
            }
        }
    }
}

fn arith(op: BinaryOperator, a: Number, b: Number) -> Result<Number, String> {
    use BinaryOperator as B;
    if let (Number::Int(x), Number::Int(y)) = (a, b) {
        let exact = match op {
            B::Plus => x.checked_add(y),
            B::Minus => x.checked_sub(y),
            B::Mul => x.checked_mul(y),
            B::Div if y == 0 => return Err("division by zero".to_string()),
            B::Div if x.checked_rem(y) == Some(0) => x.checked_div(y),
            B::Mod if y == 0 => return Err("modulo by zero".to_string()),
            B::Mod => x.checked_rem(y),
            _ => None,
        };
        if let Some(v) = exact {
            return Ok(Number::Int(v));
        }
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    let v = match op {
        B::Plus => x + y,
        B::Minus => x - y,
        B::Mul => x * y,
        B::Div if y == 0.0 => return Err("division by zero".to_string()),
        B::Div => x / y,
        B::Mod if y == 0.0 => return Err("modulo by zero".to_string()),
        B::Mod => x % y,
        other => return Err(format!("{} is not an arithmetic operator", other.as_str())),
    };
    if v.is_finite() {
        Ok(Number::from_f64(v))
    } else {
        Err("the result is out of range".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::funcs::{Imp, FUNCTIONS};

    /// The table lists the special forms; the evaluator must be the one running each of them
    /// (a name listed as special but not handled here would reach `funcs::call` and fail).
    #[test]
    fn every_special_form_in_the_table_is_run_by_the_evaluator() {
        for f in FUNCTIONS.iter().filter(|f| matches!(f.imp, Imp::Special)) {
            let text = format!("x = {}(1, string)\n", f.name);
            let body: hcl_edit::structure::Body = text.parse().unwrap();
            let Some(attr) = body.get_attribute("x") else {
                panic!("no attribute in {text}");
            };
            let src = Source::new("t.hcl", &text);
            let ev = Evaluator::new(&src, FuncCtx::default());
            if let Err(e) = ev.eval(&attr.value, &Env::Empty) {
                assert!(
                    !e.message.contains("internal error"),
                    "{}: {}",
                    f.name,
                    e.message
                );
            }
        }
    }
}
